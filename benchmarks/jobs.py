"""Job latency, on the local profile and on a moto S3 profile: median over N jobs of
  - submit -> first log line shown by `jobsub logs -f` (what a user waits for after pressing enter), and
  - line printed by the job -> the same line shown by `logs -f` (how live the log is).

    python benchmarks/jobs.py [--jobs 10] [--slurm] [--docker] [--ray] [--trace] [--baseline DIR] [--fresh-code]

--fresh-code changes the code folder before every job (each submit then uploads its code archive, as
after an edit of the script; without it the archive is stored after the first job and a submit only checks
it with a HEAD).

--trace prints, per job on an S3 profile, the second after pressing enter at which each step happened (the
submit wrote the record, the submit returned, the runner wrote STAGING, started the command, the command
printed its first line, `logs -f` showed it), read back from the job's record; each result carries the
medians and the load average at its end. --baseline DIR runs, alternating with each job, the same job with
another checkout's jobsub (e.g. `git worktree add /tmp/base main`), so a before/after shares the minutes
and the load of a shared machine (slurm, docker with the baseline's own job image, and the local executor; not ray).

Targets (issue 3): both medians under 2 seconds.

With --slurm (needs slurm-wlm + munge, run as root): a throwaway one-node cluster (the test fixture's), the
same job through the slurm executor on the moto profile, and beside it the engine's floor measured in the
same run: a bare `sbatch` job printing one timestamped line -> that line in its output file.
Target (issue 8): jobsub adds under 1 s to that floor.

With --docker (needs docker.io + mmdebstrap, run as root): a throwaway dockerd and the tests' light job
image (tests/executors/harness_docker.py), the same job through the docker executor on the moto profile,
and beside it, alternating, the engine's floor: a bare `docker run` of the same image (same network)
printing one line -> that line read from the container's log stream.
Targets (issue 7): submit -> first line under 3 s with the image present; under 1 s more than bare docker run.

With --ray (needs the test extra's ray[default]): a throwaway one-node Ray cluster (the test fixture's),
the same job through the ray executor on the moto profile, and beside it, alternating, the floor: the same
script as a bare Ray job submitted with Ray's own SDK (JobSubmissionClient) and its log streamed with
tail_job_logs -> first line, and line printed -> shown.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.transfer import bench_env, create_bucket, start_moto  # noqa: E402

SCRIPT = "import time\nfor i in range(6):\n    print(f'tick {time.time():.4f}', flush=True)\n    time.sleep(0.5)\n"


#: per job, where its seconds went (filled by one_job when --trace is given): see trace_phases
TRACES: list[dict[str, float]] = []
BASE_TRACES: list[dict[str, float]] = []
TRACE_URL = ""
#: --baseline DIR: another checkout of jobsub (e.g. `git worktree add /tmp/base main`) whose jobs run
#: alternating with this tree's, on the same engine in the same minutes (slurm and the local executor)
BASELINE = ""


def baseline_job(env: dict[str, str], code: Path) -> float | None:
    """The same job with the baseline checkout's jobsub (client and runtime), or None without --baseline."""
    if not BASELINE:
        return None
    first = one_job({**env, "PYTHONPATH": BASELINE}, code, trace=bool(TRACE_URL))[0]
    if TRACES and TRACE_URL:
        BASE_TRACES.append(TRACES.pop())  # the baseline's steps, kept apart from this tree's
    return first


def baseline_notes(firsts: list[float], floor: float | None = None) -> dict[str, Any]:
    if not firsts:
        return {}
    notes: dict[str, Any] = {
        "baseline": BASELINE,
        "baseline_submit_to_first_line_median_s": round(statistics.median(firsts), 3),
    }
    if BASE_TRACES:
        names = BASE_TRACES[0].keys()
        notes["baseline_phases_median_s"] = {n: round(statistics.median(t[n] for t in BASE_TRACES), 3) for n in names}
        BASE_TRACES.clear()
    if floor is not None:
        notes["baseline_added_over_floor_median_s"] = round(statistics.median(firsts) - floor, 3)
    return notes


#: --fresh-code: each job's code folder differs from the last one's (a comment line), so every submit uploads
#: its code archive, as after a user edited the script; without it the archive is stored after the first job
FRESH_CODE = False


def one_job(env: dict[str, str], code: Path, trace: bool = True) -> tuple[float, list[float]]:
    jobsub = [sys.executable, "-m", "jobsub"]
    if FRESH_CODE:
        (code / "main.py").write_text(SCRIPT + f"# {time.time_ns()}\n")
    started = time.time()
    out = subprocess.run(
        [*jobsub, "submit", "python-script", "--code", str(code), "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    submitted = time.time()
    job_id = json.loads(out)["job_id"]
    follow = subprocess.Popen([*jobsub, "logs", "-f", job_id], env=env, stdout=subprocess.PIPE, text=True)
    first = None
    delays = []
    assert follow.stdout is not None
    for line in follow.stdout:
        now = time.time()
        if line.startswith("tick "):
            first = first or now
            delays.append(now - float(line.split()[1]))
    follow.wait()
    if trace and TRACE_URL and env.get("JOBSUB_PROFILE") != "default":
        label = "baseline" if BASELINE and env.get("PYTHONPATH") == BASELINE else "this tree"
        TRACES.append(trace_phases(TRACE_URL, job_id, started, submitted, first, label))
    return (first or time.time()) - started, delays


def trace_phases(
    url: str, job_id: str, started: float, submitted: float, shown: float | None, label: str = ""
) -> dict[str, float]:
    """Seconds after pressing enter at which each step happened, read back from the job's record on moto: the
    submit wrote the record (job.json's `created`), the submit returned, the runner wrote STAGING (its first
    status), said `running:` (staging done, command started), the command printed its first line, and
    `logs -f` showed it. Clocks are this machine's (the container and the Slurm node share it)."""
    from datetime import datetime

    import boto3

    s3 = boto3.client(
        "s3", endpoint_url=url, aws_access_key_id="bench", aws_secret_access_key="benchbench", region_name="us-east-1"
    )
    prefix = f"jobs/{job_id}/"

    def at(iso: str) -> float:
        return datetime.fromisoformat(iso).timestamp() - started

    doc = json.loads(s3.get_object(Bucket="jobs-bench", Key=prefix + "job.json")["Body"].read())
    status = json.loads(s3.get_object(Bucket="jobs-bench", Key=prefix + "status.json")["Body"].read())
    lines: list[dict[str, Any]] = []
    for item in s3.list_objects_v2(Bucket="jobs-bench", Prefix=prefix + "logs/").get("Contents", []):
        body = s3.get_object(Bucket="jobs-bench", Key=item["Key"])["Body"].read().decode()
        lines.extend(json.loads(raw) for raw in body.splitlines() if raw)
    staging = next((t["at"] for t in status.get("transitions", []) if t["state"] == "STAGING"), None)
    running = next((x["t"] for x in lines if x["l"].startswith("[jobsub] running:")), None)
    tick = next((x["t"] for x in lines if x["l"].startswith("tick ")), None)
    phases = {
        "record_written": at(doc["created"]),
        "submit_returned": submitted - started,
        "runner_staging": at(staging) if staging else float("nan"),
        "command_started": running - started if running else float("nan"),
        "first_line_printed": tick - started if tick else float("nan"),
        "first_line_shown": (shown or time.time()) - started,
    }
    rounded = {name: round(value, 3) for name, value in phases.items()}
    print(f"  trace ({label})", job_id, json.dumps(rounded), flush=True)
    return rounded


def run_notes() -> dict[str, Any]:
    """What goes beside each result: the load average at its end (the machine is shared) and, with
    --trace, the median second at which each step of the job happened."""
    notes: dict[str, Any] = {"load_average": [round(x, 2) for x in os.getloadavg()]}
    if TRACES:
        notes["phases_median_s"] = median_trace()
    return notes


def median_trace() -> dict[str, float]:
    """The median of each phase over the jobs traced since the last call (then forgotten)."""
    names = TRACES[0].keys() if TRACES else []
    medians = {name: round(statistics.median(t[name] for t in TRACES), 3) for name in names}
    TRACES.clear()
    return medians


def sbatch_floor(cluster, work: Path) -> float:  # type: ignore[no-untyped-def]
    """Seconds from `sbatch` of a bare job to its first output line appearing (the engine's own floor)."""
    out = work / f"floor-{time.time_ns()}.out"
    started = time.time()
    result = cluster.run("sbatch", "--parsable", f"--output={out}", "--wrap", "echo first line")
    assert result.returncode == 0, result.stderr
    while not (out.exists() and out.read_text().strip()):
        if time.time() - started > 120:
            raise RuntimeError(f"no output from the bare sbatch job after 120 s: {cluster.log_tail('slurmctld')}")
        time.sleep(0.01)
    return time.time() - started


def slurm_idle(cluster, deadline: float = 60) -> None:  # type: ignore[no-untyped-def]
    """Wait until the cluster runs no job (one that is still completing pends the next: not jobsub's time)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if not cluster.run("squeue", "-h").stdout.strip():  # pending, running and completing jobs
            return
        time.sleep(0.05)
    raise RuntimeError("the Slurm test cluster did not become idle within 60 s")


def bench_slurm(env: dict[str, str], work: Path, url: str, jobs: int) -> dict[str, float | int]:
    """The slurm executor on the moto profile beside bare sbatch, alternating so both see the same load."""
    from tests.executors.slurm_cluster import SlurmCluster

    cluster = SlurmCluster(work / "slurm")
    cluster.start()
    try:
        env = {**env, **cluster.env}
        subprocess.run(
            [sys.executable, "-m", "jobsub", "profile", "add", "slurm", "--storage", "s3", "--endpoint-url", url,
             "--addressing-style", "path", "--jobs-uri", "s3://jobs-bench/jobs/", "--executor", "slurm",
             "--python", sys.executable, "--work-root", str(work / "slurm-runs")],
            env=env, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        firsts, delays, floors, base_firsts = [], [], [], []
        for _ in range(jobs):
            slurm_idle(cluster)
            floors.append(sbatch_floor(cluster, work))
            slurm_idle(cluster)  # the floor's job still finishing would hold the next one in the queue
            first, line_delays = one_job({**env, "JOBSUB_PROFILE": "slurm"}, work / "code")
            firsts.append(first)
            delays.extend(line_delays)
            slurm_idle(cluster)
            base = baseline_job({**env, "JOBSUB_PROFILE": "slurm"}, work / "code")
            base_firsts += [base] if base is not None else []
    finally:
        cluster.stop()
    floor = statistics.median(floors)
    return {
        "jobs": jobs,
        "sbatch_floor_median_s": round(floor, 3),
        **baseline_notes(base_firsts, floor),
        "submit_to_first_line_median_s": round(statistics.median(firsts), 3),
        "submit_to_first_line_max_s": round(max(firsts), 3),
        "added_over_floor_median_s": round(statistics.median(firsts) - floor, 3),
        "line_latency_median_s": round(statistics.median(delays), 3),
        "line_latency_p90_s": round(sorted(delays)[int(len(delays) * 0.9)], 3),
        **run_notes(),
    }


def baseline_docker_image(host: str, work: Path) -> str:
    """The baseline checkout's light job image (its runtime), built by its own test harness on `host`, with
    an image cache of its own so that this tree's cached image is kept."""
    from tests.executors.harness_docker import CACHE

    cache = work / "baseline-images"
    cache.mkdir(exist_ok=True)
    for tarball in CACHE.glob("base-*.tar"):  # the Debian base is the same: no second mmdebstrap
        (cache / tarball.name).symlink_to(tarball)
    script = (
        "import sys, docker\n"
        "from tests.executors.harness_docker import base_image, job_image\n"
        "client = docker.DockerClient(base_url=sys.argv[1], timeout=300)\n"
        "print(job_image(client, base_image(client)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, host],
        env={**os.environ, "PYTHONPATH": BASELINE, "JOBSUB_TEST_IMAGE_CACHE": str(cache)},
        cwd=BASELINE,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


def docker_floor(client, image: str) -> float:  # type: ignore[no-untyped-def]
    """Seconds from a bare `docker run -d` of `image` to its first log line (the engine's own floor)."""
    started = time.time()
    container = client.containers.run(
        image, entrypoint=["python", "-c", "print('first line', flush=True)"], detach=True, network_mode="host"
    )
    try:
        for _ in container.logs(stream=True, follow=True):
            break
        return time.time() - started
    finally:
        container.remove(force=True)


def bench_docker(env: dict[str, str], work: Path, url: str, jobs: int) -> dict[str, float | int]:
    """The docker executor on the moto profile beside bare `docker run`, alternating so both see the same load."""
    from tests.executors.harness_docker import DockerEngine, base_image, job_image

    engine = DockerEngine(Path(tempfile.mkdtemp(prefix="jsd-", dir="/tmp")))
    client = engine.start()
    try:
        image = job_image(client, base_image(client))
        env = {**env, "DOCKER_HOST": engine.host}
        subprocess.run(
            [sys.executable, "-m", "jobsub", "profile", "add", "docker", "--storage", "s3", "--endpoint-url", url,
             "--addressing-style", "path", "--jobs-uri", "s3://jobs-bench/jobs/", "--executor", "docker",
             "--docker-host", engine.host, "--docker-image", image],
            env=env, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        if BASELINE:
            base_image_tag = baseline_docker_image(engine.host, work)
            subprocess.run(
                [sys.executable, "-m", "jobsub", "profile", "add", "docker-base", "--storage", "s3", "--endpoint-url",
                 url, "--addressing-style", "path", "--jobs-uri", "s3://jobs-bench/jobs/", "--executor", "docker",
                 "--docker-host", engine.host, "--docker-image", base_image_tag],
                env=env, check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
        docker_floor(client, image)  # warm the page cache for both
        firsts, delays, floors, base_firsts = [], [], [], []
        for _ in range(jobs):
            floors.append(docker_floor(client, image))
            first, line_delays = one_job({**env, "JOBSUB_PROFILE": "docker"}, work / "code")
            firsts.append(first)
            delays.extend(line_delays)
            base = baseline_job({**env, "JOBSUB_PROFILE": "docker-base"}, work / "code")
            base_firsts += [base] if base is not None else []
    finally:
        engine.stop()
        shutil.rmtree(engine.folder, ignore_errors=True)
    floor = statistics.median(floors)
    return {
        "jobs": jobs,
        "docker_run_floor_median_s": round(floor, 3),
        **baseline_notes(base_firsts, floor),
        "submit_to_first_line_median_s": round(statistics.median(firsts), 3),
        "submit_to_first_line_max_s": round(max(firsts), 3),
        "added_over_floor_median_s": round(statistics.median(firsts) - floor, 3),
        "line_latency_median_s": round(statistics.median(delays), 3),
        "line_latency_p90_s": round(sorted(delays)[int(len(delays) * 0.9)], 3),
        **run_notes(),
    }


def ray_floor(client, work: Path) -> tuple[float, list[float]]:  # type: ignore[no-untyped-def]
    """A bare Ray job (Ray's SDK) running SCRIPT: submit -> first tick line streamed, and each line's delay."""
    import asyncio

    started = time.time()
    sid = client.submit_job(entrypoint=f"python -c {shlex.quote(SCRIPT)}")

    async def stream() -> tuple[float | None, list[float]]:
        first, delays = None, []
        async for chunk in client.tail_job_logs(sid):
            now = time.time()
            for line in chunk.splitlines():
                if line.startswith("tick "):
                    first = first or now
                    delays.append(now - float(line.split()[1]))
        return first, delays

    first, delays = asyncio.run(stream())
    return (first or time.time()) - started, delays


def bench_ray(env: dict[str, str], work: Path, url: str, jobs: int) -> dict[str, float | int]:
    """The ray executor on the moto profile beside a bare Ray SDK job, alternating so both see the same load."""
    import tomli_w
    import tomllib
    from ray.job_submission import JobSubmissionClient

    from tests.executors.harness_ray import AUTH_VAR, start_ray_cluster

    root = Path(tempfile.mkdtemp(prefix="jobsub-ray-"))  # short: Ray's socket paths
    cluster = start_ray_cluster(root)
    try:
        env = {**env, AUTH_VAR: f"Bearer {cluster.token}"}
        subprocess.run(
            [sys.executable, "-m", "jobsub", "profile", "add", "ray", "--storage", "s3", "--endpoint-url", url,
             "--addressing-style", "path", "--jobs-uri", "s3://jobs-bench/jobs/", "--executor", "ray",
             "--ray-address", cluster.url],
            env=env, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        config = Path(env["XDG_CONFIG_HOME"]) / "jobsub" / "config.toml"
        data = tomllib.loads(config.read_text())
        data["profiles"]["ray"]["ray"]["headers_env"] = {"Authorization": AUTH_VAR}
        config.write_text(tomli_w.dumps(data))
        client = JobSubmissionClient(cluster.url, headers=cluster.headers)
        firsts, delays, floors, floor_delays = [], [], [], []
        for _ in range(jobs):
            floor, floor_lines = ray_floor(client, work)
            floors.append(floor)
            floor_delays.extend(floor_lines)
            first, line_delays = one_job({**env, "JOBSUB_PROFILE": "ray"}, work / "code")
            firsts.append(first)
            delays.extend(line_delays)
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    floor = statistics.median(floors)
    return {
        "jobs": jobs,
        "ray_sdk_floor_median_s": round(floor, 3),
        "ray_sdk_line_latency_median_s": round(statistics.median(floor_delays), 3),
        "submit_to_first_line_median_s": round(statistics.median(firsts), 3),
        "submit_to_first_line_max_s": round(max(firsts), 3),
        "added_over_floor_median_s": round(statistics.median(firsts) - floor, 3),
        "line_latency_median_s": round(statistics.median(delays), 3),
        "line_latency_p90_s": round(sorted(delays)[int(len(delays) * 0.9)], 3),
        **run_notes(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--slurm", action="store_true", help="also the slurm executor beside bare sbatch")
    parser.add_argument("--only-slurm", action="store_true", help="only the slurm executor beside bare sbatch")
    parser.add_argument("--docker", action="store_true", help="also the docker executor beside bare docker run")
    parser.add_argument("--only-docker", action="store_true", help="only the docker executor beside docker run")
    parser.add_argument("--ray", action="store_true", help="also the ray executor beside a bare Ray SDK job")
    parser.add_argument("--only-ray", action="store_true", help="only the ray executor beside a bare Ray SDK job")
    parser.add_argument(
        "--trace", action="store_true", help="per job, when each step happened (record, runner start, command)"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another jobsub checkout whose jobs alternate with this tree's (slurm, docker, local executor; not "
        "ray, whose runtime is this tree's package)",
    )
    parser.add_argument(
        "--fresh-code", action="store_true", help="a changed code folder for every job (each submit uploads it)"
    )
    args = parser.parse_args()
    global BASELINE, FRESH_CODE
    FRESH_CODE = args.fresh_code
    BASELINE = str(args.baseline.resolve()) if args.baseline else ""
    work = Path(tempfile.mkdtemp(prefix="jobsub-jobs-bench-"))
    (work / "code").mkdir()
    (work / "code" / "main.py").write_text(SCRIPT)
    moto, url = start_moto()
    if args.trace:
        global TRACE_URL
        TRACE_URL = url
    env = bench_env(work)
    results = {}
    try:
        create_bucket(url, "jobs-bench")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "jobsub",
                "profile",
                "add",
                "moto",
                "--storage",
                "s3",
                "--endpoint-url",
                url,
                "--addressing-style",
                "path",
                "--jobs-uri",
                "s3://jobs-bench/jobs/",
            ],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        if args.slurm or args.only_slurm:
            results["slurm"] = bench_slurm(env, work, url, args.jobs)
            print("slurm", json.dumps(results["slurm"]), flush=True)
        if args.docker or args.only_docker:
            results["docker"] = bench_docker(env, work, url, args.jobs)
            print("docker", json.dumps(results["docker"]), flush=True)
        if args.ray or args.only_ray:
            results["ray"] = bench_ray(env, work, url, args.jobs)
            print("ray", json.dumps(results["ray"]), flush=True)
        for profile in () if (args.only_slurm or args.only_docker or args.only_ray) else ("default", "moto"):
            firsts, delays, base_firsts = [], [], []
            for _ in range(args.jobs):
                first, line_delays = one_job({**env, "JOBSUB_PROFILE": profile}, work / "code")
                firsts.append(first)
                delays.extend(line_delays)
                base = baseline_job({**env, "JOBSUB_PROFILE": profile}, work / "code")
                base_firsts += [base] if base is not None else []
            results[profile] = {
                "jobs": args.jobs,
                "submit_to_first_line_median_s": round(statistics.median(firsts), 3),
                "submit_to_first_line_max_s": round(max(firsts), 3),
                "line_latency_median_s": round(statistics.median(delays), 3),
                "line_latency_p90_s": round(sorted(delays)[int(len(delays) * 0.9)], 3),
                **baseline_notes(base_firsts),
                **run_notes(),
            }
            print(profile, json.dumps(results[profile]), flush=True)
    finally:
        moto.terminate()
        shutil.rmtree(work, ignore_errors=True)
    out = REPO / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"jobs-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
