"""Issue 22, fourth pass: a download starts each hashed part's writeback at once (`sync_file_range`), so the
fsync before the rename is short; nothing about what the user gets may change.

What a user would notice if this broke: a downloaded file that is not the object's exact bytes; a body cut
short that ends as a file in place (or as a traceback); a download killed with kill -9 that leaves a file
under the target name looking complete; a rerun that fetches again parts it already has.

Real components: real files, moto in server mode, a real `jobsub download` process for the kill -9, and for
a body cut short (which neither moto nor Ceph does on demand) a tiny keep-alive HTTP server on loopback that
plays HeadObject and ranged GetObject of one object. The one substitution: a recorder stands in for the
writeback hint in the test that counts which ranges it was given (the kernel's writeback is not observable
per call from a test); every other test runs the real `sync_file_range`.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from jobsub.storage.s3 import S3Store
from jobsub.transfer import inorder
from jobsub.transfer.common import TransferOptions
from jobsub.transfer.download import PARTIAL_SUFFIX, Downloader
from jobsub.transfer.events import EventHub
from jobsub.transfer.inorder import InOrderHasher, start_writeback
from jobsub.transfer.journal import DownloadJournal
from jobsub.uri import ObjectURI
from tests.conftest import Env, poll, write_random
from tests.fake_ranged_s3 import RangedObject, serving

MiB = 1 << 20


def test_every_hashed_part_is_handed_to_the_writeback_once_after_it_is_hashed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parts land out of order; each range is handed to the writeback exactly once, in file order (after the
    hash has read it, never before), and the digest is still the whole file's."""
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(inorder, "start_writeback", lambda: lambda fd, offset, length: calls.append((offset, length)))
    data = os.urandom(5 * MiB + 77)
    ranges = [(n + 1, off, min(MiB, len(data) - off)) for n, off in enumerate(range(0, len(data), MiB))]
    path = tmp_path / "f.bin"
    path.write_bytes(b"\0" * len(data))
    fd = os.open(path, os.O_RDWR)
    try:
        hasher = InOrderHasher(fd, ranges)
        order = list(ranges)
        random.Random(3).shuffle(order)
        for n, off, length in order:
            os.pwrite(fd, data[off : off + length], off)
            hasher.completed(n)
        assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()
    finally:
        os.close(fd)
    assert calls == [(off, length) for _, off, length in ranges]


def test_the_real_hint_changes_no_byte_and_is_harmless_where_it_cannot_apply(tmp_path: Path) -> None:
    """The real sync_file_range: the file reads back the same after it, and on a pipe (ESPIPE) it is ignored."""
    start = start_writeback()
    if start is None:
        pytest.skip("sync_file_range is Linux only")
    data = os.urandom(3 * MiB)
    path = tmp_path / "f.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        os.pwrite(fd, data, 0)
        start(fd, 0, len(data))
        os.fsync(fd)
    finally:
        os.close(fd)
    assert path.read_bytes() == data
    read_end, write_end = os.pipe()
    try:
        start(write_end, 0, 10)  # the kernel refuses a pipe: a hint, so nothing is raised
    finally:
        os.close(read_end)
        os.close(write_end)


@pytest.fixture
def moto_env(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    """moto only (the session's server): what is tested here does not depend on the server."""
    from tests.conftest import _isolated_env, _server

    return _isolated_env(tmp_path, monkeypatch, "s3", _server(request, "moto"))


@pytest.mark.parametrize("hint", [True, False], ids=["writeback-hint", "no-hint"])
def test_a_download_is_byte_exact_with_and_without_the_hint(
    moto_env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hint: bool
) -> None:
    """Many parts, more than the workers, an uneven last one: the file is the object's bytes either way."""
    if not hint:
        monkeypatch.setattr(inorder, "start_writeback", lambda: None)
    src = write_random(tmp_path / "src.bin", 23 * MiB + 5, seed=41)
    moto_env.run("upload", str(src), moto_env.uri("x/f.bin"), "--part-size", "5MiB", "-q", check=True)
    dest = tmp_path / "out.bin"
    store = moto_env.store()
    assert isinstance(store, S3Store)
    downloader = Downloader(
        store, TransferOptions(part_size=5 * MiB, concurrency=3, retry_backoff=0), EventHub(), threading.Event()
    )
    summary = downloader.run(downloader.plan(ObjectURI.parse(moto_env.uri("x/f.bin")), dest))
    assert summary.failures == [] and list(summary.verified_by.values()) == ["sha256"]
    assert dest.read_bytes() == src.read_bytes()
    assert not list(tmp_path.glob("out.bin.*"))


def test_kill_9_mid_download_leaves_nothing_that_looks_complete_and_the_rerun_fetches_only_the_rest(
    moto_env: Env, tmp_path: Path
) -> None:
    """kill -9 once some parts are recorded: no file under the target name (only the `.jobsub-part` and its
    journal), and the rerun reuses exactly the recorded parts, fetches only the others, and is byte-exact."""
    src = write_random(tmp_path / "src.bin", 40 * MiB, seed=42)
    moto_env.run("upload", str(src), moto_env.uri("k/f.bin"), "--part-size", "5MiB", "-q", check=True)
    dest = tmp_path / "out" / "f.bin"
    dest.parent.mkdir()
    partial = dest.with_name(dest.name + PARTIAL_SUFFIX)
    journal_path = DownloadJournal.path_for(partial)
    args = ["download", moto_env.uri("k/f.bin"), str(dest), "--part-size", "5MiB", "-j", "2"]
    proc = moto_env.popen(*args, "--max-bandwidth", "8MiB", "-q", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        journal = poll(
            lambda: (j := DownloadJournal.load(journal_path)) is not None and len(j.done_parts()) >= 2 and j,
            60,
            what="two recorded parts",
        )
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert journal and len(journal.done_parts()) < 8, "the download finished before it could be killed"
    assert not dest.exists(), "a killed download must not leave a file under the target name"
    assert partial.is_file() and partial.stat().st_size == 40 * MiB  # preallocated: its size proves nothing
    recorded = DownloadJournal.load(journal_path)
    assert recorded is not None
    done = recorded.done_parts()
    summary = json.loads(moto_env.run(*args, "--json", "-q", check=True).stdout)
    assert summary["parts_reused"] == len(done)
    assert summary["parts_sent"] == 8 - len(done)
    assert dest.read_bytes() == src.read_bytes()
    assert not partial.exists() and not journal_path.exists()


class _CutEvery(RangedObject):
    """While ``cutting``, every GET of a range starting in the part at ``cut_at`` sends half its body and closes the
    connection (Content-Length promised more); every GET's first byte is kept in ``ranges``."""

    cutting = True
    ranges: ClassVar[list[int]] = []

    def should_cut(self, first: int) -> bool:
        cls = type(self)
        cls.ranges.append(first)
        return cls.cut_at <= first < cls.cut_at + 5 * MiB and cls.cutting  # a retry continues inside the part


@pytest.fixture
def cutting_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    _CutEvery.body = os.urandom(13 * MiB)
    _CutEvery.cut_at = 5 * MiB
    _CutEvery.cutting = True
    _CutEvery.ranges = []
    with serving(_CutEvery, monkeypatch) as url:
        yield url


def test_a_body_always_cut_short_fails_in_one_line_and_the_healed_rerun_fetches_only_that_part(
    cutting_server: str, tmp_path: Path
) -> None:
    """Part 2's body always ends early: the download gives up after its retries with one line naming the cut,
    puts no file in place, and keeps parts 1 and 3; once the server sends it whole, the rerun asks for part 2
    only and the file is the object's bytes."""
    store = S3Store(endpoint_url=cutting_server, region="us-east-1", addressing_style="path", max_attempts=1)
    dest = tmp_path / "cut.bin"
    options = TransferOptions(part_size=5 * MiB, concurrency=3, retry_backoff=0, part_attempts=2)
    downloader = Downloader(store, options, EventHub(), threading.Event())
    summary = downloader.run(downloader.plan(ObjectURI.parse("s3://bucket/cut.bin"), dest))
    assert len(summary.failures) == 1
    failure = summary.failures[0]
    assert "\n" not in failure and "bytes before the end" in failure and "Traceback" not in failure
    assert not dest.exists()
    assert sum(5 * MiB <= first < 10 * MiB for first in _CutEvery.ranges) >= 2  # retried before giving up

    _CutEvery.cutting = False
    _CutEvery.ranges = []
    downloader = Downloader(store, options, EventHub(), threading.Event())
    summary = downloader.run(downloader.plan(ObjectURI.parse("s3://bucket/cut.bin"), dest))
    assert summary.failures == [] and summary.parts_reused == 2
    assert _CutEvery.ranges == [5 * MiB]
    assert dest.read_bytes() == _CutEvery.body


# -- the local store: the kernel copies each part (copy_file_range), the SHA-256 still checks the result -------
@pytest.fixture
def local_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    from tests.conftest import _isolated_env

    return _isolated_env(tmp_path, monkeypatch, "local", None)


def _local_downloader(env: Env, **options: int) -> Downloader:
    return Downloader(
        env.store(), TransferOptions(part_size=5 * MiB, retry_backoff=0, **options), EventHub(), threading.Event()
    )


@pytest.mark.parametrize("kernel_copy", ["yes", "refused", "copies-nothing"])
def test_a_local_store_download_is_byte_exact_with_and_without_the_kernel_copy(
    local_env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel_copy: str
) -> None:
    """Where copy_file_range is refused (EXDEV: another filesystem on an older kernel) or copies nothing
    where bytes remain (some FUSE and network filesystems answer 0) the copy goes through the process; the
    file is the object's bytes either way, verified by its SHA-256. This machine produces neither, so the
    call is made to refuse or to answer 0 (a stand-in for the kernel, not a mock of jobsub)."""
    calls: list[int] = []
    if kernel_copy != "yes":

        def misbehave(*args: int) -> int:
            calls.append(1)
            if kernel_copy == "refused":
                raise OSError(18, "Invalid cross-device link")  # EXDEV
            return 0

        monkeypatch.setattr(os, "copy_file_range", misbehave)
    src = write_random(tmp_path / "src.bin", 17 * MiB + 3, seed=51)
    local_env.run("upload", str(src), local_env.uri("l/f.bin"), "-q", check=True)
    dest = tmp_path / "out.bin"
    downloader = _local_downloader(local_env, concurrency=2)
    summary = downloader.run(downloader.plan(ObjectURI.parse(local_env.uri("l/f.bin")), dest))
    assert summary.failures == [] and list(summary.verified_by.values()) == ["sha256"]
    assert dest.read_bytes() == src.read_bytes()
    if kernel_copy != "yes":
        assert len(calls) == 4  # tried once per part, then the fallback for the rest of that part


def test_a_local_object_cut_short_behind_jobsubs_back_is_never_put_in_place(local_env: Env, tmp_path: Path) -> None:
    """The stored file loses its tail after the plan: the copy comes up short, the download fails in one
    line, and nothing appears under the target name."""
    src = write_random(tmp_path / "src.bin", 12 * MiB, seed=52)
    local_env.run("upload", str(src), local_env.uri("l/g.bin"), "-q", check=True)
    stored = next(p for p in (local_env.root / "data").rglob("g.bin") if ".jobsub" not in p.parts)
    dest = tmp_path / "out.bin"
    downloader = _local_downloader(local_env, part_attempts=1)
    items = downloader.plan(ObjectURI.parse(local_env.uri("l/g.bin")), dest)
    os.truncate(stored, 7 * MiB)
    summary = downloader.run(items)
    assert len(summary.failures) == 1 and "\n" not in summary.failures[0]
    assert "short read of s3://" in summary.failures[0], summary.failures
    assert not dest.exists()
