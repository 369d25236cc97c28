"""The download's fast path (issue 22, third pass): a single object's download reuses the HEAD its plan just
made, and the in-order SHA-256 keeps holding for parts that land out of order or are sent twice.

What a user would notice if these broke: a file whose parts land out of order, a part cut mid-body and sent
again, or an object replaced under the download must still end as the object's exact bytes or as one clear
integrity failure with nothing left behind; and a download of one object asks the server one HEAD, not two.

Real components: a real file on disk, moto in server mode, and for a body cut mid-way (which neither moto
nor Ceph does on demand) a tiny keep-alive HTTP server on loopback that plays HeadObject and ranged
GetObject of one object (no stand-ins for jobsub's own code).
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobsub.api import Client
from jobsub.storage.s3 import S3Store
from jobsub.transfer.common import TransferOptions
from jobsub.transfer.download import PARTIAL_SUFFIX, Downloader
from jobsub.transfer.events import EventHub
from jobsub.transfer.inorder import InOrderHasher
from jobsub.uri import ObjectURI
from tests.conftest import Env
from tests.fake_ranged_s3 import RangedObject, serving

MiB = 1 << 20


def test_parts_written_out_of_order_hash_in_order(tmp_path: Path) -> None:
    """Parts land in any order (some already on disk from an earlier run); the digest is the whole file's."""
    data = os.urandom(6 * MiB + 123)
    ranges = [(n + 1, off, min(MiB, len(data) - off)) for n, off in enumerate(range(0, len(data), MiB))]
    path = tmp_path / "f.bin"
    path.write_bytes(b"\0" * len(data))
    fd = os.open(path, os.O_RDWR)
    try:
        resumed = {1, 4}  # on disk before this run
        for n, off, length in ranges:
            if n in resumed:
                os.pwrite(fd, data[off : off + length], off)
        hasher = InOrderHasher(fd, ranges, resumed)
        order = [r for r in ranges if r[0] not in resumed]
        random.Random(7).shuffle(order)
        for n, off, length in order:
            os.pwrite(fd, data[off : off + length], off)
            hasher.completed(n)
        assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()
    finally:
        os.close(fd)


def test_a_part_that_never_came_gives_no_digest(tmp_path: Path) -> None:
    """A download that failed part-way: the hasher stops at the gap instead of hashing bytes never written."""
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(3 * MiB))
    fd = os.open(path, os.O_RDWR)
    try:
        hasher = InOrderHasher(fd, [(1, 0, MiB), (2, MiB, MiB), (3, 2 * MiB, MiB)])
        hasher.completed(1)
        hasher.completed(3)
        assert hasher.hexdigest() is None
    finally:
        os.close(fd)


@pytest.fixture
def moto_env(s3env: Env) -> Env:
    if s3env.server is not None and s3env.server.name != "moto":
        pytest.skip("moto only: the behaviour does not depend on the server")
    return s3env


def _upload(env: Env, tmp_path: Path, name: str, size: int, seed: int) -> bytes:
    data = random.Random(seed).randbytes(size)
    src = tmp_path / f"src-{name.replace('/', '-')}-{seed}"
    src.write_bytes(data)
    Client().upload(src, env.uri(name), part_size=5 * MiB)
    return data


def test_one_object_costs_one_head_and_a_prefix_one_per_object(
    moto_env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan's HEAD of a single object stands in for the download's own; a listing has no metadata, so each
    listed object is still asked for its own."""
    one = _upload(moto_env, tmp_path, "p/one.bin", 6 * MiB, seed=2)
    two = _upload(moto_env, tmp_path, "p/two.bin", 1000, seed=3)
    heads: list[str] = []
    real = S3Store.head

    def counting(self: S3Store, bucket: str, key: str):  # type: ignore[no-untyped-def]
        heads.append(key)
        return real(self, bucket, key)

    monkeypatch.setattr(S3Store, "head", counting)
    Client().download(moto_env.uri("p/one.bin"), tmp_path / "single.bin")
    assert heads == ["p/one.bin"]
    assert (tmp_path / "single.bin").read_bytes() == one
    heads.clear()
    Client().download(moto_env.uri("p/"), tmp_path / "tree")
    assert sorted(heads) == ["p/one.bin", "p/two.bin"]
    assert (tmp_path / "tree" / "two.bin").read_bytes() == two


def _downloader(store: S3Store) -> Downloader:
    return Downloader(store, TransferOptions(part_size=5 * MiB, retry_backoff=0), EventHub(), threading.Event())


def test_an_object_replaced_after_its_plan_is_refused_whole_never_mixed(
    moto_env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The object is overwritten (same size, other bytes) between the plan's HEAD and the ranged reads: the
    ranged GETs carry the HEAD's ETag (If-Match), so the download ends in one failure saying the object
    changed, and leaves no file and no partial; planned again later, it is the new object's bytes."""
    _upload(moto_env, tmp_path, "swap.bin", 11 * MiB, seed=4)
    store = Client().store
    assert isinstance(store, S3Store)
    dest = tmp_path / "out.bin"
    downloader = _downloader(store)
    items = downloader.plan(ObjectURI.parse(moto_env.uri("swap.bin")), dest)
    new = _upload(moto_env, tmp_path, "swap.bin", 11 * MiB, seed=5)
    failures = downloader.run(items).failures
    assert len(failures) == 1 and "while it was read (its ETag no longer matches); run the" in failures[0]
    assert not dest.exists() and not dest.with_name(dest.name + PARTIAL_SUFFIX).exists()
    assert not list(tmp_path.glob("out.bin*"))

    monkeypatch.setattr("jobsub.transfer.download._HEAD_FRESH_S", 0.0)  # a plan too old to stand in
    old_plan = _downloader(store)
    items = old_plan.plan(ObjectURI.parse(moto_env.uri("swap.bin")), dest)
    _upload(moto_env, tmp_path, "swap.bin", 11 * MiB, seed=6)
    newest = random.Random(6).randbytes(11 * MiB)
    assert old_plan.run(items).failures == []
    assert dest.read_bytes() == newest != new


class _CutOnce(RangedObject):
    """The first GET of the second part is cut after half its body (the connection reset); every other
    request is answered whole."""

    cuts = 0
    gets = 0

    def should_cut(self, first: int) -> bool:
        cls = type(self)
        cls.gets += 1
        if first == cls.cut_at and cls.cuts == 0:
            cls.cuts += 1
            return True
        return False


@pytest.fixture
def cut_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    _CutOnce.body = os.urandom(13 * MiB)
    _CutOnce.cut_at = 5 * MiB
    _CutOnce.cuts = _CutOnce.gets = 0
    with serving(_CutOnce, monkeypatch) as url:
        yield url


def test_a_part_cut_mid_body_is_sent_again_and_the_file_is_the_objects(cut_server: str, tmp_path: Path) -> None:
    """Half of part 2 is written, then its connection is reset: the part is fetched again over the bytes
    already written, the in-order hash waits for it, and the file ends byte-exact and verified."""
    store = S3Store(endpoint_url=cut_server, region="us-east-1", addressing_style="path", max_attempts=1)
    dest = tmp_path / "cut.bin"
    downloader = _downloader(store)
    summary = downloader.run(downloader.plan(ObjectURI.parse("s3://bucket/cut.bin"), dest))
    assert _CutOnce.cuts == 1 and _CutOnce.gets == 4  # 3 parts, one of them twice
    assert dest.read_bytes() == _CutOnce.body
    assert summary.failures == [] and list(summary.verified_by.values()) == ["sha256"]
