"""Issue 22, fourth pass: the upload's hashing overlaps its start and its sending.

* The whole-file SHA-256 is computed on one thread from the moment the sources are known (jobsub.prehash,
  started by the CLI and the API before the S3 client exists, and by the uploader before its bucket check);
  the upload takes it only for the file identity it stats itself.
* Each part's check (MD5 on moto, a signed SHA-256 on Ceph) is made by its part worker just before the part
  is sent, so CreateMultipartUpload no longer waits on a pass over the file.
* A local-store upload copies in the kernel while the early hash reads the source; the object's SHA-256 is
  the source's, sound because the source's identity is the same before that hash and after the copy.

Hostile cases beside each: a source rewritten after its early hash, a source rewritten during a local copy,
an early hash stopped half-way. Real stores only (moto in server mode, the local store); the one
instrumented method (LocalStore.stage_file) only times the rewrite to land mid-copy, the copy stays real.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from jobsub import prehash
from tests.conftest import Env, _isolated_env, write_random

MiB = 1 << 20


@pytest.fixture(params=["local", "moto"])
def upenv(request, tmp_path: Path, monkeypatch) -> Env:
    if request.param == "local":
        return _isolated_env(tmp_path, monkeypatch, "local", None)
    return _isolated_env(tmp_path, monkeypatch, "s3", request.getfixturevalue("moto_server"))


@pytest.fixture
def motoenv(tmp_path: Path, monkeypatch, request) -> Env:
    return _isolated_env(tmp_path, monkeypatch, "s3", request.getfixturevalue("moto_server"))


def _count_whole_reads(monkeypatch) -> list[Path]:
    """The uploader's own whole-file SHA-256 reads (the early hash's thread is not one of them)."""
    from jobsub.transfer import checksums

    reads: list[Path] = []
    real = checksums.file_digest

    def counted(path, *args, **kwargs):
        reads.append(Path(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(checksums, "file_digest", counted)
    return reads


def _stored(env: Env, uri: str, tmp_path: Path) -> tuple[bytes, str]:
    """The object's bytes (downloaded by the CLI) and the SHA-256 in its metadata."""
    out = tmp_path / "back.bin"
    env.run("download", uri, str(out), "-q", check=True)
    key = uri.split("/", 3)[3]
    head = env.store().head(env.bucket, key)
    assert head is not None
    return out.read_bytes(), head.metadata["jobsub-sha256"]


def test_the_early_hash_is_what_the_upload_stores(upenv: Env, tmp_path: Path, monkeypatch) -> None:
    """Through the API (which starts the early hash before its store is opened): the upload reads the file
    for no SHA-256 of its own, and the object holds the file's bytes under the file's SHA-256."""
    from jobsub.api import Client

    data = write_random(tmp_path / "ckpt.bin", 20 * MiB, seed=41)
    reads = _count_whole_reads(monkeypatch)
    summary = Client().upload(data, upenv.uri("ckpt.bin"))
    assert not summary.failures and summary.files_transferred == 1
    assert reads == []  # the SHA-256 came from the early hash
    body, sha = _stored(upenv, upenv.uri("ckpt.bin"), tmp_path)
    assert body == data.read_bytes() and sha == hashlib.sha256(body).hexdigest()


def test_a_source_rewritten_after_its_early_hash_is_hashed_again(upenv: Env, tmp_path: Path, monkeypatch) -> None:
    """Hostile: the early hash finished, then the file was rewritten in place (same size): its value belongs
    to another identity and is not used; the object holds the new bytes under their own SHA-256."""
    from jobsub.api import Client

    data = write_random(tmp_path / "ckpt.bin", 20 * MiB, seed=42)
    prehash.start([data])
    assert prehash.wait(timeout=30)
    with open(data, "r+b") as fh:  # same size, new bytes in the middle
        fh.seek(9 * MiB)
        fh.write(os.urandom(MiB))
    reads = _count_whole_reads(monkeypatch)
    summary = Client().upload(data, upenv.uri("ckpt.bin"))
    assert not summary.failures
    body, sha = _stored(upenv, upenv.uri("ckpt.bin"), tmp_path)
    assert body == data.read_bytes() and sha == hashlib.sha256(body).hexdigest()
    if upenv.kind != "local":
        assert reads == [data.resolve()]  # hashed again by the uploader, from the new bytes


def test_a_local_source_rewritten_during_the_copy_is_never_stored(tmp_path: Path, monkeypatch) -> None:
    """Hostile (local store): the source is rewritten, same size, while the kernel copies it and the early
    hash reads it. The upload fails "source changed during upload", nothing is stored, no staged copy is
    left behind, and a rerun stores the new bytes under their own SHA-256."""
    from jobsub.api import Client
    from jobsub.storage.local import LocalStore

    env = _isolated_env(tmp_path, monkeypatch, "local", None)
    data = write_random(tmp_path / "ckpt.bin", 32 * MiB, seed=43)
    real = LocalStore.stage_file
    seen: list[bool] = []

    def rewrite_mid_copy(self, fd, size, progress=None, hash_copy=True):
        seen.append(hash_copy)
        done = {"n": 0}

        def mid(n: int) -> None:
            done["n"] += n
            if done["n"] >= 8 * MiB and not getattr(mid, "fired", False):
                mid.fired = True  # type: ignore[attr-defined]
                with open(data, "r+b") as fh:
                    fh.seek(20 * MiB)
                    fh.write(os.urandom(MiB))
            if progress:
                progress(n)

        return real(self, fd, size, mid, hash_copy)

    monkeypatch.setattr(LocalStore, "stage_file", rewrite_mid_copy)
    summary = Client().upload(data, env.uri("ckpt.bin"))
    assert seen == [False]  # the early path: the copy was the kernel's alone
    assert len(summary.failures) == 1 and "source changed during upload" in summary.failures[0]
    store = env.store()
    assert store.head(env.bucket, "ckpt.bin") is None
    staged = [p for p in env.root.rglob("*") if p.is_file() and p.stat().st_size == 32 * MiB and p != data]
    assert staged == []
    monkeypatch.setattr(LocalStore, "stage_file", real)
    summary = Client().upload(data, env.uri("ckpt.bin"))
    assert not summary.failures
    body, sha = _stored(env, env.uri("ckpt.bin"), tmp_path)
    assert body == data.read_bytes() and sha == hashlib.sha256(body).hexdigest()


def test_no_part_check_is_made_before_the_upload_is_created(motoenv: Env, tmp_path: Path, monkeypatch) -> None:
    """The part checks ride with the part workers: CreateMultipartUpload is the first thing after the plan,
    every part still goes with its MD5 (moto verifies no signed payload) and the ETags match them."""
    from jobsub.api import Client
    from jobsub.storage.checksums import Checksum
    from jobsub.storage.s3 import S3Store

    order: list[str] = []
    real_range = Checksum.of_range.__func__  # type: ignore[attr-defined]
    real_create = S3Store.create_multipart

    def counted_range(cls, algorithm, *args, **kwargs):
        order.append(f"part:{algorithm}")
        return real_range(cls, algorithm, *args, **kwargs)

    def create(self, *args, **kwargs):
        order.append("create")
        return real_create(self, *args, **kwargs)

    monkeypatch.setattr(Checksum, "of_range", classmethod(counted_range))
    monkeypatch.setattr(S3Store, "create_multipart", create)
    data = write_random(tmp_path / "ckpt.bin", 20 * MiB, seed=44)
    summary = Client().upload(data, motoenv.uri("ckpt.bin"))
    assert not summary.failures
    assert order == ["create", "part:md5", "part:md5", "part:md5"]
    assert summary.verification_counts() == {"md5": 1}
    body, sha = _stored(motoenv, motoenv.uri("ckpt.bin"), tmp_path)
    assert body == data.read_bytes() and sha == hashlib.sha256(body).hexdigest()


def test_a_stopped_early_hash_gives_no_value_and_the_upload_still_verifies(
    motoenv: Env, tmp_path: Path, monkeypatch
) -> None:
    """Ctrl-C (or a cancelled transfer) stops the early hash: its thread ends, it hands out nothing, and a
    later upload of the same file hashes it itself."""
    from jobsub.api import Client

    data = write_random(tmp_path / "ckpt.bin", 64 * MiB, seed=45)
    prehash.start([data])
    prehash.stop()
    assert prehash.wait(timeout=30)
    assert prehash.take(data.resolve(), data.stat()) is None
    reads = _count_whole_reads(monkeypatch)
    monkeypatch.setattr(prehash, "start", lambda sources: None)  # this upload gets no early hash at all
    summary = Client().upload(data, motoenv.uri("ckpt.bin"))
    assert not summary.failures and reads == [data.resolve()]
    body, sha = _stored(motoenv, motoenv.uri("ckpt.bin"), tmp_path)
    assert body == data.read_bytes() and sha == hashlib.sha256(body).hexdigest()


def test_the_early_hash_module_imports_no_botocore_or_pydantic() -> None:
    """The CLI starts it before the S3 client is built: importing it must not pull those in."""
    import subprocess
    import sys

    heavy = "('botocore', 'pydantic', 'jobsub.config', 'jobsub.transfer')"
    code = f"import sys, jobsub.prehash; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("argv", "hashed"),
    [
        (["{bin}/jobsub", "--profile", "p", "upload", "{src}", "s3://b/k", "-j", "4", "-q"], True),
        (["{pkg}/jobsub/__main__.py", "upload", "--part-size", "8MiB", "{src}", "s3://b/"], True),
        (["{bin}/jobsub", "upload", "{src}", "s3://b/k", "--dry-run"], False),  # a dry run sends nothing
        (["{bin}/jobsub", "download", "s3://b/k", "{src}"], False),  # the file is a destination
        (["{bin}/pytest", "upload", "{src}", "s3://b/k"], False),  # a caller of jobsub.cli, not the program
        (["{bin}/jobsub", "upload", "{src}"], False),  # no DEST: click will say so
    ],
)
def test_the_command_line_starts_the_early_hash_only_for_an_upload(tmp_path: Path, argv, hashed: bool) -> None:
    """jobsub.cli's first import hands the command line to the early hash, before the CLI's own imports:
    only `jobsub upload SOURCES... DEST` (not a dry run, not another program importing jobsub.cli) hashes."""
    src = write_random(tmp_path / "src.bin", 3 * MiB, seed=46).resolve()
    words = [w.format(bin=tmp_path / "venv" / "bin", pkg=tmp_path, src=src) for w in argv]
    prehash.start_from_argv(words)
    assert prehash.wait(timeout=30)
    value = prehash.take(src, src.stat())
    assert value == (hashlib.sha256(src.read_bytes()).hexdigest() if hashed else None)
