"""The upload's one hash pass on several threads, and the requests sent while it runs (issue 22, fifth pass).

The whole-file SHA-256 (the object's metadata) and the part checks come from ONE read of the file: each chunk
read once feeds the SHA-256 and its part's hasher, the parts dealt to two threads. Meanwhile the bucket
check, the signed-payload probe, HEAD and ListMultipartUploads are in flight; each must still guard what it
did when it ran first. Real moto server on loopback (the fault proxy for a refused probe); the only stand-ins
are hooks that pick the moment a file is rewritten or a request is answered, so the race is not left to luck.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import Env, _isolated_env, write_random
from tests.faultproxy import FaultProxy, Rule

MiB = 1 << 20
KiB = 1 << 10


@pytest.fixture
def motoenv(moto_server, tmp_path: Path, monkeypatch) -> Env:
    """A moto user that this test process is too (in-process uploads, forged probe records)."""
    monkeypatch.setenv("JOBSUB_RETRY_BACKOFF", "0")
    env = _isolated_env(tmp_path, monkeypatch, "s3", moto_server)
    env.vars["JOBSUB_RETRY_BACKOFF"] = "0"
    return env


# -- the pass itself: the same values as a serial read ------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["md5", "sha256-signed", "crc32"])
@pytest.mark.parametrize(
    ("size", "part_size"),
    [
        (0, 5 * MiB),  # 0 bytes: one empty part
        (1, 5 * MiB),  # one byte, one part
        (5 * MiB, 5 * MiB),  # exactly one part
        (3 * MiB - 1, 5 * MiB),  # one part shorter than the part size, odd
        (7 * MiB + 12345, 2 * MiB + 512 * KiB),  # parts of 2.5 chunks, a last short part
        (3 * 700 * KiB + 1, 700 * KiB),  # parts under one chunk, a 1-byte last part
    ],
)
def test_the_parallel_pass_gives_what_a_serial_read_gives(
    tmp_path: Path, monkeypatch, algorithm: str, size: int, part_size: int
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    from jobsub.storage.checksums import Checksum
    from jobsub.transfer.checksums import sha256_and_parts
    from jobsub.transfer.planning import part_ranges

    path = write_random(tmp_path / "f.bin", size, seed=size % 997)
    data = path.read_bytes()
    ranges = part_ranges(size, part_size)
    expected = {n: Checksum.of_bytes(algorithm, data[o : o + length]) for n, o, length in ranges}
    for workers in (1, 2, 3):
        sha, parts = sha256_and_parts(path, path.stat(), algorithm, ranges, workers=workers)
        assert sha == hashlib.sha256(data).hexdigest()
        assert parts == expected, f"{workers} workers"


def test_a_stopped_pass_ends_at_once_and_remembers_nothing(tmp_path: Path, monkeypatch) -> None:
    """A pass whose requests failed stops within a chunk: its half-made SHA-256 is never kept in the cache."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    from jobsub.transfer import checksums
    from jobsub.transfer.common import Cancelled
    from jobsub.transfer.planning import part_ranges

    monkeypatch.setattr(checksums, "RACY_SECONDS", 0.0)  # a file this fresh may be cached in this test
    path = write_random(tmp_path / "f.bin", 24 * MiB, seed=3)
    stat = path.stat()
    ranges = part_ranges(stat.st_size, 5 * MiB)
    asked: list[int] = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 3

    with pytest.raises(Cancelled):
        checksums.sha256_and_parts(path, stat, "md5", ranges, stop=stop)
    assert len(asked) == 4
    assert checksums.lookup_sha256(path, stat) is None
    sha, _ = checksums.sha256_and_parts(path, stat, "md5", ranges)  # a whole pass is remembered
    assert checksums.lookup_sha256(path, stat) == sha == hashlib.sha256(path.read_bytes()).hexdigest()


# -- a file rewritten while it is read --------------------------------------------------------------------------
def _rewrite_during_the_pass(monkeypatch, path: Path, how: str, after_chunks: int) -> dict[str, object]:
    """Change byte 100 of ``path`` once the pass has read ``after_chunks`` chunks (part 1 is read by then):
    "mmap" writes through a shared map to a page dirtied before the upload (no timestamp changes), "write"
    is a plain pwrite (mtime and ctime change)."""
    from jobsub.transfer.upload import Uploader

    fd = os.open(path, os.O_RDWR)
    mapped = mmap.mmap(fd, 0)
    mapped[100] ^= 0x01  # dirty the page now, so the write during the pass changes no timestamp
    seen = {"chunks": 0, "done": False, "stat": None}
    real = Uploader._guard_failed

    def counted(self: Uploader) -> bool:
        seen["chunks"] = int(seen["chunks"]) + 1  # type: ignore[call-overload]
        if seen["chunks"] == after_chunks and not seen["done"]:
            seen["stat"] = os.stat(path)
            if how == "mmap":
                mapped[100] ^= 0xFF
            else:
                os.pwrite(fd, bytes([mapped[100] ^ 0xFF]), 100)
            seen["done"] = True
        return real(self)

    monkeypatch.setattr(Uploader, "_guard_failed", counted)
    return seen


@pytest.mark.parametrize("how", ["mmap", "write"])
def test_a_file_rewritten_during_the_pass_fails_and_no_object_claims_either_sha256(
    motoenv: Env, tmp_path: Path, monkeypatch, how: str
) -> None:
    """Hostile: byte 100 (part 1, already read and hashed) changes while the pass reads part 2. Through a
    shared mmap no timestamp moves, so only the part check ties the bytes sent to the SHA-256 in the metadata:
    part 1's MD5 (from the pass) no longer matches what is sent, and the upload fails. A plain write is caught
    by the same check or by the stat ("source changed"). Either way no object claims the old or new SHA-256."""
    from jobsub.transfer import TransferManager
    from jobsub.uri import ObjectURI

    src = write_random(tmp_path / "f.bin", 12 * MiB, seed=61)  # parts of 5, 5 and 2 MiB
    old_sha = hashlib.sha256(src.read_bytes()).hexdigest()
    seen = _rewrite_during_the_pass(monkeypatch, src, how, after_chunks=7)
    dest = ObjectURI.parse(motoenv.uri("r/f.bin"))
    summary = TransferManager(motoenv.store()).upload([src], dest, None)
    assert seen["done"], "the file was not rewritten during the pass"
    new_sha = hashlib.sha256(src.read_bytes()).hexdigest()
    assert new_sha != old_sha
    (line,) = summary.failures
    unchanged = seen["stat"] is not None and os.stat(src).st_mtime_ns == seen["stat"].st_mtime_ns  # type: ignore[attr-defined]
    if how == "mmap" and unchanged:
        assert "part 1" in line and "not its MD5" in line, line
    else:  # the stat moved: whichever check comes first (part 1's MD5 as it is sent, or the stat after)
        assert "source changed during upload" in line or ("part 1" in line and "not its MD5" in line), line
    assert "Traceback" not in line
    client = motoenv.boto()
    assert client.list_objects_v2(Bucket=motoenv.bucket, Prefix="r/").get("KeyCount", 0) == 0
    for key in client.list_objects_v2(Bucket=motoenv.bucket).get("Contents", []):
        meta = client.head_object(Bucket=motoenv.bucket, Key=key["Key"])["Metadata"]
        assert meta.get("jobsub-sha256") not in (old_sha, new_sha)


# -- requests in flight during the pass still guard what they did ---------------------------------------------
def _orphan(env: Env, src: Path, key: str, parts: dict[int, bytes]) -> str:
    """A pending multipart upload of ``key`` made by another process (no journal here), with these parts."""
    client = env.boto(request_checksum_calculation="when_required")
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    upload_id = client.create_multipart_upload(Bucket=env.bucket, Key=key, Metadata={"jobsub-sha256": sha})["UploadId"]
    for number, body in parts.items():
        client.upload_part(Bucket=env.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body)
    return upload_id


@pytest.mark.parametrize("foreign", [False, True], ids=["ours", "foreign-part"])
def test_an_orphan_found_while_the_file_is_hashed_is_adopted_only_if_its_parts_hold_our_bytes(
    motoenv: Env, tmp_path: Path, foreign: bool
) -> None:
    """ListMultipartUploads goes out during the pass; the pending upload it finds is still re-read part by
    part: adopted (its two parts reused) when they hold our bytes, else left alone and the file sent whole."""
    env = motoenv
    src = write_random(tmp_path / "f.bin", 12 * MiB, seed=62)
    data = src.read_bytes()
    second = bytes(5 * MiB) if foreign else data[5 * MiB : 10 * MiB]
    _orphan(env, src, "o/f.bin", {1: data[: 5 * MiB], 2: second})
    summary = env.run_json("upload", str(src), env.uri("o/f.bin"), "--part-size", "5MiB")
    if foreign:
        assert summary["parts_reused"] == 0 and summary["parts_sent"] == 3
    else:
        assert summary["parts_reused"] == 2 and summary["parts_sent"] == 1 and summary["files_resumed"] == 1
    assert env.boto().get_object(Bucket=env.bucket, Key="o/f.bin")["Body"].read() == data


def test_a_refused_probe_makes_the_pass_again_with_md5_and_a_corrupted_part_is_caught(
    motoenv: Env, tmp_path: Path
) -> None:
    """Hostile: a record says the endpoint verifies signed payloads, so the pass starts with part SHA-256s;
    the probe, sent meanwhile, is refused (403). An unknown answer keeps MD5: the pass is made again (one
    read for the SHA-256 and the MD5s), a part corrupted on the way is caught by its ETag and sent again, and
    the record is left as it was (an unknown answer is never written down)."""
    from jobsub.transfer.probes import load_answer, probe_path

    env = motoenv
    rules = [Rule("PUT", r"\.jobsub/probe/", "403"), Rule("PUT", r"[?&]partNumber=2(&|$)", "corrupt", {1})]
    proxy = FaultProxy(env.endpoint or "", rules)
    via = {"JOBSUB_ENDPOINT_URL": proxy.url}
    try:
        record = probe_path(proxy.url)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"endpoint": proxy.url, "verifies_signed_payload": True, "checked": time.time()}))
        record.chmod(0o600)
        src = write_random(tmp_path / "f.bin", 12 * MiB, seed=63)
        args = ["upload", str(src), env.uri("p/f.bin"), "--part-size", "5MiB", "--json"]
        summary = json.loads(env.run(*args, check=True, extra_env=via).stdout)
    finally:
        proxy.close()
    assert rules[0].hits >= 1, "the probe was not refused"
    assert [r for r in proxy.responses if r[3] == "corrupt"], "the corruption was not injected"
    assert set(summary["verified_by"].values()) == {"md5"}
    assert load_answer(proxy.url) is True  # untouched: the refused probe wrote nothing
    assert env.boto().get_object(Bucket=env.bucket, Key="p/f.bin")["Body"].read() == src.read_bytes()


def test_a_missing_bucket_stops_the_pass_and_is_the_error(motoenv: Env, tmp_path: Path, monkeypatch) -> None:
    """The bucket check answers while the file is read: the pass stops at its next chunk, and the error is
    the bucket's (one line), not a file failure or an interruption."""
    from jobsub.errors import BucketNotFoundError
    from jobsub.storage.s3 import S3Store
    from jobsub.transfer import TransferManager
    from jobsub.transfer.probes import save_answer
    from jobsub.transfer.upload import Uploader
    from jobsub.uri import ObjectURI

    src = write_random(tmp_path / "f.bin", 64 * MiB, seed=64)
    store = motoenv.store()
    save_answer(store.description, False)  # an answer on record: the pass starts before the probe answers
    started = threading.Event()
    chunks = []
    real_stop, real_check = Uploader._guard_failed, S3Store.check_bucket

    def stop(self: Uploader) -> bool:
        chunks.append(1)
        started.set()
        return real_stop(self)

    def check(self: S3Store, bucket: str) -> None:
        assert started.wait(30), "the pass did not start"
        real_check(self, bucket)

    monkeypatch.setattr(Uploader, "_guard_failed", stop)
    monkeypatch.setattr(S3Store, "check_bucket", check)
    dest = ObjectURI.parse("s3://no-such-bucket-here/f.bin")
    with pytest.raises(BucketNotFoundError, match="does not exist"):
        TransferManager(store).upload([src], dest, None)
    assert len(chunks) < 64, "the pass read the whole file after the bucket check failed"


def test_a_first_upload_to_an_endpoint_reads_the_file_once(motoenv: Env, tmp_path: Path, monkeypatch) -> None:
    """With no answer on record, the pass waits for the probe instead of guessing: the file is read once,
    with the check the server settles (MD5 on moto), never once for a guess and again for the answer."""
    from jobsub.transfer import TransferManager, probes, upload
    from jobsub.transfer.probes import load_answer
    from jobsub.uri import ObjectURI

    monkeypatch.setattr(probes, "_asked", {})  # a new process: the shared moto was asked by earlier tests
    store = motoenv.store()
    assert load_answer(store.description) is None
    calls: list[str] = []
    real = upload.sha256_and_parts

    def counted(path, stat, algorithm, ranges, *args, **kwargs):
        calls.append(algorithm)
        return real(path, stat, algorithm, ranges, *args, **kwargs)

    monkeypatch.setattr(upload, "sha256_and_parts", counted)
    src = write_random(tmp_path / "f.bin", 12 * MiB, seed=67)
    summary = TransferManager(store).upload([src], ObjectURI.parse(motoenv.uri("once/f.bin")), None)
    assert not summary.failures and calls == ["md5"]
    assert load_answer(store.description) is False  # and the answer is on record for the next one


def test_a_question_this_process_got_no_answer_to_is_not_replaced_by_an_old_record(monkeypatch) -> None:
    """The probe was refused in this process (None: MD5 for this run): the next file's pass must guess MD5 too,
    not the written-down "verifies" of an earlier run, or every later file would be read twice."""
    from jobsub.transfer import probes

    monkeypatch.setattr(probes, "_asked", {"http://ep": None})
    assert probes.asked_in_this_process("http://ep", lambda _: True) is None
    assert probes.asked_in_this_process("http://other", lambda _: True) is True
