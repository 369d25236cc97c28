"""Plan, then do: `upload --dry-run` sends nothing, and the plan's figures are what the upload then does.

Real stores only: the local-folder store and a moto S3 server over HTTP. Requests are counted by a thin
delegating wrapper around the real store (it forwards every call; it only tallies the ones that write).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Env, _isolated_env, _server, poll, write_random

MiB = 1 << 20
WRITES = {"put", "upload_part", "create_multipart", "complete_multipart", "abort_multipart", "commit_staged"}


class CountingStore:
    """The real store, with a tally of the calls that write (the only thing added)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.writes: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in WRITES:
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.writes[name] = self.writes.get(name, 0) + 1
            return attr(*args, **kwargs)

        return counted


@pytest.fixture(params=["local", "moto"])
def planenv(request, tmp_path: Path, monkeypatch) -> Env:
    """A jobsub user on the local-folder store, then on moto (no Ceph: these tests need no daemon lock)."""
    if request.param == "local":
        return _isolated_env(tmp_path, monkeypatch, "local", None)
    return _isolated_env(tmp_path, monkeypatch, "s3", _server(request, "moto"))


def journals(env: Env) -> list[dict]:
    folder = env.root / "state" / "jobsub" / "uploads"
    found = []
    for path in folder.glob("*.json") if folder.is_dir() else []:
        try:
            found.append(json.loads(path.read_text()))
        except ValueError:
            pass  # replaced while we read it
    return found


def _stored(env: Env) -> list[str]:
    """Every object in the bucket; on the local store every file under its folder (a new bucket counts too)."""
    if env.kind == "local":
        root = env.root / "data" / "jobsub" / "store"
        return sorted(str(p) for p in root.rglob("*")) if root.exists() else []
    return sorted(o["Key"] for o in env.boto().list_objects_v2(Bucket=env.bucket).get("Contents", []))


def _folder(tmp_path: Path) -> Path:
    src = tmp_path / "ckpt"
    src.mkdir()
    write_random(src / "small.bin", 100_000, seed=1)
    write_random(src / "big.bin", 12 * MiB, seed=2)  # 3 parts of 5 MiB (5, 5, 2) on S3
    return src


def test_dry_run_sends_nothing_and_prints_the_plan(planenv: Env, tmp_path: Path) -> None:
    env = planenv
    src = _folder(tmp_path)
    args = ["upload", str(src), env.uri("m/"), "--part-size", "5MiB", "--dry-run"]
    plan = json.loads(env.run(*args, "--json", check=True).stdout)
    assert plan["dry_run"] is True
    assert plan["files"] == 2 and plan["files_to_send"] == 2 and plan["files_unchanged"] == 0
    assert plan["bytes_to_send"] == plan["bytes_total"] == 100_000 + 12 * MiB
    by_key = {p["uri"].rsplit("/", 1)[1]: p for p in plan["plan"]}
    if env.kind == "s3":
        assert by_key["big.bin"]["action"] == "multipart" and by_key["big.bin"]["parts_to_send"] == 3
        assert by_key["big.bin"]["requests"] == 5  # create + 3 parts + complete
        assert by_key["small.bin"]["action"] == "put" and plan["requests"] == 6
    else:
        assert {p["action"] for p in plan["plan"]} == {"copy"} and plan["requests"] == 2
    text = env.run(*args, check=True)
    assert "dry run: nothing was sent" in text.stdout and "2 of 2 files to send" in text.stdout
    assert _stored(env) == [], "a dry run wrote to the store"
    assert journals(env) == [], "a dry run left a resume journal"
    if env.kind == "s3":
        assert env.boto().list_multipart_uploads(Bucket=env.bucket).get("Uploads", []) == []


def test_plan_figures_equal_what_the_upload_does(planenv: Env, tmp_path: Path) -> None:
    from jobsub.transfer import TransferManager, TransferOptions
    from jobsub.uri import ObjectURI

    env = planenv
    src = _folder(tmp_path)
    dest = ObjectURI.parse(env.uri("m/"))
    store = CountingStore(env.store())
    options = TransferOptions(part_size=5 * MiB, concurrency=2)
    plan = TransferManager(store, options).plan_upload([src], dest)  # type: ignore[arg-type]
    assert store.writes == {}, "planning wrote to the store"
    summary = TransferManager(store, options).upload([src], dest)  # type: ignore[arg-type]
    totals = plan.totals()
    assert summary.failures == []
    assert summary.parts_sent == totals["parts_to_send"]
    assert summary.parts_reused == totals["parts_reused"] == 0
    assert summary.bytes_transferred == totals["bytes_to_send"]
    assert summary.requests == totals["requests"] == sum(store.writes.values())

    store.writes.clear()  # a rerun: the plan says every file is unchanged, and the upload writes nothing
    again = TransferManager(store, options).plan_upload([src], dest)  # type: ignore[arg-type]
    assert again.totals()["files_unchanged"] == 2 and again.totals()["requests"] == 0
    summary = TransferManager(store, options).upload([src], dest)  # type: ignore[arg-type]
    assert summary.files_skipped == 2 and summary.requests == 0 and store.writes == {}


def _kill_mid_upload(env: Env, args: list[str]) -> None:
    proc = env.popen(*args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        poll(
            lambda: next((j for j in journals(env) if len(j["parts"]) >= 2), None),
            60,
            what="two parts recorded in the journal",
        )
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)


def test_after_kill_9_the_plan_says_which_parts_are_reused_and_the_resume_agrees(
    moto_server, tmp_path: Path, monkeypatch
) -> None:
    env = _isolated_env(tmp_path, monkeypatch, "s3", moto_server)
    src = write_random(tmp_path / "big.bin", 40 * MiB, seed=3)  # 8 parts of 5 MiB
    args = ["upload", str(src), env.uri("ckpt/big.bin"), "--part-size", "5MiB", "-j", "2", "--max-bandwidth", "20MiB"]
    _kill_mid_upload(env, args)
    plan = json.loads(env.run(*args, "--dry-run", "--json", check=True).stdout)
    (file,) = plan["plan"]
    assert file["action"] == "multipart" and file["upload_id"], "the plan did not find the interrupted upload"
    assert 2 <= file["parts_reused"] < 8
    assert file["parts_to_send"] == 8 - file["parts_reused"]
    assert file["requests"] == file["parts_to_send"] + 1  # no create: the upload is resumed; then complete
    assert env.run_json("uploads", "list", env.uri())[0]["upload_id"] == file["upload_id"]

    summary = json.loads(env.run(*args, "--json", check=True).stdout)
    assert summary["files_resumed"] == 1
    assert summary["parts_reused"] == file["parts_reused"]
    assert summary["parts_sent"] == file["parts_to_send"]
    assert summary["bytes_transferred"] == file["bytes_to_send"]
    assert summary["requests"] == file["requests"]
    out = tmp_path / "back.bin"
    env.run("download", env.uri("ckpt/big.bin"), str(out), "-q", check=True)
    assert out.read_bytes() == src.read_bytes()


def test_a_file_changed_since_its_interrupted_upload_is_planned_afresh_and_the_dry_run_aborts_nothing(
    moto_server, tmp_path: Path, monkeypatch
) -> None:
    env = _isolated_env(tmp_path, monkeypatch, "s3", moto_server)
    src = write_random(tmp_path / "big.bin", 40 * MiB, seed=4)
    args = ["upload", str(src), env.uri("ckpt/big.bin"), "--part-size", "5MiB", "-j", "2", "--max-bandwidth", "20MiB"]
    _kill_mid_upload(env, args)
    old_upload = journals(env)[0]["upload_id"]
    write_random(src, 40 * MiB, seed=5)  # new contents under the same name
    plan = json.loads(env.run(*args, "--dry-run", "--json", check=True).stdout)
    (file,) = plan["plan"]
    assert file["parts_reused"] == 0 and file["parts_to_send"] == 8
    assert file["abort_upload_id"] == old_upload
    assert file["requests"] == 1 + 8 + 1 + 1  # abort the stale one, create, 8 parts, complete
    assert [u["upload_id"] for u in env.run_json("uploads", "list", env.uri())] == [old_upload], (
        "the dry run aborted an upload"
    )
    summary = json.loads(env.run(*args, "--json", check=True).stdout)
    assert summary["parts_sent"] == 8 and summary["parts_reused"] == 0
    assert summary["requests"] == file["requests"]
    assert env.run_json("uploads", "list", env.uri()) == []


@pytest.mark.parametrize(
    "journal",
    [
        b"x" * (200 * 1024),  # too large to be ours
        b"{not json",
        json.dumps({"key": "f.bin", "etag": 1, "size": "big", "part_size": None, "done": ["1"]}).encode(),
    ],
    ids=["huge", "garbage", "wrong-types"],
)
def test_a_download_journal_made_by_someone_else_is_ignored(tmp_path: Path, monkeypatch, journal: bytes) -> None:
    """The journal sits in DEST, where other tools write: a bad one means "start over", never a crash."""
    env = _isolated_env(tmp_path, monkeypatch, "local", None)
    src = write_random(tmp_path / "f.bin", 3 * MiB, seed=7)
    env.run("upload", str(src), env.uri("f.bin"), "-q", check=True)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "f.bin.jobsub-part").write_bytes(b"\0" * (3 * MiB))
    (dest / "f.bin.jobsub-part.json").write_bytes(journal)
    result = env.run("download", env.uri("f.bin"), str(dest / "f.bin"), "--json", "--part-size", "5MiB")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert json.loads(result.stdout)["parts_reused"] == 0
    assert (dest / "f.bin").read_bytes() == src.read_bytes()
    assert not (dest / "f.bin.jobsub-part.json").exists()


def test_a_download_journal_naming_parts_that_do_not_exist_reuses_none_of_them(tmp_path: Path, monkeypatch) -> None:
    from jobsub.transfer.journal import DownloadJournal

    env = _isolated_env(tmp_path, monkeypatch, "local", None)
    src = write_random(tmp_path / "f.bin", 3 * MiB, seed=8)
    env.run("upload", str(src), env.uri("f.bin"), "-q", check=True)
    info = env.store().head(env.bucket, "f.bin")
    dest = tmp_path / "dest"
    dest.mkdir()
    partial = dest / "f.bin.jobsub-part"
    partial.write_bytes(b"\0" * (3 * MiB))
    from jobsub.transfer.planning import part_ranges

    layout = DownloadJournal.layout_of(part_ranges(info.size, 8 * MiB))  # the layout matches: only the parts do not
    DownloadJournal("f.bin", info.etag, info.size, 8 * MiB, [2, 99], layout=layout).save(
        DownloadJournal.path_for(partial)
    )
    summary = json.loads(env.run("download", env.uri("f.bin"), str(dest / "f.bin"), "--json", check=True).stdout)
    assert summary["parts_reused"] == 0
    assert (dest / "f.bin").read_bytes() == src.read_bytes()


def test_dry_run_shows_a_name_with_terminal_escapes_escaped(tmp_path: Path, monkeypatch) -> None:
    env = _isolated_env(tmp_path, monkeypatch, "local", None)
    src = tmp_path / "src"
    src.mkdir()
    (src / "evil\x1b]0;owned\x07.bin").write_bytes(b"x")
    result = env.run("upload", str(src), env.uri("m/"), "--dry-run", check=True)
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "evil\\x1b]0;owned\\x07.bin" in result.stdout
