"""One checksum path (issue 22 item 2): the profile names the algorithm once, the transfer options carry it,
and every store takes a Checksum object and refuses bytes that do not match it.

Local store only (no server): the S3 side of the same path runs in test_transfer_integrity.py.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from jobsub.config import Profile
from jobsub.errors import IntegrityError
from jobsub.storage.base import FileRange
from jobsub.storage.checksums import Checksum, profile_algorithm
from jobsub.storage.local import LocalStore
from jobsub.transfer import TransferManager, TransferOptions
from jobsub.uri import ObjectURI


@pytest.mark.parametrize(
    "profile, expected",
    [
        # auto elsewhere: a signed per-part SHA-256 where a probe shows the server verifies it, else MD5
        (Profile(storage="s3", endpoint_url="http://127.0.0.1:9000"), "sha256-signed-or-md5"),
        (Profile(storage="s3", endpoint_url="http://127.0.0.1:9000", checksum="md5"), "md5"),
        (Profile(storage="s3", endpoint_url="https://s3.eu-west-1.amazonaws.com"), "crc32"),
        (Profile(storage="s3"), "crc32"),
        (Profile(storage="s3", endpoint_url="http://127.0.0.1:9000", checksum="crc32c"), "crc32c"),
        (Profile(storage="local", checksum="sha256"), "md5"),  # parts named by MD5; uploads copy with SHA-256
    ],
)
def test_the_profile_resolves_the_algorithm_once(profile: Profile, expected: str, monkeypatch) -> None:
    monkeypatch.delenv("JOBSUB_ENDPOINT_URL", raising=False)
    assert profile_algorithm(profile) == expected


def test_the_manager_puts_the_algorithm_in_the_options(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    assert TransferManager(store).options.checksum == "md5"
    assert TransferManager(store, TransferOptions(checksum="crc32")).options.checksum == "crc32"


@pytest.mark.parametrize("algorithm", ["md5", "crc32", "sha256"])
def test_the_local_store_refuses_bytes_that_do_not_match_their_checksum(tmp_path: Path, algorithm: str) -> None:
    """What a verifying server does with a wrong Content-MD5 (BadDigest), the folder store does for any algorithm."""
    store = LocalStore(tmp_path / "store")
    good = Checksum.of_bytes(algorithm, b"hello")
    store.put("bkt", "ok", b"hello", checksum=good)
    assert store.get("bkt", "ok") == b"hello"
    with pytest.raises(IntegrityError, match="checksum mismatch"):
        store.put("bkt", "bad", b"hellp", checksum=good)
    assert store.head("bkt", "bad") is None

    src = tmp_path / "src.bin"
    src.write_bytes(b"part bytes")
    upload = store.create_multipart("bkt", "mp")
    with open(src, "rb") as fh:
        body = FileRange(fh.fileno(), 0, 10)
        etag = store.upload_part("bkt", "mp", upload, 1, body, Checksum.of_bytes(algorithm, b"part bytes"))
        with pytest.raises(IntegrityError, match="checksum mismatch for part 2"):
            store.upload_part("bkt", "mp", upload, 2, body, Checksum.of_bytes(algorithm, b"other"))
    assert [p.number for p in store.list_parts("bkt", "mp", upload)] == [1]
    assert etag == hashlib.md5(b"part bytes").hexdigest()


def test_a_folder_upload_to_a_local_store_is_verified_by_sha256(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.bin").write_bytes(b"a" * 1000)
    summary = TransferManager(store).upload([tmp_path / "d"], ObjectURI.parse("s3://bkt/d/"))
    assert summary.verification_counts() == {"sha256": 1}


@pytest.mark.parametrize("algorithm, unsigned", [("md5", True), ("crc32", False)])
def test_a_body_covered_by_content_md5_is_not_hashed_again_for_the_signature(
    moto_url: str, tmp_path: Path, monkeypatch, algorithm: str, unsigned: bool
) -> None:
    """Over plain HTTP botocore signs a SHA-256 of every body; with Content-MD5 on the request that second
    hash is dropped (the ETag check still holds); a CRC alone (ignored by moto and Ceph) keeps it."""
    from jobsub.storage.s3 import S3Store

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    store = S3Store(endpoint_url=moto_url, addressing_style="path", checksum_algorithm=algorithm)
    seen: list[str] = []
    for operation in ("PutObject", "UploadPart"):
        store._client.meta.events.register(
            f"before-send.s3.{operation}", lambda request, **_: seen.append(request.headers["X-Amz-Content-SHA256"])
        )
    store._client.create_bucket(Bucket="sigbkt")
    data = b"payload " * 1000
    checksum = Checksum.of_bytes(algorithm, data)
    etag = store.put("sigbkt", "k", data, checksum=checksum)
    assert store.get("sigbkt", "k") == data and etag
    upload = store.create_multipart("sigbkt", "mp", checksum_algorithm=algorithm)
    part = store.upload_part("sigbkt", "mp", upload, 1, data, checksum)
    store.complete_multipart("sigbkt", "mp", upload, [(1, part)], checksums={1: checksum})
    assert store.get("sigbkt", "mp") == data
    hashes = [h if isinstance(h, str) else h.decode() for h in seen]
    assert len(hashes) == 2
    for payload_hash in hashes:
        assert (payload_hash == "UNSIGNED-PAYLOAD") is unsigned
        if not unsigned:
            assert payload_hash == hashlib.sha256(data).hexdigest()
