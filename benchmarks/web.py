"""The web view (`jobsub ui`), measured in a real headless Chromium (/usr/bin/chromium + chromedriver):

  - log line printed by a running job -> the same line visible in the job page (median; local and moto),
  - the jobs page of a moto bucket holding 1,000 jobs: first render (cold server) and warm renders,
  - the server's memory (RSS) while a page follows a job that prints a big log (tail by ranges).

    python benchmarks/web.py [--lines 20] [--jobs 1000] [--log-mb 300] [--skip-latency] [--skip-list] [--skip-memory]

Targets (issue 20): line -> browser median < 1 s on local and moto; 1,000-job page < 1 s warm; memory flat.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.transfer import bench_env, create_bucket, start_moto  # noqa: E402

JOBSUB = [sys.executable, "-m", "jobsub"]
TICKS = "import time\nfor i in range({n}):\n    print(f'tick {{time.time():.4f}}', flush=True)\n    time.sleep(0.5)\n"
BIG_LOG = (
    "import sys\nline = 'x' * 8000 + '\\n'\nfor i in range({count}):\n    sys.stdout.write(f'{{i:08d}} ' + line)\n"
)
#: records every log line the page adds, with the browser's clock (same machine as the job's)
OBSERVER = """
window.__seen = [];
const box = document.getElementById('log');
new MutationObserver((records) => { const now = Date.now() / 1000;
  for (const r of records) for (const n of r.addedNodes) window.__seen.push([n.textContent, now]); })
  .observe(box, {childList: true});
return true;
"""


def browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    options.page_load_strategy = "none"  # the script polls for what it measures; get() returns at once
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1600",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def profile(env: dict[str, str], moto: str | None, bucket: str) -> None:
    if moto:
        create_bucket(moto, bucket)
        args = ["--storage", "s3", "--endpoint-url", moto, "--addressing-style", "path"]
    else:
        args = ["--storage", "local"]
    subprocess.run(
        [*JOBSUB, "profile", "add", "p", *args, "--jobs-uri", f"s3://{bucket}/jobs/", "--use"], env=env, check=True
    )


class UI:
    """`jobsub ui` as a user starts it; stopped by pid."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [*JOBSUB, "ui"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self.proc.stdout is not None
        match = re.search(r"(http://\S+)", self.proc.stdout.readline())
        assert match, "jobsub ui printed no URL"
        self.url = match.group(1).rstrip("/")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def submit(env: dict[str, str], work: Path, body: str) -> str:
    code = work / f"code-{time.monotonic_ns()}"
    code.mkdir()
    (code / "main.py").write_text(body)
    out = subprocess.run(
        [*JOBSUB, "submit", "python-script", "--code", str(code), "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return str(json.loads(out.stdout)["job_id"])


def wait_final(env: dict[str, str], job_id: str) -> None:
    subprocess.run([*JOBSUB, "logs", "-f", job_id], env=env, stdout=subprocess.DEVNULL, timeout=900)


def line_latency(driver: Any, work: Path, moto: str | None, lines: int) -> list[float]:
    env = bench_env(work)
    profile(env, moto, "webbench")
    ui = UI(env)
    try:
        job_id = submit(env, work, TICKS.format(n=lines))
        driver.get(f"{ui.url}/job/{job_id}")
        deadline = time.monotonic() + 30
        while not driver.execute_script("return !!document.getElementById('log')"):
            if time.monotonic() > deadline:
                raise RuntimeError("job page did not load")
            time.sleep(0.05)
        driver.execute_script(OBSERVER)
        opened = time.time()
        wait_final(env, job_id)
        time.sleep(1.0)
        seen = driver.execute_script("return window.__seen")
    finally:
        ui.stop()
    delays = []
    if not seen:
        raise RuntimeError(f"the page showed no line of job {job_id}")
    # steady state: lines printed once the page showed its first one (its stream is open; the page's own
    # first load, a cold server's first request, is the jobs-page number below)
    following = max(opened, seen[0][1])
    for text, shown in seen:
        match = re.match(r"tick (\d+\.\d+)$", text)
        if match and float(match.group(1)) > following:
            delays.append(shown - float(match.group(1)))
    return delays


def fill_jobs(moto: str, bucket: str, count: int) -> None:
    """`count` finished jobs written straight into the bucket, as `jobsub submit` + a runner leave them."""
    import boto3

    s3 = boto3.client(
        "s3", endpoint_url=moto, aws_access_key_id="bench", aws_secret_access_key="benchbench", region_name="us-east-1"
    )

    def put(i: int) -> None:
        job_id = f"bench-20261130-{i // 3600:02d}{i // 60 % 60:02d}{i % 60:02d}-{i:04x}"
        root = f"jobs/{job_id}/"
        spec = {"name": "bench", "command": "true", "params": {"i": i}, "headline": {"metric": "acc", "goal": "max"}}
        job = {"id": job_id, "spec": spec, "outputs": f"s3://{bucket}/{root}outputs/", "executor": "local"}
        status = {
            "state": "SUCCEEDED",
            "created": "2026-11-30T00:00:00+00:00",
            "started": "2026-11-30T00:00:01+00:00",
            "finished": "2026-11-30T00:01:01+00:00",
            "exit_code": 0,
        }
        metrics = "".join(json.dumps({"step": s, "acc": (i % 97 + s) / 200}) + "\n" for s in range(20))
        s3.put_object(Bucket=bucket, Key=root + "job.json", Body=json.dumps(job).encode())
        s3.put_object(Bucket=bucket, Key=root + "status.json", Body=json.dumps(status).encode())
        s3.put_object(Bucket=bucket, Key=root + "metrics.jsonl", Body=metrics.encode())

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(count)))


def jobs_page(driver: Any, work: Path, moto: str, count: int) -> tuple[float, list[float]]:
    env = bench_env(work)
    profile(env, moto, "weblist")
    started = time.monotonic()
    fill_jobs(moto, "weblist", count)
    print(f"  wrote {count} job records in {time.monotonic() - started:.1f}s")
    ui = UI(env)

    def render() -> float:
        begin = time.monotonic()
        driver.get(ui.url + "/")
        while f"of {count} jobs" not in (
            driver.execute_script("return document.getElementById('summary')?.textContent") or ""
        ):
            if time.monotonic() - begin > 120:
                raise RuntimeError("jobs page did not render")
            time.sleep(0.01)
        return time.monotonic() - begin

    import requests

    try:
        cold = render()
        warm = [render() for _ in range(5)]
        api = []
        for _ in range(5):
            begin = time.monotonic()
            requests.get(ui.url + "/api/jobs", timeout=120).raise_for_status()
            api.append(time.monotonic() - begin)
        print(f"  GET /api/jobs (50 rows of {count}) warm: median {statistics.median(api):.3f}s")
    finally:
        ui.stop()
    return cold, warm


def memory(work: Path, megabytes: int) -> tuple[list[float], int]:
    """RSS of the server, sampled while one client follows the log stream of a job printing `megabytes`."""
    import requests

    env = bench_env(work)
    profile(env, None, "webmem")
    ui = UI(env)
    samples: list[float] = []
    received = 0
    try:
        job_id = submit(env, work, BIG_LOG.format(count=megabytes * 1024 * 1024 // 8010))
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.append(ui.rss_mib())
                time.sleep(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        with requests.get(f"{ui.url}/api/jobs/{job_id}/log/stream", stream=True, timeout=900) as stream:
            for block in stream.iter_content(1 << 16):
                received += len(block)
                if b"event: end" in block:
                    break
        stop.set()
        sampler.join()
    finally:
        ui.stop()
    return samples, received


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--log-mb", type=int, default=300)
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-list", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    moto, url = start_moto()
    driver = browser()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            if not args.skip_latency:
                for name, endpoint in (("local", None), ("moto", url)):
                    delays = line_latency(driver, work / f"lat-{name}", endpoint, args.lines)
                    print(
                        f"line printed -> visible in the browser, {name}: median {statistics.median(delays):.2f}s "
                        f"(min {min(delays):.2f}, max {max(delays):.2f}, {len(delays)} lines)"
                    )
            if not args.skip_list:
                cold, warm = jobs_page(driver, work / "list", url, args.jobs)
                print(
                    f"jobs page, {args.jobs} jobs on moto: first render {cold:.2f}s (cold server), "
                    f"warm median {statistics.median(warm):.2f}s (max {max(warm):.2f})"
                )
            if not args.skip_memory:
                samples, received = memory(work / "mem", args.log_mb)
                print(
                    f"server RSS while following a {args.log_mb} MB log ({received / 1e6:.0f} MB streamed): "
                    f"start {samples[0]:.0f} MiB, max {max(samples):.0f} MiB, end {samples[-1]:.0f} MiB"
                )
    finally:
        driver.quit()
        moto.terminate()
        moto.wait()


if __name__ == "__main__":
    main()
