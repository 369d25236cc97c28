"""What no verified Python transfer can go under on this machine: the pieces every jobsub run must pay, each
measured alone, beside the peer figure it is compared with (issue 22's local-store and s5cmd targets).

    python benchmarks/floors.py                      # 1 GiB, 5 rounds
    python benchmarks/floors.py --size 256MiB --rounds 7

Why a separate benchmark: a whole `jobsub upload` mixes its start, the copy and the hash, and the machine's
load moves all three. Here each piece runs alone, in a fresh process, alternating with the others, so the
bound they add up to can be set against the target in the same minutes:

- the interpreter alone (`python -c pass`), and the start every boto3-based tool pays before its first
  request (`import boto3` + an S3 client);
- SHA-256 and MD5 of SIZE bytes from memory (OpenSSL through hashlib, one stream: a whole-file SHA-256 is
  serial by definition), in CPU and wall seconds;
- `cp` of a SIZE file from a warm page cache, and the same copy done by copy_file_range from Python (what the
  local store does) without any hash.

Bounds printed: a verified local-store upload cannot take less than the interpreter plus one serial SHA-256
of the file (the hash must come from the bytes stored, and the whole-file SHA-256 has no parallel form), and
a verified boto3-based download cannot take less than the client start plus the SHA-256 of its bytes (the
hash can overlap the receive, not the start); each is printed as a ratio against what the target allows
(0.5x `cp`'s speed = twice cp's wall; 1.2x s5cmd's wall, given with --s5cmd-wall and --s5cmd-size).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jobsub.units import human_size, parse_size  # noqa: E402

BOTO_CLIENT = (
    "import boto3; boto3.client('s3', endpoint_url='http://127.0.0.1:9', region_name='us-east-1', "
    "aws_access_key_id='x', aws_secret_access_key='y')"
)
HASH = """
import hashlib, os, sys, time
size, name = int(sys.argv[1]), sys.argv[2]
block = os.urandom(min(size, 64 << 20))
wall, cpu = time.perf_counter(), time.process_time()
h, left = hashlib.new(name), size
while left > 0:
    n = min(left, len(block))
    h.update(memoryview(block)[:n])
    left -= n
print(time.perf_counter() - wall, time.process_time() - cpu)
"""
KERNEL_COPY = """
import os, sys
src, dst = os.open(sys.argv[1], os.O_RDONLY), os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
size, at = os.fstat(src).st_size, 0
while at < size:
    n = os.copy_file_range(src, dst, min(64 << 20, size - at), at, at)
    if n <= 0:
        raise SystemExit("copy_file_range copied nothing")
    at += n
os.close(src); os.close(dst)
"""


def timed(argv: list[str]) -> tuple[float, float, str]:
    """(wall s, CPU s of the child, its stdout)."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    out = proc.stdout.read().decode() if proc.stdout else ""
    if os.waitstatus_to_exitcode(status) != 0:
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise RuntimeError(f"{argv[:3]} failed: {err[-500:]}")
    return wall, usage.ru_utime + usage.ru_stime, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="1GiB")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--s5cmd-wall", type=float, default=None, help="s5cmd's download wall (s) from benchmarks/transfer.py"
    )
    parser.add_argument(
        "--s5cmd-size", default="256MiB", help="the size that s5cmd's download wall was measured at (256MiB)"
    )
    args = parser.parse_args()
    size = parse_size(args.size)
    py = sys.executable
    rows: dict[str, list[tuple[float, float]]] = {}
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="jobsub-floors-") as tmp:
        src, dst = Path(tmp) / "src.bin", Path(tmp) / "dst.bin"
        with src.open("wb") as fh:
            left = size
            while left > 0:
                chunk = os.urandom(min(left, 16 << 20))
                fh.write(chunk)
                left -= len(chunk)
        subprocess.run(["cat", str(src)], stdout=subprocess.DEVNULL, check=True)  # warm the page cache
        steps = {
            "python -c pass": lambda: timed([py, "-c", "pass"])[:2],
            "import boto3 + S3 client": lambda: timed([py, "-c", BOTO_CLIENT])[:2],
            f"SHA-256 of {args.size} (in-process)": lambda: _inner(timed([py, "-c", HASH, str(size), "sha256"])),
            f"MD5 of {args.size} (in-process)": lambda: _inner(timed([py, "-c", HASH, str(size), "md5"])),
            f"cp {args.size}": lambda: timed(["cp", str(src), str(dst)])[:2],
            f"copy_file_range {args.size} (python)": lambda: timed([py, "-c", KERNEL_COPY, str(src), str(dst)])[:2],
        }
        for round_ in range(args.rounds):
            order = list(steps.items())
            if round_ % 2:
                order.reverse()
            for name, step in order:
                loads.append(os.getloadavg()[0])
                dst.unlink(missing_ok=True)
                rows.setdefault(name, []).append(step())
    med = {name: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for name, v in rows.items()}
    print(f"{human_size(size)}, {args.rounds} alternating rounds, medians; load {min(loads):.2f}-{max(loads):.2f}")
    print("| piece | wall s | CPU s |\n|---|---|---|")
    for name, (wall, cpu) in med.items():
        print(f"| {name} | {wall:.3f} | {cpu:.3f} |")
    start = med["python -c pass"][0]
    sha = med[f"SHA-256 of {args.size} (in-process)"][0]
    cp = med[f"cp {args.size}"][0]
    allowed = 2 * cp
    bound = start + sha
    print(
        f"\nlocal store, 0.5x cp: a verified upload may take {allowed:.3f} s; interpreter + one serial SHA-256 "
        f"alone take {bound:.3f} s ({bound / allowed:.2f}x what is allowed, before any import or copy)"
    )
    client = med["import boto3 + S3 client"][0]
    if args.s5cmd_wall:
        goal = 1.2 * args.s5cmd_wall
        other = parse_size(args.s5cmd_size)
        hashing = sha * other / size  # the SHA-256 of every byte, which can overlap the receive but not the start
        print(
            f"s5cmd goal at {args.s5cmd_size}: 1.2x s5cmd's {args.s5cmd_wall:.3f} s = {goal:.3f} s; the boto3 client "
            f"start ({client:.3f} s) and the SHA-256 of {args.s5cmd_size} ({hashing:.3f} s) alone take "
            f"{client + hashing:.3f} s ({(client + hashing) / goal:.2f}x the goal)"
        )
    return 0


def _inner(result: tuple[float, float, str]) -> tuple[float, float]:
    """The hash's own wall and CPU, as the child measured them (not its interpreter start)."""
    wall, cpu = (float(x) for x in result[2].split())
    return wall, cpu


if __name__ == "__main__":
    raise SystemExit(main())
