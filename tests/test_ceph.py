"""Where a production S3 server (Ceph's RADOS Gateway) differs from moto, and how jobsub copes.

Tests taking `s3env` run on moto and on Ceph: the assertion on what the *server* did reads the server's
capabilities (`env.server`), the assertion on what the *user* sees is the same on both. Tests taking
`cephenv` cover what only Ceph does (quotas, HTTPS with aws-chunked refused).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.conftest import Env, poll, write_random
from tests.faultproxy import FaultProxy, Rule
from tests.test_transfer import journals

MiB = 1 << 20
PART = r"[?&]partNumber="


def _server(env: Env):
    assert env.server is not None
    return env.server


# -- Content-MD5 and corruption on the way -------------------------------------------------------------------
def test_a_part_corrupted_on_the_way_is_refused_or_caught_and_sent_again(s3env: Env, tmp_path: Path) -> None:
    """One byte of part 2 flipped between jobsub and the server: Ceph refuses it (its signed SHA-256:
    XAmzContentSHA256Mismatch; with checksum = md5, Content-MD5: BadDigest), moto stores it and jobsub's own
    ETag check catches it; either way the part is sent again and the object is intact."""
    src = write_random(tmp_path / "f.bin", 30 * MiB, seed=21)
    proxy = FaultProxy(s3env.endpoint or "", [Rule("PUT", PART, "corrupt", {2})])
    try:
        result = s3env.run(
            "upload", str(src), s3env.uri("c/f.bin"), "--part-size", "5MiB", "-j", "2", "--json",
            extra_env={"JOBSUB_ENDPOINT_URL": proxy.url},
        )  # fmt: skip
    finally:
        proxy.close()
    assert result.returncode == 0, result.stderr
    corrupted = [r for r in proxy.responses if r[3] == "corrupt"]
    assert len(corrupted) == 1, proxy.responses
    assert corrupted[0][2] == (400 if _server(s3env).verifies_content_md5 else 200)
    assert json.loads(result.stdout)["parts_sent"] == 6
    out = tmp_path / "out.bin"
    s3env.run("download", s3env.uri("c/f.bin"), str(out), "-q", check=True)
    assert out.read_bytes() == src.read_bytes()


def test_a_part_corrupted_every_time_fails_in_one_line_and_nothing_becomes_visible(s3env: Env, tmp_path: Path) -> None:
    src = write_random(tmp_path / "f.bin", 20 * MiB, seed=22)
    proxy = FaultProxy(s3env.endpoint or "", [Rule("PUT", r"[?&]partNumber=3(&|$)", "corrupt")])
    args = ["upload", str(src), s3env.uri("d/f.bin"), "--part-size", "5MiB", "-q"]
    via = {"JOBSUB_ENDPOINT_URL": proxy.url}
    try:
        result = s3env.run(*args, extra_env=via)
        assert result.returncode == 1
        (line,) = result.stderr.strip().splitlines()
        assert "Traceback" not in line and "None" not in line
        if _server(s3env).verifies_payload_sha256:  # auto: the part's SHA-256 is signed (test_signed_parts.py)
            assert "did not match their signed SHA-256 (XAmzContentSHA256Mismatch)" in line
        else:
            assert "part 3" in line and "not its MD5" in line
        assert s3env.store().head(s3env.bucket, "d/f.bin") is None
        proxy.rules.clear()  # the network heals: the same command resumes
        summary = json.loads(s3env.run(*args, "--json", check=True, extra_env=via).stdout)
    finally:
        proxy.close()
    assert summary["parts_reused"] == 3 and summary["parts_sent"] == 1
    out = tmp_path / "out.bin"
    s3env.run("download", s3env.uri("d/f.bin"), str(out), "-q", check=True)
    assert out.read_bytes() == src.read_bytes()


def test_a_wrong_content_md5_is_refused_only_by_a_verifying_server(s3env: Env) -> None:
    """The server's own behaviour, which the test above relies on (S3-SERVERS.md)."""
    client = s3env.boto()
    wrong = "XrY7u+Ae7tCTyyK7j1rNww=="  # the MD5 of b"hello world", not of b"hello"
    if _server(s3env).verifies_content_md5:
        with pytest.raises(ClientError) as info:
            client.put_object(Bucket=s3env.bucket, Key="m", Body=b"hello", ContentMD5=wrong)
        assert info.value.response["Error"]["Code"] == "BadDigest"
    else:
        client.put_object(Bucket=s3env.bucket, Key="m", Body=b"hello", ContentMD5=wrong)


# -- flexible checksums --------------------------------------------------------------------------------------
def test_a_wrong_crc32_is_accepted_so_a_crc_sent_proves_nothing(s3env: Env) -> None:
    """Neither server refuses a wrong x-amz-checksum-crc32 (moto 5.2 drops it; Ceph RGW 16 ignores it and
    never returns a checksum). A CRC sent to these servers proves nothing, so jobsub must not count
    on it: its own end-to-end checks (part MD5 vs ETag, SHA-256 of the file) are what hold there."""
    client = s3env.boto(request_checksum_calculation="when_required")
    server = _server(s3env)
    if server.verifies_flexible_checksums:
        with pytest.raises(ClientError):
            client.put_object(Bucket=s3env.bucket, Key="crc", Body=b"hello", ChecksumCRC32="AAAAAA==")
        return
    client.put_object(Bucket=s3env.bucket, Key="crc", Body=b"hello", ChecksumCRC32="AAAAAA==")
    head = client.head_object(Bucket=s3env.bucket, Key="crc", ChecksumMode="ENABLED")
    assert head.get("ChecksumCRC32") != "AAAAAA==", "the server kept a CRC32 that does not match the bytes"
    if not server.returns_flexible_checksums:
        assert not any(k.startswith("Checksum") for k in head), head


def test_bytes_changed_behind_the_servers_checks_are_caught_by_jobsub_at_download(s3env: Env, tmp_path: Path) -> None:
    """No server-side checksum covers bytes that change after they were stored (or a CRC the server ignores):
    the object keeps jobsub's SHA-256 in its metadata but now holds other bytes of the same size. jobsub's
    own end-to-end check refuses to put them in place."""
    src = write_random(tmp_path / "f.bin", 12 * MiB, seed=26)
    s3env.run("upload", str(src), s3env.uri("e/f.bin"), "-q", check=True)
    client = s3env.boto()
    head = client.head_object(Bucket=s3env.bucket, Key="e/f.bin")
    other = bytearray(src.read_bytes())
    other[len(other) // 2] ^= 0xFF
    client.put_object(Bucket=s3env.bucket, Key="e/f.bin", Body=bytes(other), Metadata=head["Metadata"])
    dest = tmp_path / "out" / "f.bin"
    result = s3env.run("download", s3env.uri("e/f.bin"), str(dest), "-q")
    assert result.returncode == 1
    assert "downloaded with a wrong checksum" in result.stderr
    assert not dest.exists() and not list(dest.parent.glob("f.bin.jobsub-part*"))


# -- uploads that vanish: ListParts after abort ----------------------------------------------------------------
def test_an_upload_aborted_behind_jobsubs_back_starts_again_and_says_so(s3env: Env, tmp_path: Path) -> None:
    """Ceph answers ListParts on an aborted upload with NoSuchKey (AWS and moto: NoSuchUpload)."""
    src = write_random(tmp_path / "f.bin", 30 * MiB, seed=23)
    args = ["upload", str(src), s3env.uri("a/f.bin"), "--part-size", "5MiB", "-j", "1"]
    proc = s3env.popen(*args, "--max-bandwidth", "10MiB", "-q", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        journal = poll(lambda: next((j for j in journals(s3env) if j["parts"]), None), 60, what="a recorded part")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    s3env.boto().abort_multipart_upload(Bucket=s3env.bucket, Key="a/f.bin", UploadId=journal["upload_id"])
    result = s3env.run(*args)
    assert result.returncode == 0, result.stderr
    assert f"upload {journal['upload_id']} of {src} no longer exists on the server: starting again" in result.stderr
    out = tmp_path / "out.bin"
    s3env.run("download", s3env.uri("a/f.bin"), str(out), "-q", check=True)
    assert out.read_bytes() == src.read_bytes()
    assert s3env.run_json("uploads", "list", s3env.uri()) == []


# -- errors without a Message ---------------------------------------------------------------------------------
def test_a_full_quota_is_named_as_such_not_as_bad_credentials(cephenv: Env, tmp_path: Path) -> None:
    """Ceph answers a full quota with 403 QuotaExceeded and no Message: the one line still says what happened."""
    server = _server(cephenv)
    server.admin_run("quota", "set", "--quota-scope=bucket", f"--bucket={cephenv.bucket}", "--max-objects=1")
    server.admin_run("quota", "enable", "--quota-scope=bucket", f"--bucket={cephenv.bucket}")
    first = write_random(tmp_path / "one.bin", 1000, seed=1)
    second = write_random(tmp_path / "two.bin", 1000, seed=2)
    cephenv.run("upload", str(first), cephenv.uri("q/one.bin"), "-q", check=True)
    result = cephenv.run("upload", str(second), cephenv.uri("q/two.bin"), "-q")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "quota of the bucket or user is exceeded (QuotaExceeded)" in lines[0]
    assert "credentials" not in lines[0] and "None" not in lines[0]


# -- HTTPS: aws-chunked is refused by Ceph ---------------------------------------------------------------------
def _https_env(env: Env) -> dict[str, str]:
    server = _server(env)
    return {"JOBSUB_ENDPOINT_URL": server.https_url, "AWS_CA_BUNDLE": server.ca_bundle}


def test_boto3_defaults_over_https_are_refused_by_ceph(cephenv: Env) -> None:
    """boto3's default (`when_supported`) streams an aws-chunked body with a trailing checksum over HTTPS;
    radosgw 16 answers 411 MissingContentLength. This is why jobsub never lets botocore pick it."""
    import boto3

    server = _server(cephenv)
    client = boto3.client(
        "s3",
        endpoint_url=server.https_url,
        verify=server.ca_bundle,
        region_name="us-east-1",
        aws_access_key_id=cephenv.vars["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=cephenv.vars["AWS_SECRET_ACCESS_KEY"],
    )
    with pytest.raises(ClientError) as info:
        client.put_object(Bucket=cephenv.bucket, Key="chunked", Body=b"hello")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 411


def test_jobsub_over_https_uploads_and_downloads_on_ceph(cephenv: Env, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_random(src / "big.bin", 12 * MiB, seed=24)  # multipart
    write_random(src / "small.txt", 100, seed=25)  # one PUT
    https = _https_env(cephenv)
    result = cephenv.run("upload", str(src), cephenv.uri("h/"), "--json", extra_env=https)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["files_transferred"] == 2
    back = tmp_path / "back"
    cephenv.run("download", cephenv.uri("h/"), str(back), "-q", check=True, extra_env=https)
    for name in ("big.bin", "small.txt"):
        assert (back / name).read_bytes() == (src / name).read_bytes()


@pytest.mark.parametrize("mode", ["auto", "md5", "crc32", "sha256"])
def test_every_checksum_mode_uploads_over_https_on_ceph_without_aws_chunked(
    cephenv: Env, tmp_path: Path, mode: str
) -> None:
    """Whatever `checksum` says, jobsub passes the value itself and never lets botocore stream aws-chunked
    (which radosgw 16 refuses over HTTPS with 411): the upload works, with no fallback needed."""
    server = _server(cephenv)
    cephenv.run(
        "profile", "add", f"tls-{mode}", "--storage", "s3", "--endpoint-url", server.https_url,
        "--addressing-style", "path", "--checksum", mode, "--use", check=True,
    )  # fmt: skip
    src = tmp_path / "src"
    write_random(src / "big.bin", 12 * MiB, seed=27)  # multipart
    write_random(src / "small.txt", 100, seed=28)  # one PUT
    tls = {"AWS_CA_BUNDLE": server.ca_bundle}
    result = cephenv.run("upload", str(src), cephenv.uri(f"m/{mode}/"), "--json", extra_env=tls)
    assert result.returncode == 0, result.stderr
    assert "falling back" not in result.stderr and "411" not in result.stderr
    assert json.loads(result.stdout)["files_transferred"] == 2
    back = tmp_path / "back"
    cephenv.run("download", cephenv.uri(f"m/{mode}/"), str(back), "-q", check=True, extra_env=tls)
    for name in ("big.bin", "small.txt"):
        assert (back / name).read_bytes() == (src / name).read_bytes()
