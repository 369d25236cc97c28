"""Job latency, on the local profile and on a moto S3 profile: median over N jobs of
  - submit -> first log line shown by `jobsub logs -f` (what a user waits for after pressing enter), and
  - line printed by the job -> the same line shown by `logs -f` (how live the log is).

    python benchmarks/jobs.py [--jobs 10] [--slurm]

Targets (issue 3): both medians under 2 seconds.

With --slurm (needs slurm-wlm + munge, run as root): a throwaway one-node cluster (the test fixture's), the
same job through the slurm executor on the moto profile, and beside it the engine's floor measured in the
same run: a bare `sbatch` job printing one timestamped line -> that line in its output file.
Target (issue 8): jobsub adds under 1 s to that floor.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.transfer import bench_env, create_bucket, start_moto  # noqa: E402

SCRIPT = "import time\nfor i in range(6):\n    print(f'tick {time.time():.4f}', flush=True)\n    time.sleep(0.5)\n"


def one_job(env: dict[str, str], code: Path) -> tuple[float, list[float]]:
    jobsub = [sys.executable, "-m", "jobsub"]
    started = time.time()
    out = subprocess.run(
        [*jobsub, "submit", "python-script", "--code", str(code), "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
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
    return (first or time.time()) - started, delays


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
        firsts, delays, floors = [], [], []
        for _ in range(jobs):
            floors.append(sbatch_floor(cluster, work))
            first, line_delays = one_job({**env, "JOBSUB_PROFILE": "slurm"}, work / "code")
            firsts.append(first)
            delays.extend(line_delays)
    finally:
        cluster.stop()
    floor = statistics.median(floors)
    return {
        "jobs": jobs,
        "sbatch_floor_median_s": round(floor, 3),
        "submit_to_first_line_median_s": round(statistics.median(firsts), 3),
        "submit_to_first_line_max_s": round(max(firsts), 3),
        "added_over_floor_median_s": round(statistics.median(firsts) - floor, 3),
        "line_latency_median_s": round(statistics.median(delays), 3),
        "line_latency_p90_s": round(sorted(delays)[int(len(delays) * 0.9)], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--slurm", action="store_true", help="also the slurm executor beside bare sbatch")
    parser.add_argument("--only-slurm", action="store_true", help="only the slurm executor beside bare sbatch")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="jobsub-jobs-bench-"))
    (work / "code").mkdir()
    (work / "code" / "main.py").write_text(SCRIPT)
    moto, url = start_moto()
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
        for profile in () if args.only_slurm else ("default", "moto"):
            firsts, delays = [], []
            for _ in range(args.jobs):
                first, line_delays = one_job({**env, "JOBSUB_PROFILE": profile}, work / "code")
                firsts.append(first)
                delays.extend(line_delays)
            results[profile] = {
                "jobs": args.jobs,
                "submit_to_first_line_median_s": round(statistics.median(firsts), 3),
                "submit_to_first_line_max_s": round(max(firsts), 3),
                "line_latency_median_s": round(statistics.median(delays), 3),
                "line_latency_p90_s": round(sorted(delays)[int(len(delays) * 0.9)], 3),
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
