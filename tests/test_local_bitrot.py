"""Never "verified" when it is not (issue 17): bytes of the local store changed on disk after jobsub stored
them are refused like a bad S3 object — `download` exits 1 with one line, a job's staging FAILS — and a
file whose bytes did not change (a `touch`) is still served, verified by its SHA-256."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import Env, code_folder, make_env, poll, submit_script, use_env, write_random


@pytest.fixture
def user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    result = make_env(tmp_path)
    use_env(monkeypatch, result)
    return result


def _stored(user: Env, tmp_path: Path, size: int = 300_000, *, multipart: bool = False) -> tuple[Path, Path]:
    """Upload a file; return (its source, the object's file inside the local store)."""
    source = write_random(tmp_path / "src" / "data.bin", size, seed=7)
    extra = ["--part-size", "5MiB"] if multipart else []
    user.run("upload", str(source), user.uri("data/"), *extra, check=True)
    return source, Path(user.store().root) / user.bucket / "data" / "data.bin"


def _flip(path: Path, offset: int = 1234, keep_mtime: bool = False) -> None:
    stat = path.stat()
    with path.open("r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x01]))
    if keep_mtime:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@pytest.mark.parametrize("keep_mtime", [False, True], ids=["mtime-changed", "mtime-put-back"])
def test_a_flipped_byte_fails_the_download_with_one_line(user: Env, tmp_path: Path, keep_mtime: bool) -> None:
    _, stored = _stored(user, tmp_path)
    _flip(stored, keep_mtime=keep_mtime)
    dest = tmp_path / "got.bin"
    result = user.run("download", user.uri("data/data.bin"), str(dest))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    expected = "wrong checksum" if keep_mtime else "changed on disk after it was stored: its SHA-256 no longer matches"
    assert expected in result.stderr, result.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("got")] == []  # no file, no partial


def test_unchanged_bytes_with_a_new_mtime_are_still_verified_by_sha256(user: Env, tmp_path: Path) -> None:
    source, stored = _stored(user, tmp_path)
    os.utime(stored, ns=(0, 1_000_000_000))  # touched, same bytes (a copy that kept them, a restored backup)
    dest = tmp_path / "got.bin"
    result = user.run("download", user.uri("data/data.bin"), str(dest), "--json")
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)["verified_by"].values()) == {"sha256"}
    assert dest.read_bytes() == source.read_bytes()
    again = user.run("download", user.uri("data/data.bin"), str(tmp_path / "again.bin"))  # the record was refreshed
    assert again.returncode == 0, again.stderr


def test_a_multipart_object_changed_on_disk_is_refused(user: Env, tmp_path: Path) -> None:
    _, stored = _stored(user, tmp_path, size=11 << 20, multipart=True)
    _flip(stored, offset=6 << 20)
    result = user.run("download", user.uri("data/data.bin"), str(tmp_path / "out"))
    assert result.returncode == 1 and "changed on disk after it was stored" in result.stderr, result.stderr


def test_a_changed_small_object_is_never_returned_by_get(user: Env) -> None:
    from jobsub.errors import IntegrityError

    store = user.store()
    store.put(user.bucket, "rec/job.json", b'{"state": "SUCCEEDED"}')
    path = Path(store.root) / user.bucket / "rec" / "job.json"
    stat = path.stat()
    path.write_bytes(b'{"state": "SUCCEEDEX"}')
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with its mtime put back
    with pytest.raises(IntegrityError, match="changed on disk after it was stored"):
        store.get(user.bucket, "rec/job.json")
    assert [o.key for o in store.list(user.bucket, "rec/").objects] == ["rec/job.json"]  # still listed, deletable
    store.delete(user.bucket, "rec/job.json")
    assert store.head(user.bucket, "rec/job.json") is None


def test_job_staging_of_a_changed_input_fails_and_the_command_never_runs(user: Env, tmp_path: Path) -> None:
    _, stored = _stored(user, tmp_path)
    _flip(stored)
    marker = tmp_path / "ran"
    code = code_folder(tmp_path, f"open({str(marker)!r}, 'w').write('x')\n")
    job_id = submit_script(user, code, "--input", f"data={user.uri('data/')}")
    status = poll(
        lambda: (s := user.run_json("status", job_id)["status"])["state"] in ("SUCCEEDED", "FAILED", "LOST") and s,
        90,
        0.3,
        "the job to end",
    )
    assert status["state"] == "FAILED", status
    assert "staging input data failed" in status["reason"] and "changed on disk after it was stored" in status["reason"]
    assert not marker.exists()
