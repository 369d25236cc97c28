"""Reliability soak (outside CI): randomized kill -9 trials of multipart uploads and downloads on moto.

    python benchmarks/soak_resume.py --trials 100            # the issue's target: 0 corrupt, 0 wrong
    python benchmarks/soak_resume.py --trials 20 --seed 7    # a shorter run, reproducible choices

Each trial picks a file size, part size, concurrency, bandwidth cap and kill time at random, starts the
transfer, kills it with SIGKILL at that moment, optionally edits the source (uploads only: a plain edit, or a
same-size rewrite with the mtime put back), then runs the same command again to completion and checks:

* corrupt: an object whose jobsub-sha256 metadata does not match its bytes (a lie that outlives the run);
* wrong: an object (upload) or file (download) whose bytes are not the source's current bytes, or a file
  that appeared at the destination before it was complete;
* re-sent: parts sent by the rerun that were already stored before it started (uploads: parts listed on the
  server after the kill; downloads: parts recorded in the part journal), beyond the parts in flight.

Prints a summary and writes JSON to benchmarks/results/soak-*.json (see docs/reliability.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.transfer import bench_env, create_bucket, start_moto  # noqa: E402
from jobsub.transfer.planning import plan_download_ranges  # noqa: E402

MiB = 1 << 20
JOBSUB = [sys.executable, "-m", "jobsub"]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_file(path: Path, size: int, rng: random.Random) -> None:
    with path.open("wb") as fh:
        left = size
        while left:
            n = min(left, MiB)
            fh.write(rng.randbytes(n))
            left -= n


def client(url: str):
    import boto3

    return boto3.client(
        "s3", endpoint_url=url, aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1"
    )


def object_state(s3, key: str) -> tuple[str | None, str | None]:
    """(sha256 of the object's bytes, its jobsub-sha256 metadata), or (None, None) when there is none."""
    try:
        head = s3.head_object(Bucket="soak", Key=key)
    except Exception:
        return None, None
    body = s3.get_object(Bucket="soak", Key=key)["Body"]
    digest = hashlib.sha256()
    for chunk in body.iter_chunks(1 << 20):
        digest.update(chunk)
    return digest.hexdigest(), head.get("Metadata", {}).get("jobsub-sha256")


def parts_on_server(s3, key: str) -> int:
    """Parts stored for `key`'s pending uploads. A request sent before the kill may still complete (or abort)
    an upload between the listing and ListParts: that upload then holds no part for the rerun to reuse."""
    uploads = [u for u in s3.list_multipart_uploads(Bucket="soak").get("Uploads", []) if u["Key"] == key]
    stored = 0
    for upload in uploads:
        try:
            stored += len(s3.list_parts(Bucket="soak", Key=key, UploadId=upload["UploadId"]).get("Parts", []))
        except s3.exceptions.NoSuchUpload:
            continue
    return stored


def kill_after(argv: list[str], env: dict[str, str], seconds: float) -> bool:
    """Start, SIGKILL after ``seconds``; True when it was still running (a real mid-transfer kill)."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(seconds)
        return False
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def rerun(argv: list[str], env: dict[str, str]) -> dict:
    done = subprocess.run([*argv, "--json", "-q"], env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        return {"error": done.stderr.strip()[-500:]}
    return json.loads(done.stdout)


def upload_trial(n: int, rng: random.Random, work: Path, env: dict[str, str], s3) -> dict:
    size = rng.randint(12, 48) * MiB + rng.randint(0, MiB)
    part = rng.choice([5, 6, 8]) * MiB
    jobs = rng.randint(1, 4)
    cap = rng.choice([20, 40, 80]) * MiB
    kill_at = rng.uniform(0.6, 3.0)
    edit = rng.choice([None, None, None, "edit", "same-size-restored-mtime"])
    src = work / f"up{n}.bin"
    write_file(src, size, rng)
    key = f"up/{n}.bin"
    argv = [*JOBSUB, "upload", str(src), f"s3://soak/{key}", "--part-size", str(part), "-j", str(jobs)]
    original = sha256_file(src)
    killed = kill_after([*argv, "--max-bandwidth", str(cap), "-q"], env, kill_at)
    # S3 shows an object only once CompleteMultipartUpload succeeded: one visible after a kill that came in
    # the last moments (completion sent, the process not yet exited) is fine when it holds the whole source
    after_kill = object_state(s3, key)[0] if killed else None
    visible_early_wrong = after_kill is not None and after_kill != original
    on_server = parts_on_server(s3, key)
    if edit:
        before = src.stat()
        with src.open("r+b") as fh:
            fh.seek(rng.randrange(size - 4096))
            fh.write(rng.randbytes(4096))
        if edit == "same-size-restored-mtime":
            os.utime(src, ns=(before.st_atime_ns, before.st_mtime_ns))
    summary = rerun(argv, env)
    total = -(-size // part)
    actual, meta = object_state(s3, key)
    expected = sha256_file(src)
    resent = None
    if "error" not in summary and not edit:
        # nothing is missing when the first run finished (or completed the object before the kill landed)
        missing = 0 if not killed or after_kill is not None else total - on_server
        resent = summary["parts_sent"] - missing
    return {
        "kind": "upload",
        "size": size,
        "part_size": part,
        "concurrency": jobs,
        "kill_at_s": round(kill_at, 2),
        "killed_mid_transfer": killed,
        "edit": edit,
        "parts_total": total,
        "parts_on_server_after_kill": on_server,
        "parts_sent_on_rerun": summary.get("parts_sent"),
        "resent_beyond_missing": resent,
        "error": summary.get("error"),
        "complete_before_kill_landed": after_kill is not None,
        "corrupt": actual is not None and meta is not None and actual != meta,
        "wrong": actual != expected or visible_early_wrong,
    }


def download_trial(n: int, rng: random.Random, work: Path, env: dict[str, str], s3) -> dict:
    size = rng.randint(12, 48) * MiB + rng.randint(0, MiB)
    part = rng.choice([0, 0, 5, 6, 8]) * MiB  # 0: the default ranges (bulk up to 64 MiB, an 8 MiB tail)
    jobs = rng.randint(1, 4)
    cap = rng.choice([20, 40, 80]) * MiB
    kill_at = rng.uniform(0.6, 3.0)
    src = work / f"down-src{n}.bin"
    write_file(src, size, rng)
    key = f"down/{n}.bin"
    subprocess.run([*JOBSUB, "upload", str(src), f"s3://soak/{key}", "-q"], env=env, check=True)
    dest = work / f"down{n}.bin"
    sizing = ["--part-size", str(part)] if part else []
    argv = [*JOBSUB, "download", f"s3://soak/{key}", str(dest), *sizing, "-j", str(jobs)]
    killed = kill_after([*argv, "--max-bandwidth", str(cap), "-q"], env, kill_at)
    early = dest.exists() and killed and sha256_file(dest) != sha256_file(src)
    journal = dest.with_name(dest.name + ".jobsub-part.json")
    ranges = plan_download_ranges(size, jobs, part or None)[2]
    try:
        record = json.loads(journal.read_text())
        done = set(range(1, record["done_through"] + 1)) | set(record["done"])  # 1..done_through, and above
        recorded = len(done)
        # bytes the journal vouches for: whole parts, and the written prefix of parts in flight
        kept = sum(n for p, _, n in ranges if p in done) + sum(record.get("written", {}).values())
    except (OSError, ValueError, KeyError):
        recorded = kept = 0
    finished = not killed or (dest.exists() and not journal.exists())  # done before the kill landed
    summary = rerun(argv, env)
    total = len(ranges)
    resent = None if "error" in summary else summary["parts_sent"] - (0 if finished else total - recorded)
    resent_bytes = None if "error" in summary else summary["bytes_transferred"] - (0 if finished else size - kept)
    wrong = not dest.exists() or sha256_file(dest) != sha256_file(src) or early
    result = {
        "kind": "download",
        "size": size,
        "part_size": part,
        "concurrency": jobs,
        "kill_at_s": round(kill_at, 2),
        "killed_mid_transfer": killed,
        "edit": None,
        "parts_total": total,
        "parts_recorded_after_kill": recorded,
        "parts_sent_on_rerun": summary.get("parts_sent"),
        "resent_beyond_missing": resent,
        "bytes_resent_beyond_missing": resent_bytes,
        "error": summary.get("error"),
        "corrupt": False,
        "wrong": wrong,
    }
    for path in (src, dest):
        path.unlink(missing_ok=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="jobsub-soak-"))
    moto, url = start_moto()
    env = bench_env(work)
    trials: list[dict] = []
    started = time.monotonic()
    try:
        profile = ["profile", "add", "moto", "--storage", "s3", "--endpoint-url", url, "--addressing-style", "path"]
        subprocess.run([*JOBSUB, *profile, "--use"], env=env, check=True, stdout=subprocess.DEVNULL)
        create_bucket(url, "soak")
        s3 = client(url)
        for n in range(args.trials):
            trial = (upload_trial if n % 2 == 0 else download_trial)(n, rng, work, env, s3)
            trials.append(trial)
            flags = [k for k in ("corrupt", "wrong") if trial[k]] + (["error"] if trial["error"] else [])
            print(
                f"{n:3d} {trial['kind']:<8} killed={trial['killed_mid_transfer']!s:<5} edit={trial['edit']!s:<24} "
                f"resent={trial['resent_beyond_missing']!s:<4} bytes={trial.get('bytes_resent_beyond_missing')!s:<9} "
                f"{' '.join(flags) or 'ok'}",
                flush=True,
            )
    finally:
        moto.terminate()
        moto.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    resent = [t["resent_beyond_missing"] for t in trials if t["resent_beyond_missing"] is not None]
    summary = {
        "trials": len(trials),
        "uploads": sum(t["kind"] == "upload" for t in trials),
        "downloads": sum(t["kind"] == "download" for t in trials),
        "killed_mid_transfer": sum(t["killed_mid_transfer"] for t in trials),
        "uploads_complete_before_the_kill_landed": sum(bool(t.get("complete_before_kill_landed")) for t in trials),
        "edited_between_runs": sum(bool(t["edit"]) for t in trials),
        "corrupt": sum(t["corrupt"] for t in trials),
        "wrong": sum(t["wrong"] for t in trials),
        "errors": sum(bool(t["error"]) for t in trials),
        "resent_parts_total": sum(max(0, r) for r in resent),
        "resent_parts_max": max(resent, default=0),
        "download_bytes_resent_beyond_missing": sum(
            max(0, t.get("bytes_resent_beyond_missing") or 0) for t in trials if t["kind"] == "download"
        ),
        "max_concurrency": max((t["concurrency"] for t in trials), default=0),
        "seconds": round(time.monotonic() - started, 1),
        "seed": args.seed,
    }
    print(json.dumps(summary, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (args.out / f"soak-{stamp}.json").write_text(json.dumps({"summary": summary, "trials": trials}, indent=2))


if __name__ == "__main__":
    main()
