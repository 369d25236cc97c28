"""Issue 22, fifth pass: a download fetches the bulk of an object in ranges of up to 64 MiB (fewer GetObjects)
and the last wave in 8 MiB ranges; the in-order SHA-256 follows each range's written prefix (hashing a chunk at
the hash position straight from the receive buffer); a retry continues where a range's bytes end; the journal
(format 2) records the written prefix of ranges in flight.

What a user would notice if this broke: a downloaded file that is not the object's exact bytes; a body cut
short that ends as a file in place or starts its range over; a rerun after kill -9 that fetches again bytes it
already has (or trusts a journal an older jobsub wrote); a server that ignores the Range header and overwrites
other ranges of the file; a hash that covered bytes before they were written (a file that passes its check
but is not what was hashed).

Real components: real files, moto in server mode, the local store, a real child process for the kill -9, and
for what neither moto nor Ceph does on demand (a body cut short, a slow body, a server that ignores Range) the
keep-alive stand-in of tests/fake_ranged_s3.py on loopback. Nothing is mocked.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from jobsub.storage.s3 import S3Store
from jobsub.transfer.common import TransferOptions
from jobsub.transfer.download import PARTIAL_SUFFIX, Downloader
from jobsub.transfer.events import EventHub
from jobsub.transfer.inorder import InOrderHasher
from jobsub.transfer.journal import DownloadJournal
from jobsub.transfer.planning import DOWNLOAD_MAX_RANGE, DOWNLOAD_TAIL_RANGE, plan_download_ranges
from jobsub.uri import ObjectURI
from tests.conftest import Env, poll, write_random
from tests.fake_ranged_s3 import RangedObject, serving

MiB = 1 << 20


def _download(store, dest: Path, uri: str, **options) -> object:
    downloader = Downloader(store, TransferOptions(retry_backoff=0, **options), EventHub(), threading.Event())
    return downloader.run(downloader.plan(ObjectURI.parse(uri), dest))


# -- the layout ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [1, 3 * MiB, 64 * MiB + 1, 100 * MiB + 7, 256 * MiB, 1024 * MiB, 9 * 1024 * MiB + 5])
@pytest.mark.parametrize("workers", [1, 2, 8])
def test_the_ranges_cover_the_object_once_with_a_tail_of_small_ranges(size: int, workers: int) -> None:
    bulk, tail, ranges = plan_download_ranges(size, workers)
    assert [n for n, _, _ in ranges] == list(range(1, len(ranges) + 1))
    assert ranges[0][1] == 0 and sum(length for _, _, length in ranges) == size
    assert all(a[1] + a[2] == b[1] for a, b in itertools.pairwise(ranges))
    assert all(0 < length <= DOWNLOAD_MAX_RANGE for _, _, length in ranges)
    assert all(length <= DOWNLOAD_TAIL_RANGE for _, _, length in ranges[-workers:])  # streams end together
    assert plan_download_ranges(size, workers) == (bulk, tail, ranges)  # a rerun recomputes the same ranges


def test_a_gib_is_fetched_in_far_fewer_requests_and_a_requested_part_size_is_kept() -> None:
    assert len(plan_download_ranges(1024 * MiB, 8)[2]) == 23  # was 128 GetObjects at 8 MiB
    assert len(plan_download_ranges(256 * MiB, 8)[2]) == 16  # was 32
    _, _, ranges = plan_download_ranges(23 * MiB, 8, 5 * MiB)
    assert [length for _, _, length in ranges] == [5 * MiB] * 4 + [3 * MiB]


# -- the hash follows what is written, and only that -----------------------------------------------------------
def test_the_hash_never_covers_bytes_not_yet_written(tmp_path: Path) -> None:
    """The file holds garbage until each piece is written; pieces land out of order in three interleaved
    streams, each reported only after its write, some with the buffer (hashed from it), some without: a hasher
    that read one byte ahead of what was reported would hash garbage and the digest would differ."""
    data = os.urandom(20 * MiB + 333)
    ranges = plan_download_ranges(len(data), 3)[2]
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(len(data)))  # garbage where nothing was written yet
    fd = os.open(path, os.O_RDWR)
    rng = random.Random(5)
    try:
        hasher = InOrderHasher(fd, ranges)
        pending = {n: (off, length, 0) for n, off, length in ranges}
        while pending:
            n = rng.choice(sorted(pending)[:3])  # three streams in flight, the lowest parts first
            off, length, have = pending[n]
            piece = min(rng.choice([4096, 100_000, MiB]), length - have)
            chunk = data[off + have : off + have + piece]
            os.pwrite(fd, chunk, off + have)
            have += piece
            hasher.wrote(n, have, memoryview(chunk) if rng.random() < 0.5 else None)
            if have == length:
                del pending[n]
                hasher.completed(n)
            else:
                pending[n] = (off, length, have)
        assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()
    finally:
        os.close(fd)


def test_a_part_reported_short_is_never_hashed_past_what_was_reported(tmp_path: Path) -> None:
    """A part whose stream stopped (a failed range): the digest is None, never a guess over unwritten bytes."""
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(4 * MiB))
    fd = os.open(path, os.O_RDWR)
    try:
        hasher = InOrderHasher(fd, [(1, 0, 2 * MiB), (2, 2 * MiB, 2 * MiB)])
        hasher.completed(2)
        hasher.wrote(1, MiB)
        assert hasher.hexdigest() is None
    finally:
        os.close(fd)


# -- whole downloads, byte-exact ----------------------------------------------------------------------------
@pytest.fixture
def moto_env(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    """moto only (the session's server): what is tested here does not depend on the server."""
    from tests.conftest import _isolated_env, _server

    return _isolated_env(tmp_path, monkeypatch, "s3", _server(request, "moto"))


def test_moto_download_with_the_default_ranges_is_byte_exact(moto_env: Env, tmp_path: Path) -> None:
    """Bulk ranges of 12 MiB and a tail of 8 MiB ones (two workers), an uneven end, verified by SHA-256."""
    src = write_random(tmp_path / "src.bin", 41 * MiB + 9, seed=51)
    moto_env.run("upload", str(src), moto_env.uri("r/f.bin"), "-q", check=True)
    dest = tmp_path / "out.bin"
    summary = _download(moto_env.store(), dest, moto_env.uri("r/f.bin"), concurrency=2)
    assert summary.failures == [] and list(summary.verified_by.values()) == ["sha256"]
    assert summary.parts_sent == len(plan_download_ranges(41 * MiB + 9, 2)[2])
    assert dest.read_bytes() == src.read_bytes()
    assert not list(tmp_path.glob("out.bin.*"))


def test_local_store_download_with_the_default_options_is_byte_exact(tmp_path: Path, monkeypatch) -> None:
    from tests.conftest import _isolated_env

    env = _isolated_env(tmp_path, monkeypatch, "local", None)
    src = write_random(tmp_path / "src.bin", 19 * MiB + 3, seed=52)
    env.run("upload", str(src), env.uri("f.bin"), "-q", check=True)
    dest = tmp_path / "out.bin"
    summary = _download(env.store(), dest, env.uri("f.bin"))
    assert summary.failures == [] and list(summary.verified_by.values()) == ["sha256"]
    assert dest.read_bytes() == src.read_bytes()


# -- the stand-in server: cut, slow, or ignoring Range ----------------------------------------------------------
class _Recording(RangedObject):
    """Records every GET's (first, last); cuts the first GET of the range at ``cut_at`` once; streams slowly
    while ``slow`` (so a kill lands mid-range); sends the whole object whatever the Range while ``whole``."""

    gets: ClassVar[list[tuple[int, int]]] = []
    cut_once = False
    slow = False
    whole = False
    replaced = False  # the object was overwritten after the HEAD: a GET with If-Match gets 412

    def _precondition_failed(self) -> bool:
        if not (type(self).replaced and self.headers.get("If-Match")):
            return False
        error = b"<Error><Code>PreconditionFailed</Code><Message>a pre-condition did not hold</Message></Error>"
        self.send_response(412)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(error)))
        self.end_headers()
        self.wfile.write(error)
        return True

    def should_cut(self, first: int) -> bool:
        cls = type(self)
        if cls.cut_once and first == cls.cut_at:
            cls.cut_once = False
            return True
        return False

    def do_GET(self) -> None:
        cls = type(self)
        first, last = (int(v) for v in self.headers["Range"].split("=")[1].split("-"))
        cls.gets.append((first, last))
        if self._precondition_failed():
            return
        if cls.whole:
            self._headers(200, len(cls.body), {})
            self.wfile.write(cls.body)
            return
        if not cls.slow:
            super().do_GET()
            return
        part = cls.body[first : last + 1]
        self._headers(206, len(part), {"Content-Range": f"bytes {first}-{last}/{len(cls.body)}"})
        try:
            for at in range(0, len(part), 256 * 1024):
                self.wfile.write(part[at : at + 256 * 1024])
                time.sleep(0.02)
        except OSError:
            self.close_connection = True


@pytest.fixture
def recording_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    _Recording.body = os.urandom(40 * MiB + 5)
    _Recording.gets = []
    _Recording.cut_once = _Recording.slow = _Recording.whole = _Recording.replaced = False
    _Recording.sha_meta = True
    with serving(_Recording, monkeypatch) as url:
        yield url
    _Recording.sha_meta = True


def _store(url: str) -> S3Store:
    return S3Store(endpoint_url=url, region="us-east-1", addressing_style="path", max_attempts=1)


def test_a_body_cut_short_is_continued_where_its_bytes_end(recording_server: str, tmp_path: Path) -> None:
    """The first range's body ends halfway once: the retry asks for the rest of that range only (bytes once
    written are never fetched or written again), and the file is the object's bytes."""
    _, _, ranges = plan_download_ranges(len(_Recording.body), 2)
    _, offset, length = ranges[0]
    _Recording.cut_at, _Recording.cut_once = offset, True
    dest = tmp_path / "cut.bin"
    summary = _download(_store(recording_server), dest, "s3://bucket/cut.bin", concurrency=2)
    assert summary.failures == []
    assert dest.read_bytes() == _Recording.body
    firsts = sorted(first for first, _ in _Recording.gets if offset <= first < offset + length)
    assert firsts == [offset, offset + length // 2]  # the second GET starts where the cut one's bytes ended
    assert sorted(_Recording.gets) == sorted(
        [(o, o + n - 1) for _, o, n in ranges] + [(offset + length // 2, offset + length - 1)]
    )


@pytest.mark.parametrize("sha_meta", [True, False], ids=["sha256", "size-only"])
def test_a_server_that_ignores_the_range_never_writes_outside_it(
    recording_server: str, tmp_path: Path, sha_meta: bool
) -> None:
    """A server answering every ranged GET with the whole object (200, no Content-Range): refused in one line
    before any of its bytes is written, with every retry (the default attempts), so no range is ever marked
    done with the object's first bytes; no file in place, even for an object checked by size only (where
    nothing at the end would catch wrong bytes)."""
    _Recording.whole, _Recording.sha_meta = True, sha_meta
    dest = tmp_path / "whole.bin"
    summary = _download(_store(recording_server), dest, "s3://bucket/whole.bin", concurrency=2)
    assert len(summary.failures) == 1
    assert "does not serve byte ranges" in summary.failures[0] and "\n" not in summary.failures[0]
    assert summary.failures[0].count("s3://bucket/whole.bin") == 2  # the label and the reason, not nested
    assert not dest.exists()


def test_an_object_replaced_during_the_download_is_refused_not_spliced(recording_server: str, tmp_path: Path) -> None:
    """Every ranged GET carries If-Match with the HEAD's ETag: an object overwritten after the HEAD answers 412,
    and the download fails in one line saying so, with nothing in place (a size-only object of the same size
    would otherwise be a silent mix of two versions)."""
    _Recording.replaced, _Recording.sha_meta = True, False
    dest = tmp_path / "replaced.bin"
    summary = _download(_store(recording_server), dest, "s3://bucket/replaced.bin", concurrency=2)
    assert len(summary.failures) == 1 and "changed on" in summary.failures[0]
    assert "run the command again" in summary.failures[0] and "\n" not in summary.failures[0]
    assert not dest.exists()


def test_a_short_write_is_completed_not_hashed_from_the_buffer(
    recording_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pwrite that writes less than asked (NFS, FUSE, a size limit; the kernel will not do it on demand here,
    so os.pwrite is wrapped to cut one call 4 KiB short: the one stand-in in this test): the rest is written
    before the chunk is reported to the hash, so a file that passes its SHA-256 holds every byte."""
    real_pwrite = os.pwrite
    cut = {"left": 1}

    def short_once(fd: int, data, offset: int) -> int:
        if cut["left"] and len(data) > 8192:
            cut["left"] = 0
            return real_pwrite(fd, memoryview(data)[: len(data) - 4096], offset)
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", short_once)
    dest = tmp_path / "short.bin"
    summary = _download(_store(recording_server), dest, "s3://bucket/short.bin", concurrency=2)
    assert cut["left"] == 0, "no write was cut: the test did not test anything"
    assert summary.failures == [] and list(summary.verified_by.values()) == ["sha256"]
    assert dest.read_bytes() == _Recording.body


def test_a_journal_made_at_another_concurrency_is_not_trusted(recording_server: str, tmp_path: Path) -> None:
    """-j 5 and -j 4 cut this object with the same bulk and tail sizes but put the ranges elsewhere: a journal
    of the -j 5 run naming two parts done must not be reused by a -j 4 rerun, even for an object checked by
    size only (where reused zeros would pass)."""
    _Recording.sha_meta = False
    size = len(_Recording.body)
    bulk5, tail5, ranges5 = plan_download_ranges(size, 5)
    bulk4, tail4, ranges4 = plan_download_ranges(size, 4)
    assert (bulk5, tail5) == (bulk4, tail4) and ranges5[:2] != ranges4[:2]  # the case the layout exists for
    dest = tmp_path / "j.bin"
    partial = dest.with_name(dest.name + PARTIAL_SUFFIX)
    partial.write_bytes(bytes(size))
    journal = DownloadJournal(
        "j.bin",
        "0123456789abcdef0123456789abcdef-3",
        size,
        bulk5,
        [1, 2],
        tail5,
        layout=DownloadJournal.layout_of(ranges5),
    )
    journal.save(DownloadJournal.path_for(partial))
    summary = _download(_store(recording_server), dest, "s3://bucket/j.bin", concurrency=4)
    assert summary.failures == [] and summary.parts_reused == 0
    assert dest.read_bytes() == _Recording.body


def test_the_journal_stays_small_for_any_number_of_parts() -> None:
    """Complete parts are one number plus the few above it: a 5 TiB download's journal near its end is as small
    as a 1 GiB one's, loads back with the same parts, and costs no more to save."""
    ranges = plan_download_ranges(5 << 40, 8)[2]
    journal = DownloadJournal(
        "k", "e", 5 << 40, ranges[0][2], tail_part=8 * MiB, layout=DownloadJournal.layout_of(ranges)
    )
    done = set(range(1, len(ranges) - 10)) | {len(ranges) - 5, len(ranges) - 2}
    journal.set_done(done)
    assert journal.done_through == len(ranges) - 11 and journal.done == [len(ranges) - 5, len(ranges) - 2]
    assert journal.done_parts() == done
    assert len(json.dumps(journal.__dict__)) < 1024


CHILD = """
import sys, threading
from jobsub.storage.s3 import S3Store
from jobsub.transfer.common import TransferOptions
from jobsub.transfer.download import Downloader
from jobsub.transfer.events import EventHub
from jobsub.uri import ObjectURI
store = S3Store(endpoint_url=sys.argv[1], region="us-east-1", addressing_style="path", max_attempts=1)
d = Downloader(store, TransferOptions(concurrency=2, retry_backoff=0), EventHub(), threading.Event())
d.run(d.plan(ObjectURI.parse("s3://bucket/k.bin"), sys.argv[2]))
"""


def test_kill_9_mid_range_then_the_rerun_fetches_only_the_unrecorded_bytes(
    recording_server: str, tmp_path: Path
) -> None:
    """A download in a child process, killed with kill -9 once the journal records a range's written prefix:
    nothing under the target name; the rerun asks for exactly the bytes the journal does not record (the
    rest of each recorded prefix's range, every range not done) and the file is the object's bytes."""
    _Recording.slow = True
    dest = tmp_path / "out" / "k.bin"
    dest.parent.mkdir()
    partial = dest.with_name(dest.name + PARTIAL_SUFFIX)
    journal_path = DownloadJournal.path_for(partial)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, recording_server, str(dest)], env=env)
    try:
        poll(
            lambda: (j := DownloadJournal.load(journal_path)) is not None and bool(j.written),
            60,
            what="a recorded prefix",
        )
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    _Recording.slow = False
    assert not dest.exists(), "a killed download must not leave a file under the target name"
    recorded = DownloadJournal.load(journal_path)
    assert recorded is not None and recorded.written
    _, _, ranges = plan_download_ranges(len(_Recording.body), 2)
    expected = sorted(
        (offset + recorded.written.get(n, 0), offset + length - 1)
        for n, offset, length in ranges
        if n not in recorded.done_parts()
    )
    _Recording.gets = []
    summary = _download(_store(recording_server), dest, "s3://bucket/k.bin", concurrency=2)
    assert summary.failures == [] and summary.parts_reused == len(recorded.done_parts())
    assert sorted(_Recording.gets) == expected
    assert dest.read_bytes() == _Recording.body
    assert not partial.exists() and not journal_path.exists()


@pytest.mark.parametrize("kind", ["old-format", "other-layout"])
def test_a_journal_of_another_format_or_layout_is_not_trusted(recording_server: str, tmp_path: Path, kind) -> None:
    """A journal an older jobsub wrote (no version) or one for other ranges, naming parts as done over a
    partial file of garbage: nothing of it is reused, every range is fetched, the file is the object's bytes."""
    size = len(_Recording.body)
    bulk, tail, ranges = plan_download_ranges(size, 2)
    dest = tmp_path / "j.bin"
    partial = dest.with_name(dest.name + PARTIAL_SUFFIX)
    partial.write_bytes(os.urandom(size))
    done = [n for n, _, _ in ranges[:3]]
    if kind == "old-format":
        record = {"key": "j.bin", "etag": "0123456789abcdef0123456789abcdef-3", "size": size, "part_size": bulk}
        DownloadJournal.path_for(partial).write_text(json.dumps({**record, "done": done}))
    else:
        other = plan_download_ranges(size, 3)[2]
        journal = DownloadJournal(
            "j.bin",
            "0123456789abcdef0123456789abcdef-3",
            size,
            bulk,
            done,
            tail * 2,
            layout=DownloadJournal.layout_of(other),
        )
        journal.save(DownloadJournal.path_for(partial))
    summary = _download(_store(recording_server), dest, "s3://bucket/j.bin", concurrency=2)
    assert summary.failures == [] and summary.parts_reused == 0
    assert sorted(_Recording.gets) == sorted((o, o + n - 1) for _, o, n in ranges)
    assert dest.read_bytes() == _Recording.body


def test_a_current_journal_is_trusted(recording_server: str, tmp_path: Path) -> None:
    """The control for the test above: the same journal in the current format and layout is reused."""
    size = len(_Recording.body)
    bulk, tail, ranges = plan_download_ranges(size, 2)
    dest = tmp_path / "j.bin"
    partial = dest.with_name(dest.name + PARTIAL_SUFFIX)
    _, offset, length = ranges[0]
    partial.write_bytes(_Recording.body[: offset + length] + os.urandom(size - offset - length))
    journal = DownloadJournal(
        "j.bin",
        "0123456789abcdef0123456789abcdef-3",
        size,
        bulk,
        [1],
        tail,
        {2: MiB},
        layout=DownloadJournal.layout_of(ranges),
    )
    partial_two = ranges[1]
    with open(partial, "r+b") as fh:  # part 2's first MiB is in the file, as the journal says
        fh.seek(partial_two[1])
        fh.write(_Recording.body[partial_two[1] : partial_two[1] + MiB])
    journal.save(DownloadJournal.path_for(partial))
    summary = _download(_store(recording_server), dest, "s3://bucket/j.bin", concurrency=2)
    assert summary.failures == [] and summary.parts_reused == 1
    assert (partial_two[1] + MiB, partial_two[1] + partial_two[2] - 1) in _Recording.gets
    assert all(first >= offset + length for first, _ in _Recording.gets)
    assert dest.read_bytes() == _Recording.body
