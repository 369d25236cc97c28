"""Uploads and downloads through the real CLI, against the local store and a moto S3 server over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import KEY_ID, SECRET, Env, poll, write_random

MiB = 1 << 20


def journals(env: Env) -> list[dict]:
    folder = env.root / "state" / "jobsub" / "uploads"
    found = []
    for path in folder.glob("*.json") if folder.is_dir() else []:
        try:
            found.append(json.loads(path.read_text()))
        except ValueError:
            pass  # replaced while we read it
    return found


def test_folder_round_trip_is_byte_identical_and_rerun_skips(env: Env, tmp_path: Path) -> None:
    src = tmp_path / "ckpt"
    write_random(src / "model.bin", 21 * MiB, seed=1)  # multipart: 3 parts of 8 MiB
    write_random(src / "sub" / "config.json", 1234, seed=2)
    (src / "empty.txt").write_bytes(b"")
    first = env.run_json("upload", str(src), env.uri("models/ckpt/"))
    assert first["files_transferred"] == 3 and first["failures"] == []
    listed = env.run_json("ls", env.uri("models/ckpt/"), "--recursive")
    assert sorted(o["key"] for o in listed) == [
        "models/ckpt/empty.txt",
        "models/ckpt/model.bin",
        "models/ckpt/sub/config.json",
    ]

    again = env.run_json("upload", str(src), env.uri("models/ckpt/"))
    assert again["files_skipped"] == 3 and again["parts_sent"] == 0

    dest = tmp_path / "back"
    got = env.run_json("download", env.uri("models/ckpt/"), str(dest))
    assert got["files_transferred"] == 3
    for rel in ("model.bin", "sub/config.json", "empty.txt"):
        assert (dest / rel).read_bytes() == (src / rel).read_bytes()
    assert not list(dest.rglob("*.jobsub-part*"))
    assert env.run_json("download", env.uri("models/ckpt/"), str(dest))["files_skipped"] == 3


def test_single_file_to_key_and_into_folder(env: Env, tmp_path: Path) -> None:
    src = write_random(tmp_path / "a.bin", 1000)
    env.run("upload", str(src), env.uri("x/renamed.bin"), "-q", check=True)
    env.run("upload", str(src), env.uri("y/"), "-q", check=True)
    keys = [o["key"] for o in env.run_json("ls", env.uri(), "-r")]
    assert keys == ["x/renamed.bin", "y/a.bin"]
    (tmp_path / "into").mkdir()
    env.run("download", env.uri("x/renamed.bin"), str(tmp_path / "into") + "/", "-q", check=True)
    assert (tmp_path / "into" / "renamed.bin").read_bytes() == src.read_bytes()


def test_kill_9_mid_upload_then_rerun_sends_only_missing_parts(s3env: Env, tmp_path: Path) -> None:
    """S3 only: a local-folder store copies in one pass and keeps no parts to resume (see test_transfer_integrity)."""
    env = s3env
    src = write_random(tmp_path / "big.bin", 40 * MiB, seed=3)  # 8 parts of 5 MiB
    args = [
        "upload",
        str(src),
        env.uri("ckpt/big.bin"),
        "--part-size",
        "5MiB",
        "--concurrency",
        "2",
        "--max-bandwidth",
        "20MiB",
        "-q",
    ]
    proc = env.popen(*args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        poll(
            lambda: next((j for j in journals(env) if len(j["parts"]) >= 3), None),
            60,
            what="three parts recorded in the journal",
        )
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    recorded = len(journals(env)[0]["parts"])
    assert recorded < 8, "the upload finished before it could be killed"
    assert env.store().head(env.bucket, "ckpt/big.bin") is None, "an incomplete object became visible"

    summary = json.loads(env.run(*args[:-1], "--json", check=True).stdout)
    assert summary["files_resumed"] == 1
    assert summary["parts_reused"] >= recorded
    assert summary["parts_sent"] + summary["parts_reused"] == 8
    assert summary["parts_sent"] <= 8 - recorded
    out = tmp_path / "back.bin"
    env.run("download", env.uri("ckpt/big.bin"), str(out), "-q", check=True)
    assert out.read_bytes() == src.read_bytes()
    assert journals(env) == [], "the journal outlived a completed upload"
    assert env.run_json("uploads", "list", env.uri()) == []


def test_sigterm_keeps_upload_resumable_and_prints_resume_command(s3env: Env, tmp_path: Path) -> None:
    """S3 only: a local-folder store copies in one pass and keeps no parts to resume (see test_transfer_integrity)."""
    env = s3env
    src = write_random(tmp_path / "big.bin", 30 * MiB, seed=4)
    args = [
        "upload",
        str(src),
        env.uri("t/big.bin"),
        "--part-size",
        "5MiB",
        "--concurrency",
        "1",
        "--max-bandwidth",
        "10MiB",
    ]
    proc = env.popen(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    poll(lambda: any(len(j["parts"]) >= 1 for j in journals(env)), 60, what="a part in the journal")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "Resume with:" in err and "jobsub upload" in err
    pending = env.run_json("uploads", "list", env.uri())
    assert len(pending) == 1 and pending[0]["source"] == str(src) and pending[0]["percent_done"] > 0
    summary = json.loads(env.run(*args, "--json", "-q", check=True).stdout)
    assert summary["parts_reused"] >= 1


def test_changed_source_restarts_and_says_so(s3env: Env, tmp_path: Path) -> None:
    """S3 only: a local-folder store copies in one pass and keeps no parts to resume (see test_transfer_integrity)."""
    env = s3env
    src = write_random(tmp_path / "f.bin", 30 * MiB, seed=5)
    args = [
        "upload",
        str(src),
        env.uri("c/f.bin"),
        "--part-size",
        "5MiB",
        "--concurrency",
        "1",
        "--max-bandwidth",
        "10MiB",
    ]
    proc = env.popen(*args, "-q", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    poll(lambda: any(len(j["parts"]) >= 1 for j in journals(env)), 60, what="a part in the journal")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    write_random(src, 30 * MiB, seed=6)  # new contents, new mtime
    result = env.run(*args[:-2], check=True)
    assert "changed since its interrupted upload" in result.stderr
    out = tmp_path / "back.bin"
    env.run("download", env.uri("c/f.bin"), str(out), "-q", check=True)
    assert out.read_bytes() == src.read_bytes()
    assert env.run_json("uploads", "list", env.uri()) == []


def test_uploads_abort_removes_pending_upload(s3env: Env, tmp_path: Path) -> None:
    """S3 only: a local-folder store copies in one pass and keeps no parts to resume (see test_transfer_integrity)."""
    env = s3env
    src = write_random(tmp_path / "f.bin", 30 * MiB, seed=7)
    proc = env.popen(
        "upload",
        str(src),
        env.uri("a/f.bin"),
        "--part-size",
        "5MiB",
        "-j",
        "1",
        "--max-bandwidth",
        "10MiB",
        "-q",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    poll(lambda: any(len(j["parts"]) >= 1 for j in journals(env)), 60, what="a part in the journal")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    pending = env.run_json("uploads", "list", env.uri())
    assert len(pending) == 1
    result = env.run("uploads", "abort", "--all", "--uri", env.uri(), check=True)
    assert pending[0]["upload_id"] in result.stdout
    assert env.run_json("uploads", "list", env.uri()) == []
    assert journals(env) == []


def test_download_resumes_a_partial_file(env: Env, tmp_path: Path) -> None:
    src = write_random(tmp_path / "f.bin", 30 * MiB, seed=8)
    env.run("upload", str(src), env.uri("d/f.bin"), "-q", check=True)
    dest = tmp_path / "out" / "f.bin"
    args = ["download", env.uri("d/f.bin"), str(dest), "--part-size", "5MiB", "-j", "1", "--max-bandwidth", "10MiB"]
    proc = env.popen(*args, "-q", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = dest.with_name("f.bin.jobsub-part.json")

    def parts_done() -> bool:
        try:
            record = json.loads(journal.read_text())
            return record["done_through"] + len(record["done"]) >= 2  # parts 1..done_through, and those above
        except (OSError, ValueError):
            return False

    poll(parts_done, 60, what="two downloaded parts")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert not dest.exists(), "a partial download was renamed into place"
    summary = json.loads(env.run(*args[:-2], "--json", "-q", check=True).stdout)
    assert summary["files_resumed"] == 1 and summary["parts_reused"] >= 2
    assert dest.read_bytes() == src.read_bytes()


def test_download_refuses_keys_that_escape_dest(s3env: Env, tmp_path: Path) -> None:
    """S3 keys are arbitrary strings; moto stores '..' segments verbatim, as AWS does."""
    client = s3env.boto()
    for key in ("p/../evil.txt", "p/a/../../../escape.txt", "p//double.txt", "p/./dot.txt", "p/ok.txt"):
        client.put_object(Bucket=s3env.bucket, Key=key, Body=b"payload")
    dest = tmp_path / "dest"
    result = s3env.run("download", s3env.uri("p/"), str(dest))
    assert result.returncode == 1, result.stderr  # refused keys are a failure the user must see...
    assert "4 object(s) refused" in result.stderr and "--skip-unsafe" in result.stderr
    assert [p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()] == ["ok.txt"]
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path.parent / "escape.txt").exists()
    assert result.stderr.count("refused") >= 4
    summary = json.loads(s3env.run("download", s3env.uri("p/"), str(dest), "--json", "-q").stdout)
    assert len(summary["refused"]) == 4
    again = s3env.run("download", s3env.uri("p/"), str(dest), "--skip-unsafe")  # ...unless accepted
    assert again.returncode == 0, again.stderr
    assert "warning: refused unsafe key" in again.stderr


@pytest.mark.parametrize(
    "args, message, code",
    [
        (["upload", "/nonexistent/file.bin", "s3://bucket1/x"], "no such file or folder: /nonexistent/file.bin", 2),
        (["upload", "README.md", "http://bucket/x"], "expected s3://bucket/key", 2),
        (["upload", "README.md", "s3://Bad_Bucket/x"], "invalid bucket name", 2),
        (["download", "s3://bucket1/../x", "out"], "'.' or '..' segment", 2),
        (["upload", "README.md", "s3://b1x/x", "--part-size", "lots"], "cannot read size", 2),
        (["--profile", "nope", "ls"], "no profile named 'nope'", 2),
    ],
)
def test_bad_input_gives_one_line_error(env: Env, args: list[str], message: str, code: int) -> None:
    result = env.run(*args)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_bucket_and_unreachable_endpoint(s3env: Env, tmp_path: Path) -> None:
    src = write_random(tmp_path / "f.bin", 100)
    result = s3env.run("upload", str(src), "s3://no-such-bucket-here/x")
    assert result.returncode == 1
    assert "bucket 'no-such-bucket-here' does not exist" in result.stderr
    result = s3env.run("ls", s3env.uri(), extra_env={"JOBSUB_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert result.returncode == 1
    assert "cannot reach http://127.0.0.1:9" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_rejected_credentials_name_key_suffix_only(tmp_path: Path) -> None:
    """A second moto server with authentication on rejects every key: the error is clear and secret-free."""
    from tests.conftest import make_env, start_moto

    proc, url = start_moto({"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    try:
        env = make_env(tmp_path, "local")
        env.run("profile", "add", "auth", "--storage", "s3", "--endpoint-url", url, "--use", check=True)
        src = write_random(tmp_path / "f.bin", 100)
        for debug in ([], ["--debug"]):
            result = env.run(*debug, "upload", str(src), "s3://somebucket/x")
            assert result.returncode == 1
            assert "rejected the credentials (access key id ...1234)" in result.stderr
            assert SECRET not in result.stderr + result.stdout
            assert KEY_ID not in result.stderr + result.stdout
        assert len(result.stderr.strip().splitlines()) > 1  # --debug did show more
    finally:
        proc.terminate()
        proc.wait(10)


def test_no_secret_in_debug_output_or_written_files(s3env: Env, tmp_path: Path) -> None:
    src = write_random(tmp_path / "f.bin", 12 * MiB)
    result = s3env.run("--debug", "upload", str(src), s3env.uri("s/f.bin"))
    assert result.returncode == 0, result.stderr
    assert "botocore" in result.stderr or "urllib3" in result.stderr  # debug output really was produced
    assert SECRET not in result.stderr + result.stdout and KEY_ID not in result.stderr + result.stdout
    for path in s3env.root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert SECRET.encode() not in data and KEY_ID.encode() not in data, path


def test_rm_and_ls(env: Env, tmp_path: Path) -> None:
    src = tmp_path / "d"
    for name in ("a", "b/c", "b/d"):
        write_random(src / name, 10)
    env.run("upload", str(src), env.uri("r/"), "-q", check=True)
    top = env.run("ls", env.uri("r/"), check=True).stdout
    assert "PRE" in top and f"s3://{env.bucket}/r/b/" in top and f"s3://{env.bucket}/r/a" in top
    assert env.run("rm", env.uri("r/")).returncode == 2  # a prefix needs --recursive
    assert env.run("rm", env.uri("r/"), "--recursive").returncode == 2  # no terminal to confirm, no --yes
    env.run("rm", env.uri("r/a"), check=True)
    env.run("rm", env.uri("r/"), "-r", "--yes", check=True)
    assert env.run_json("ls", env.uri(), "-r") == []
