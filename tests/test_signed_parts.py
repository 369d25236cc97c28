"""`checksum = auto` on a non-AWS endpoint: a signed per-part SHA-256 where the server is shown to verify it.

Issue 22, third pass: on a server that refuses a body that does not match its signed payload hash (Ceph
RGW; probed once per process with a tiny PutObject, the answer written down for dry runs), each part goes with its
SHA-256 as the SigV4 payload hash (computed in the upload's one hash pass, no MD5); on any other server
(moto) MD5 + Content-MD5 and the ETag comparison stay in force. Tests taking `s3env` run on moto and on Ceph
(run those under the heavy lock); the crafted-cache and mixed-resume tests need only moto.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import Env, _isolated_env, poll, write_random
from tests.faultproxy import FaultProxy, Rule
from tests.test_transfer import journals

MiB = 1 << 20


def _server(env: Env):
    assert env.server is not None
    return env.server


def _expected_check(env: Env) -> str:
    return "sha256-signed" if _server(env).verifies_payload_sha256 else "md5"


def _probe_records(env: Env) -> list[dict]:
    folder = env.root / "state" / "jobsub" / "probes"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def _probe_objects(env: Env) -> list[str]:
    listed = env.boto().list_objects_v2(Bucket=env.bucket, Prefix=".jobsub/")
    return [o["Key"] for o in listed.get("Contents", [])]


def test_the_probe_picks_the_part_check_the_server_verifies_and_leaves_nothing(s3env: Env, tmp_path: Path) -> None:
    src = tmp_path / "up"
    big = write_random(src / "big.bin", 12 * MiB, seed=41)  # 3 parts
    small = write_random(src / "small.txt", 1000, seed=42)  # one PUT
    dry = s3env.run_json("upload", str(src), s3env.uri("s/"), "--part-size", "5MiB", "--dry-run")
    assert {f["part_check"] for f in dry["plan"]} == {"md5"}  # nothing asked yet: a dry run sends nothing
    assert _probe_records(s3env) == []
    summary = s3env.run_json("upload", str(src), s3env.uri("s/"), "--part-size", "5MiB")
    check = _expected_check(s3env)
    assert set(summary["verified_by"].values()) == {check}
    (record,) = _probe_records(s3env)
    assert record["verifies_signed_payload"] is (check == "sha256-signed")
    assert _probe_objects(s3env) == [], "the probe left an object behind"
    # the answer is remembered: the dry run now shows the check the upload will use
    dry = s3env.run_json("upload", str(big), s3env.uri("s/again.bin"), "--part-size", "5MiB", "--dry-run")
    assert dry["plan"][0]["part_check"] == check
    out = tmp_path / "down"
    s3env.run("download", s3env.uri("s/"), str(out), "-q", check=True)
    assert (out / "big.bin").read_bytes() == big.read_bytes()
    assert (out / "small.txt").read_bytes() == small.read_bytes()


def test_a_corrupted_part_is_refused_by_the_check_in_force_and_a_resume_reverifies_the_rest(
    s3env: Env, tmp_path: Path
) -> None:
    """Part 3 corrupted on the way, every time: Ceph refuses it by its signed SHA-256, on moto jobsub's ETag
    comparison catches it; nothing becomes visible. When the network heals, the parts already sent are
    re-checked (their MD5 against the ETag the server computed) and reused, and the object is intact."""
    src = write_random(tmp_path / "f.bin", 20 * MiB, seed=43)
    proxy = FaultProxy(s3env.endpoint or "", [Rule("PUT", r"[?&]partNumber=3(&|$)", "corrupt")])
    args = ["upload", str(src), s3env.uri("d/f.bin"), "--part-size", "5MiB", "-q"]
    via = {"JOBSUB_ENDPOINT_URL": proxy.url}
    try:
        result = s3env.run(*args, extra_env=via)
        assert result.returncode == 1
        (line,) = result.stderr.strip().splitlines()
        assert "Traceback" not in line
        if _server(s3env).verifies_payload_sha256:
            assert "did not match their signed SHA-256 (XAmzContentSHA256Mismatch)" in line
        else:
            assert "part 3" in line and "not its MD5" in line
        assert s3env.store().head(s3env.bucket, "d/f.bin") is None
        (journal,) = journals(s3env)
        assert journal["algorithm"] == _expected_check(s3env)
        proxy.rules.clear()
        summary = json.loads(s3env.run(*args, "--json", check=True, extra_env=via).stdout)
    finally:
        proxy.close()
    assert summary["parts_reused"] == 3 and summary["parts_sent"] == 1
    assert set(summary["verified_by"].values()) == {_expected_check(s3env)}
    out = tmp_path / "out.bin"
    s3env.run("download", s3env.uri("d/f.bin"), str(out), "-q", check=True)
    assert out.read_bytes() == src.read_bytes()


def test_a_kill_9_resume_on_ceph_keeps_the_part_check_of_its_upload(cephenv: Env, tmp_path: Path) -> None:
    """Ceph: the parts of a signed upload killed mid-way are re-checked (MD5 against the ETags Ceph
    computed) and reused; moto's MD5 resume is test_transfer.py's kill -9 test."""
    s3env = cephenv
    src = write_random(tmp_path / "big.bin", 40 * MiB, seed=44)  # 8 parts of 5 MiB
    args = ["upload", str(src), s3env.uri("k/big.bin"), "--part-size", "5MiB", "-j", "2", "--max-bandwidth", "20MiB"]
    _kill_mid_upload(s3env, args)
    (journal,) = journals(s3env)
    assert journal["algorithm"] == _expected_check(s3env)
    summary = s3env.run_json(*args)
    assert summary["files_resumed"] == 1 and summary["parts_reused"] >= 2
    assert summary["parts_sent"] + summary["parts_reused"] == 8
    assert set(summary["verified_by"].values()) == {_expected_check(s3env)}
    out = tmp_path / "out.bin"
    s3env.run("download", s3env.uri("k/big.bin"), str(out), "-q", check=True)
    assert out.read_bytes() == src.read_bytes()


def _kill_mid_upload(env: Env, args: list[str]) -> None:
    proc = env.popen(*args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        poll(lambda: next((j for j in journals(env) if len(j["parts"]) >= 2), None), 60, what="two parts sent")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    assert env.store().head(env.bucket, args[2].split("/", 3)[3]) is None


# -- the remembered answer is untrusted input ------------------------------------------------------------------
def _forge(endpoint: str, record: dict | bytes) -> Path:
    """Write a probe record for ``endpoint`` where the upload will look for it (this test process is the user)."""
    from jobsub.transfer.probes import probe_path

    path = probe_path(endpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(record if isinstance(record, bytes) else json.dumps(record).encode())
    path.chmod(0o600)
    return path


def _good(at: str, verifies: object = True, **changes: object) -> dict:
    return {"endpoint": at, "verifies_signed_payload": verifies, "checked": time.time(), **changes}


@pytest.fixture
def motoenv(moto_server, tmp_path: Path, monkeypatch) -> Env:
    """A moto user whose state folder this test process shares (for the forged records)."""
    return _isolated_env(tmp_path, monkeypatch, "s3", moto_server)


@pytest.mark.parametrize(
    "crafted",
    ["oversized", "other endpoint", "from the future", "expired", "not a bool", "extra field", "not json", "a link"],
)
def test_a_crafted_probe_record_is_not_believed(motoenv: Env, tmp_path: Path, crafted: str) -> None:
    """Each record says the endpoint verifies signed payloads; none is as this module writes it, so none
    is believed (the server is asked again instead)."""
    from jobsub.transfer.probes import TTL_SECONDS, load_answer, probe_path

    endpoint = "http://127.0.0.1:9/"
    records: dict[str, dict | bytes] = {
        "oversized": json.dumps(_good(endpoint)).encode() + b" " * 2048,
        "other endpoint": _good("http://127.0.0.1:1/"),
        "from the future": _good(endpoint, checked=time.time() + 3600),
        "expired": _good(endpoint, checked=time.time() - TTL_SECONDS - 60),
        "not a bool": _good(endpoint, verifies=1),
        "extra field": _good(endpoint, note="x"),
        "not json": b"\xff{",
    }
    _forge(endpoint, _good(endpoint))
    assert load_answer(endpoint) is True  # the well-formed record is believed: the variants below are not
    probe_path(endpoint).unlink()
    if crafted == "a link":
        target = tmp_path / "elsewhere.json"
        target.write_text(json.dumps(_good(endpoint)))
        probe_path(endpoint).symlink_to(target)
    else:
        _forge(endpoint, records[crafted])
    assert load_answer(endpoint) is None


def test_an_ignored_record_leaves_md5_in_force_and_a_corrupted_part_is_caught(motoenv: Env, tmp_path: Path) -> None:
    """An oversized record says moto verifies signed payloads (it does not): the upload asks moto, gets
    "does not verify", and MD5 + the ETag comparison catch a part corrupted on the way (sent again)."""
    from jobsub.transfer.probes import load_answer

    env = motoenv
    proxy = FaultProxy(env.endpoint or "", [Rule("PUT", r"[?&]partNumber=2(&|$)", "corrupt", {1})])
    endpoint = proxy.url  # the endpoint the upload talks to, and so the one its record is looked up for
    try:
        _forge(endpoint, json.dumps(_good(endpoint)).encode() + b" " * 2048)
        src = write_random(tmp_path / "f.bin", 12 * MiB, seed=45)
        args = ["upload", str(src), env.uri("c/f.bin"), "--part-size", "5MiB", "--json"]
        summary = json.loads(env.run(*args, check=True, extra_env={"JOBSUB_ENDPOINT_URL": endpoint}).stdout)
    finally:
        proxy.close()
    assert set(summary["verified_by"].values()) == {"md5"}
    assert [r for r in proxy.responses if r[3] == "corrupt"], "the corruption was not injected"
    assert load_answer(endpoint) is False  # asked again, and the true answer replaced the crafted record
    out = tmp_path / "out.bin"
    env.run("download", env.uri("c/f.bin"), str(out), "-q", check=True)
    assert out.read_bytes() == src.read_bytes()


def test_a_remembered_verifies_is_not_trusted_by_an_upload(motoenv: Env, tmp_path: Path) -> None:
    """Hostile: a record (valid, an hour old) says the endpoint verifies signed payloads, but the URL now leads
    to a server that checks nothing (a tunnel, a swapped host: here moto behind the proxy). The upload asks
    the server itself, keeps MD5 + the ETag comparison, and a part corrupted on the way is caught and sent
    again: the stored object is the source, byte for byte. The dry run, which sends nothing, still reads the
    record."""
    env = motoenv
    proxy = FaultProxy(env.endpoint or "", [Rule("PUT", r"[?&]partNumber=2(&|$)", "corrupt", {1})])
    via = {"JOBSUB_ENDPOINT_URL": proxy.url}
    try:
        _forge(proxy.url, _good(proxy.url, verifies=True, checked=time.time() - 3600))
        src = write_random(tmp_path / "f.bin", 12 * MiB, seed=48)
        args = ["upload", str(src), env.uri("t/f.bin"), "--part-size", "5MiB", "--json"]
        (planned,) = json.loads(env.run(*args, "--dry-run", check=True, extra_env=via).stdout)["plan"]
        assert planned["part_check"] == "sha256-signed"
        summary = json.loads(env.run(*args, check=True, extra_env=via).stdout)
    finally:
        proxy.close()
    assert set(summary["verified_by"].values()) == {"md5"}
    assert [r for r in proxy.responses if r[3] == "corrupt"], "the corruption was not injected"
    stored = env.boto().get_object(Bucket=env.bucket, Key="t/f.bin")["Body"].read()
    assert stored == src.read_bytes()


def test_a_dry_run_over_an_interrupted_upload_needs_no_settled_check(motoenv: Env, tmp_path: Path) -> None:
    """No answer written down yet and a pending upload of the key: the dry run compares its parts by the
    plan's check (MD5) instead of failing on the unsettled `auto` (it ended "unknown checksum algorithm")."""
    env = motoenv
    src = write_random(tmp_path / "f.bin", 12 * MiB, seed=49)
    client = env.boto()
    upload_id = client.create_multipart_upload(Bucket=env.bucket, Key="o/f.bin")["UploadId"]
    client.upload_part(
        Bucket=env.bucket, Key="o/f.bin", UploadId=upload_id, PartNumber=1, Body=src.read_bytes()[: 5 * MiB]
    )
    args = ["upload", str(src), env.uri("o/f.bin"), "--part-size", "5MiB", "--json"]
    result = env.run(*args, "--dry-run")
    assert result.returncode == 0, result.stderr
    (planned,) = json.loads(result.stdout)["plan"]
    assert planned["part_check"] == "md5" and planned["parts_reused"] == 1
    env.run(*args, check=True)  # (boto3 gave the orphan's part a CRC32: the upload may start afresh)
    stored = env.boto().get_object(Bucket=env.bucket, Key="o/f.bin")["Body"].read()
    assert stored == src.read_bytes()


def test_the_probe_leaves_no_version_in_a_versioned_bucket(motoenv: Env) -> None:
    """On a server that stores the probe (moto), the probe deletes the very version it wrote: a versioned
    bucket keeps neither that version nor a delete marker."""
    env = motoenv
    client = env.boto()
    client.put_bucket_versioning(Bucket=env.bucket, VersioningConfiguration={"Status": "Enabled"})
    assert env.store().probe_signed_payload(env.bucket) is False
    listed = client.list_object_versions(Bucket=env.bucket, Prefix=".jobsub/")
    assert listed.get("Versions", []) == [] and listed.get("DeleteMarkers", []) == []


def test_an_unusable_state_folder_fails_the_file_in_one_line(motoenv: Env, tmp_path: Path) -> None:
    """XDG_STATE_HOME lies under a file: the upload cannot keep its state (hash cache, probe answer), and says
    so as that file's failure in one line, as before the probe existed; never "unexpected", never a traceback."""
    env = motoenv
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    src = write_random(tmp_path / "s.txt", 1000, seed=50)
    result = env.run("upload", str(src), env.uri("s.txt"), extra_env={"XDG_STATE_HOME": str(blocker / "state")})
    assert result.returncode == 1 and f"error: {src}: Not a directory" in result.stderr, result.stderr
    assert "unexpected" not in result.stderr and "Traceback" not in result.stderr


def test_a_resume_never_mixes_two_part_checks(motoenv: Env, tmp_path: Path) -> None:
    """An upload killed while its parts went by MD5; a record (untrue for moto) says the server verifies
    signed payloads. The dry run, which reads the record, plans a signed upload and says the interrupted one
    would be aborted. The upload asks moto itself ("does not verify"), so its check is MD5 again: it makes
    its plan afresh and resumes the MD5 upload, every part by one check, never parts of both."""
    env = motoenv
    endpoint = env.endpoint or ""
    src = write_random(tmp_path / "big.bin", 40 * MiB, seed=47)
    args = ["upload", str(src), env.uri("m/big.bin"), "--part-size", "5MiB", "-j", "2", "--max-bandwidth", "20MiB"]
    _kill_mid_upload(env, args)
    (journal,) = journals(env)
    assert journal["algorithm"] == "md5"
    _forge(endpoint, _good(endpoint, verifies=True))
    (file,) = env.run_json(*args, "--dry-run")["plan"]  # type: ignore[call-overload]
    assert file["part_check"] == "sha256-signed" and file["parts_reused"] == 0
    assert file["abort_upload_id"] == journal["upload_id"] and "checked parts by md5" in file["reason"]
    summary = env.run_json(*args)
    assert isinstance(summary, dict)
    assert summary["parts_reused"] == len(journal["parts"]) and summary["parts_sent"] == 8 - len(journal["parts"])
    assert set(summary["verified_by"].values()) == {"md5"}
    assert env.run_json("uploads", "list", env.uri()) == []
    assert journals(env) == []
    out = tmp_path / "out.bin"
    env.run("download", env.uri("m/big.bin"), str(out), "-q", check=True)
    assert out.read_bytes() == src.read_bytes()
