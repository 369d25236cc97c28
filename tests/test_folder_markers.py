"""Object stores as they are (issue 18, item 3): an S3/OBS console's "Create folder" writes zero-byte
`prefix/` objects, and S3 lets `a` and `a/b` live side by side. Downloads and job staging take markers as
folders and refuse what a filesystem cannot hold in one line, before any byte moves.

Objects are written with plain boto3, as a console or another tool would, on moto and on Ceph (`s3env`);
the local store's variants put files where another program could.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Env, code_folder, poll, submit_script


def _put(env: Env, *keys: str, body: bytes = b"") -> None:
    client = env.boto()
    for key in keys:
        client.put_object(Bucket=env.bucket, Key=key, Body=body if not key.endswith("/") else b"")


def _tree(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() + ("/" if p.is_dir() else "") for p in folder.rglob("*"))


def _wait_final(env: Env, job_id: str) -> dict:
    def final() -> dict | None:
        status = env.run_json("status", job_id)["status"]
        return status if status["state"] in ("SUCCEEDED", "FAILED", "CANCELLED", "LOST") else None

    return poll(final, 120, 0.3, f"job {job_id} to end")


# -- the classification itself (no store) ---------------------------------------------------------------------
def test_a_key_is_a_file_a_folder_or_refused(tmp_path: Path) -> None:
    from jobsub.transfer.keymap import classify_key

    dest = tmp_path / "d"
    assert classify_key(dest, "", 0).kind == "folder"  # the marker of the folder being downloaded
    assert classify_key(dest, "sub/", 0).target == (dest / "sub").resolve()
    assert classify_key(dest, "a/b.txt", 3).target == (dest / "a" / "b.txt").resolve()
    refused = classify_key(dest, "sub/", 7)
    assert refused.kind == "unsafe" and "holds 7 bytes" in (refused.problem or "")
    for bad in ("../x", "a//b", "./a/", "/abs", "a/../../x/"):
        assert classify_key(dest, bad, 0).kind == "unsafe", bad


# -- downloads -----------------------------------------------------------------------------------------------
def test_console_folder_markers_download_as_folders(s3env: Env, tmp_path: Path) -> None:
    _put(s3env, "p/", "p/sub/", "p/empty/")
    _put(s3env, "p/a.txt", "p/sub/b.txt", body=b"payload")
    for source in ("p", "p/"):  # the folder's own marker `p/` is the folder, with or without the slash
        dest = tmp_path / f"dest-{len(source)}"
        result = s3env.run("download", s3env.uri(source), str(dest))
        assert result.returncode == 0, result.stderr
        assert "refused" not in result.stderr
        assert _tree(dest) == ["a.txt", "empty/", "sub/", "sub/b.txt"]
        assert (dest / "sub" / "b.txt").read_bytes() == b"payload"


def test_an_empty_console_folder_downloads_as_an_empty_folder(s3env: Env, tmp_path: Path) -> None:
    _put(s3env, "only/")
    dest = tmp_path / "dest"
    summary = json.loads(s3env.run("download", s3env.uri("only"), str(dest), "--json", "-q", check=True).stdout)
    assert summary["files"] == 0 and summary["refused"] == []
    assert dest.is_dir() and _tree(dest) == []


def test_a_folder_marker_holding_bytes_is_refused_not_written(s3env: Env, tmp_path: Path) -> None:
    _put(s3env, "p/ok.txt", body=b"ok")
    s3env.boto().put_object(Bucket=s3env.bucket, Key="p/odd/", Body=b"bytes")
    dest = tmp_path / "dest"
    result = s3env.run("download", s3env.uri("p/"), str(dest))
    assert result.returncode == 1
    assert "refused key 'p/odd/': it ends with '/' but holds 5 bytes" in result.stderr
    assert _tree(dest) == ["ok.txt"]


def test_keys_a_and_a_slash_b_fail_in_one_line_and_leave_nothing(s3env: Env, tmp_path: Path) -> None:
    _put(s3env, "c/x.txt", "c/a", "c/a/b", body=b"12345")
    dest = tmp_path / "dest"
    result = s3env.run("download", s3env.uri("c"), str(dest))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"error: cannot download {s3env.uri('c')}: keys 'c/a' and 'c/a/b' make 'a' both a file and a folder; "
        "rename or remove one of them (a folder cannot hold a file and a folder of one name); nothing was downloaded"
    ]
    assert not dest.exists() or _tree(dest) == []  # no part file, no journal, not even x.txt


def test_a_marker_beside_a_file_of_the_same_name_conflicts(s3env: Env, tmp_path: Path) -> None:
    _put(s3env, "m/model", body=b"weights")
    _put(s3env, "m/model/")
    result = s3env.run("download", s3env.uri("m/"), str(tmp_path / "dest"))
    assert result.returncode == 1 and "make 'model' both a file and a folder" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_key_whose_folder_is_a_local_file_fails_before_any_byte_moves(env: Env, tmp_path: Path) -> None:
    env.store().put(env.bucket, "q/a/b.bin", b"x" * 1000)
    env.store().put(env.bucket, "q/z.bin", b"z")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "a").write_text("mine")
    result = env.run("download", env.uri("q/"), str(dest))
    assert result.returncode == 1
    assert f"key 'q/a/b.bin' needs a folder where {dest / 'a'} is a file" in result.stderr
    assert _tree(dest) == ["a"] and (dest / "a").read_text() == "mine"


# -- job staging -----------------------------------------------------------------------------------------------
LIST_INPUT = (
    "import os, pathlib\n"
    "root = pathlib.Path(os.environ['JOBSUB_INPUT_INP'])\n"
    "print('SEEN', sorted(p.relative_to(root).as_posix() for p in root.rglob('*')), flush=True)\n"
)


def test_a_job_stages_a_console_made_folder(s3env: Env, tmp_path: Path) -> None:
    _put(s3env, "inp/", "inp/sub/", "inp/empty/")
    _put(s3env, "inp/a.txt", "inp/sub/b.txt", body=b"data")
    job_id = submit_script(s3env, code_folder(tmp_path, LIST_INPUT), "--input", f"inp={s3env.uri('inp')}")
    status = _wait_final(s3env, job_id)
    assert status["state"] == "SUCCEEDED", status
    assert "SEEN ['a.txt', 'empty', 'sub', 'sub/b.txt']" in s3env.run("logs", job_id).stdout


def test_a_job_whose_input_holds_a_and_a_slash_b_fails_before_its_command(s3env: Env, tmp_path: Path) -> None:
    _put(s3env, "inp/a", "inp/a/b", body=b"data")
    job_id = submit_script(s3env, code_folder(tmp_path, LIST_INPUT), "--input", f"inp={s3env.uri('inp/')}")
    status = _wait_final(s3env, job_id)
    assert status["state"] == "FAILED"
    assert "keys 'inp/a' and 'inp/a/b' make 'a' both a file and a folder" in status["reason"]
    assert "SEEN" not in s3env.run("logs", job_id).stdout
