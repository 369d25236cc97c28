"""Numbers behind docs/reliability.md "What the executors promise": how soon --max-cost stops a job during
staging and during the output upload, and what the local store's bit-rot check costs.

    python benchmarks/job_safety.py        # about a minute; a throwaway jobsub user in a temp folder

Not part of CI (timings belong here, not in tests); it reuses the test helpers for an isolated user.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def cost_stops() -> None:
    from tests.conftest import make_env, poll, write_random
    from tests.test_cost import set_prices

    for key in list(os.environ):
        if key.startswith(("XDG_", "JOBSUB_", "AWS_")):
            del os.environ[key]
    tmp = Path(tempfile.mkdtemp())
    user = make_env(tmp)
    os.environ.update(user.vars)
    set_prices(user, table="bench", currency="CNY", cpu_core_hour=36.0)  # 0.01 CNY a second
    for n in range(24):
        write_random(tmp / "in" / f"p{n}.bin", 256 << 10, seed=n)
    user.run("upload", str(tmp / "in"), user.uri("in/"), check=True)
    main = tmp / "main.py"
    (tmp / "job.yaml").write_text(f"name: spender\ncommand: python {main}\n")
    cases = [
        ("staging", "print(1)\n", ["--input", f"data={user.uri('in/')}"], "JOBSUB_STAGING_MAX_BANDWIDTH"),
        (
            "upload",
            "import os\nfor n in range(32):\n"
            "    open(os.environ['JOBSUB_OUTPUT_DIR'] + f'/p{n}', 'wb').write(os.urandom(256 << 10))\n",
            [],
            "JOBSUB_OUTPUT_MAX_BANDWIDTH",
        ),
    ]
    for kind, script, extra, knob in cases:
        main.write_text(script)
        result = user.run(
            "submit", "-f", str(tmp / "job.yaml"), *extra, "--max-cost", "0.04", "--json", extra_env={knob: "256KiB"}
        )
        job = json.loads(result.stdout)["job_id"]
        status = poll(
            lambda job=job: (s := user.run_json("status", job)["status"])["state"] in ("FAILED", "SUCCEEDED") and s,
            120,
            0.3,
        )
        print(f"{kind}: {status['state']}: {status['reason']}")
        for line in user.run("logs", job, "--timestamps").stdout.splitlines():
            if any(word in line for word in ("cost limit", "staging input", "output upload started", "stopped")):
                print("   ", line)


def bitrot_check_cost(rounds: int = 2000) -> None:
    from jobsub.storage.local import LocalStore

    root = Path(tempfile.mkdtemp())
    store = LocalStore(root)
    data = os.urandom(2048)
    store.put("bkt", "rec/status.json", data)

    def per_call(action) -> float:
        started = time.perf_counter()
        for _ in range(rounds):
            action()
        return (time.perf_counter() - started) / rounds * 1e6

    get_us = per_call(lambda: store.get("bkt", "rec/status.json"))
    head_us = per_call(lambda: store.head("bkt", "rec/status.json"))
    md5_us = per_call(lambda: hashlib.md5(data).hexdigest())
    unlocked_us = per_call(lambda: store._object_path("bkt", "rec/status.json").read_bytes())
    print(
        f"get 2 KiB record {get_us:.0f} us (md5 {md5_us:.0f} us; unlocked read {unlocked_us:.0f} us), "
        f"head {head_us:.0f} us"
    )
    big = root / "big.bin"
    big.write_bytes(os.urandom(64 << 20))
    fd = os.open(big, os.O_RDONLY)
    staged = store.stage_file(fd, big.stat().st_size)
    os.close(fd)
    store.commit_staged(staged, "bkt", "big.bin", None)
    timings = []
    for touch in (False, True, False):
        if touch:
            os.utime(root / "bkt" / "big.bin", ns=(0, 10**9))
        started = time.perf_counter()
        store.head("bkt", "big.bin")
        timings.append((time.perf_counter() - started) * 1e3)
    print(
        f"head 64 MiB object: unchanged {timings[0]:.2f} ms, after touch {timings[1]:.0f} ms, then {timings[2]:.2f} ms"
    )


if __name__ == "__main__":
    cost_stops()
    bitrot_check_cost()
