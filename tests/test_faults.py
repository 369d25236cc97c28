"""The upload through a fault-injecting proxy in front of moto: retries ride over faults, or a clear failure."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Env, write_random
from tests.faultproxy import FaultProxy, Rule

MiB = 1 << 20
PART = r"[?&]partNumber="


def _via(env: Env, proxy: FaultProxy) -> dict[str, str]:
    return {"JOBSUB_ENDPOINT_URL": proxy.url}


def test_upload_completes_through_resets_and_5xx(s3env: Env, tmp_path: Path) -> None:
    src = write_random(tmp_path / "f.bin", 30 * MiB, seed=11)
    proxy = FaultProxy(
        s3env.endpoint or "",
        [
            Rule("PUT", PART, "503", {1, 3}),
            Rule("PUT", PART, "reset", {5}),
            Rule("PUT", PART, "500", {7}),
            Rule("PUT", PART, "stall", {9}, stall_seconds=1.0),
        ],
    )
    try:
        result = s3env.run(
            "upload", str(src), s3env.uri("f/f.bin"), "--part-size", "5MiB", "--json", extra_env=_via(s3env, proxy)
        )
        assert result.returncode == 0, result.stderr
        assert sum(r.hits for r in proxy.rules) == 5, "the faults were not all injected"
    finally:
        proxy.close()
    out = tmp_path / "out.bin"
    s3env.run("download", s3env.uri("f/f.bin"), str(out), "-q", check=True)
    assert out.read_bytes() == src.read_bytes()


def test_persistent_failure_is_clear_leaves_nothing_visible_and_resumes(s3env: Env, tmp_path: Path) -> None:
    src = write_random(tmp_path / "f.bin", 30 * MiB, seed=12)
    proxy = FaultProxy(s3env.endpoint or "", [Rule("PUT", r"[?&]partNumber=4(&|$)", "500")])
    args = ["upload", str(src), s3env.uri("g/f.bin"), "--part-size", "5MiB"]
    try:
        # two botocore attempts per request and no pause between jobsub's part attempts: the part fails
        # for good just the same, in seconds instead of botocore's half-minute of backoff
        fast = {**_via(s3env, proxy), "AWS_MAX_ATTEMPTS": "2", "JOBSUB_RETRY_BACKOFF": "0"}
        result = s3env.run(*args, extra_env=fast)
    finally:
        proxy.close()
    assert result.returncode == 1
    assert "answered InternalError" in result.stderr and "Traceback" not in result.stderr
    assert s3env.store().head(s3env.bucket, "g/f.bin") is None
    assert len(s3env.run_json("uploads", "list", s3env.uri())) == 1
    summary = json.loads(s3env.run(*args, "--json", "-q", check=True).stdout)
    assert summary["parts_reused"] == 5 and summary["parts_sent"] == 1
