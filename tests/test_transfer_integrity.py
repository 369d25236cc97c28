"""Transfers that never lie (issue 9): each test is a way the transfer layer once stored or reported wrong data.

Every test runs through the real CLI against the local store and/or a moto S3 server over HTTP.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.backends import backend_unavailable
from tests.conftest import Env, poll, write_random

MiB = 1 << 20


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def keys(env: Env) -> list[str]:
    return sorted(o["key"] for o in env.run_json("ls", env.uri(), "-r"))


def journals(env: Env) -> list[dict]:
    folder = env.root / "state" / "jobsub" / "uploads"
    found = []
    for path in folder.glob("*.json") if folder.is_dir() else []:
        try:
            found.append(json.loads(path.read_text()))
        except ValueError:
            pass
    return found


def local_store_root(env: Env) -> Path:
    return env.root / "data" / "jobsub" / "store"


def upload_in_progress(env: Env) -> bool:
    """Bytes have started to move: a part in the journal (S3) or a growing staged copy (local store)."""
    if env.kind == "s3":
        return any(len(j["parts"]) >= 1 for j in journals(env))
    staging = local_store_root(env) / ".jobsub" / "tmp"
    return any(p.stat().st_size >= 4 * MiB for p in staging.iterdir()) if staging.is_dir() else False


def rewrite_keeping_mtime(path: Path, seed: int) -> None:
    """Same size, new bytes, and the old mtime put back: what `cp -p`, rsync or a careless tool can do."""
    before = path.stat()
    write_random(path, before.st_size, seed=seed)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


# -- rm -r is a folder, not a string prefix ---------------------------------------------------------------
def test_rm_recursive_deletes_the_folder_not_its_string_prefix_neighbours(env: Env, tmp_path: Path) -> None:
    src = tmp_path / "runs"
    for name in ("data/a.bin", "data/sub/b.bin", "data2/keep.bin", "database.csv"):
        write_random(src / name, 100)
    env.run("upload", str(src), env.uri("runs/"), "-q", check=True)
    before = keys(env)
    dry = env.run("rm", "-r", env.uri("runs/data"), "--dry-run", check=True)
    assert f"would delete s3://{env.bucket}/runs/data/a.bin" in dry.stdout
    assert "data2" not in dry.stdout and "database" not in dry.stdout
    assert "would delete 2 object(s)" in dry.stdout
    assert keys(env) == before, "--dry-run deleted something"
    env.run("rm", "-r", "--yes", env.uri("runs/data"), check=True)
    assert keys(env) == ["runs/data2/keep.bin", "runs/database.csv"]
    assert "runs/data2" in env.run("rm", "--help", check=True).stdout


def test_rm_recursive_removes_an_exact_key_too(s3env: Env, tmp_path: Path) -> None:
    """On S3 an object `runs/data` and a folder `runs/data/` can coexist: -r removes both, nothing else."""
    client = s3env.boto()
    for key in ("runs/data", "runs/data/x", "runs/data-old"):
        client.put_object(Bucket=s3env.bucket, Key=key, Body=b"x")
    s3env.run("rm", "-r", "-y", s3env.uri("runs/data"), check=True)
    assert keys(s3env) == ["runs/data-old"]


# -- a source that changes while it uploads ---------------------------------------------------------------
def test_file_modified_mid_upload_fails_and_stores_nothing_wrong(env: Env, tmp_path: Path) -> None:
    src = write_random(tmp_path / "f.bin", 30 * MiB, seed=21)
    args = ["upload", str(src), env.uri("m/f.bin"), "--part-size", "5MiB", "-j", "1", "--max-bandwidth", "10MiB"]
    proc = env.popen(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        poll(lambda: upload_in_progress(env), 60, what="the upload to start moving bytes")
        with src.open("r+b") as fh:  # an editor or a training job writing into the file being uploaded
            fh.seek(MiB)
            fh.write(b"\xff" * 4096)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.returncode == 1, err
    assert f"source changed during upload: {src}; run the command again" in err
    assert env.store().head(env.bucket, "m/f.bin") is None, "an object was completed from a changing file"
    if env.kind == "s3":
        assert env.run_json("uploads", "list", env.uri()) == [], "the doomed upload was left pending"
    env.run(*args[:-2], "-q", check=True)  # once the file is still, the same command stores it
    out = tmp_path / "back.bin"
    env.run("download", env.uri("m/f.bin"), str(out), "-q", check=True)
    assert out.read_bytes() == src.read_bytes()


def test_same_size_rewrite_with_restored_mtime_is_uploaded_again(env: Env, tmp_path: Path) -> None:
    small = write_random(tmp_path / "d" / "small.bin", 4096, seed=1)
    big = write_random(tmp_path / "d" / "big.bin", 12 * MiB, seed=2)
    env.run("upload", str(tmp_path / "d"), env.uri("s/"), "-q", check=True)
    rewrite_keeping_mtime(small, seed=3)
    rewrite_keeping_mtime(big, seed=4)
    summary = json.loads(env.run("upload", str(tmp_path / "d"), env.uri("s/"), "--json", check=True).stdout)
    assert summary["files_skipped"] == 0 and summary["files_transferred"] == 2
    out = tmp_path / "back"
    env.run("download", env.uri("s/"), str(out), "-q", check=True)
    assert (out / "small.bin").read_bytes() == small.read_bytes()
    assert (out / "big.bin").read_bytes() == big.read_bytes()


def test_resume_after_same_size_rewrite_with_restored_mtime_does_not_reuse_old_parts(
    s3env: Env, tmp_path: Path
) -> None:
    src = write_random(tmp_path / "f.bin", 30 * MiB, seed=5)
    args = ["upload", str(src), s3env.uri("r/f.bin"), "--part-size", "5MiB", "-j", "1", "--max-bandwidth", "10MiB"]
    proc = s3env.popen(*args, "-q", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        poll(lambda: any(len(j["parts"]) >= 2 for j in journals(s3env)), 60, what="two parts in the journal")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    rewrite_keeping_mtime(src, seed=6)
    result = s3env.run(*args[:-2], "--json", check=True)
    assert json.loads(result.stdout)["parts_reused"] == 0
    out = tmp_path / "back.bin"
    s3env.run("download", s3env.uri("r/f.bin"), str(out), "-q", check=True)
    assert sha256(out.read_bytes()) == sha256(src.read_bytes())


# -- objects written by other tools -----------------------------------------------------------------------
def _client(env: Env, checksums: bool):
    """boto3 as another tool would use it: its default flexible checksums, or none (when_required)."""
    import boto3
    from botocore.config import Config

    from tests.conftest import KEY_ID, SECRET

    config = Config(request_checksum_calculation="when_supported" if checksums else "when_required")
    return boto3.client(
        "s3",
        endpoint_url=env.endpoint,
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        config=config,
    )


def _boto_upload(env: Env, path: Path, key: str, checksums: bool) -> None:
    from boto3.s3.transfer import TransferConfig

    client = _client(env, checksums)
    client.upload_file(
        str(path), env.bucket, key, Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    )


@pytest.mark.parametrize("checksums, expected", [(True, "crc32"), (False, "size only")])
def test_foreign_multipart_object_never_skipped_for_a_same_size_local_file(
    s3env: Env, tmp_path: Path, checksums: bool, expected: str
) -> None:
    """boto3's upload_file (multipart ETag '-N', no jobsub metadata), with and without flexible checksums."""
    assert s3env.server is not None
    if not s3env.server.returns_flexible_checksums:
        expected = "size only"  # Ceph takes the checksum headers but never answers them back
    remote = write_random(tmp_path / "remote.bin", 12 * MiB, seed=7)
    _boto_upload(s3env, remote, "foreign/x.bin", checksums)
    dest = write_random(tmp_path / "out" / "x.bin", 12 * MiB, seed=8)  # same size, other bytes
    result = s3env.run("download", s3env.uri("foreign/x.bin"), str(dest), "--json", check=True)
    summary = json.loads(result.stdout)
    assert summary["files_skipped"] == 0 and summary["files_transferred"] == 1
    assert summary["verified_by"] == {s3env.uri("foreign/x.bin"): expected}
    assert dest.read_bytes() == remote.read_bytes()
    again = json.loads(s3env.run("download", s3env.uri("foreign/x.bin"), str(dest), "--json", check=True).stdout)
    assert again["files_skipped"] == (1 if expected != "size only" else 0)  # size alone never says "unchanged"
    text = s3env.run("download", s3env.uri("foreign/x.bin"), str(dest), check=True).stderr
    assert f"verified by: 1 {expected}" in text


def test_foreign_single_part_object_is_checked_by_its_md5_etag(s3env: Env, tmp_path: Path) -> None:
    _client(s3env, checksums=False).put_object(Bucket=s3env.bucket, Key="foreign/s.txt", Body=b"hello " * 100)
    dest = tmp_path / "s.txt"
    dest.write_bytes(b"HELLO " * 100)
    summary = json.loads(s3env.run("download", s3env.uri("foreign/s.txt"), str(dest), "--json", check=True).stdout)
    assert summary["files_transferred"] == 1 and dest.read_bytes() == b"hello " * 100
    assert summary["verified_by"] == {s3env.uri("foreign/s.txt"): "md5"}


def test_foreign_file_in_the_local_store_is_never_skipped_on_size(tmp_path: Path) -> None:
    """A file another program put into the local store's folder has no jobsub metadata."""
    from tests.conftest import make_env

    env = make_env(tmp_path, "local")
    env.run("upload", str(write_random(tmp_path / "seed.bin", 10)), env.uri("seed.bin"), "-q", check=True)
    dropped = write_random(local_store_root(env) / env.bucket / "dropped" / "y.bin", 3 * MiB, seed=9)
    dest = write_random(tmp_path / "y.bin", 3 * MiB, seed=10)
    summary = json.loads(env.run("download", env.uri("dropped/y.bin"), str(dest), "--json", check=True).stdout)
    assert summary["files_skipped"] == 0 and dest.read_bytes() == dropped.read_bytes()


# -- the local store under concurrency --------------------------------------------------------------------
_RACE = """
import hashlib, multiprocessing as mp, os, sys
from pathlib import Path
from jobsub.storage.local import LocalStore

def writer(root, barrier, seed, rounds):
    store = LocalStore(Path(root))
    data = bytes([seed]) * (1 << 20) + os.urandom(64)
    for _ in range(rounds):
        barrier.wait()
        store.put("race", "one/key.bin", data, {"jobsub-sha256": hashlib.sha256(data).hexdigest()})
        barrier.wait()

def main():
    root, rounds = sys.argv[1], int(sys.argv[2])
    barrier = mp.Barrier(5)
    procs = [mp.Process(target=writer, args=(root, barrier, s, rounds)) for s in range(4)]
    for p in procs:
        p.start()
    store, bad = LocalStore(Path(root)), 0
    for _ in range(rounds):
        barrier.wait()
        barrier.wait()
        info = store.head("race", "one/key.bin")
        data = store.get("race", "one/key.bin")
        if info.metadata.get("jobsub-sha256") != hashlib.sha256(data).hexdigest():
            bad += 1
    for p in procs:
        p.join()
    print(bad)

if __name__ == "__main__":
    main()
"""


def test_four_processes_writing_one_local_key_leave_one_consistent_object(tmp_path: Path) -> None:
    script = tmp_path / "race.py"
    script.write_text(_RACE)
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "store"), "40"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0", f"{result.stdout.strip()} of 40 rounds left data and metadata apart"


def test_parallel_profile_add_loses_no_profile(env: Env) -> None:
    procs = [
        env.popen("profile", "add", f"p{i}", "--storage", "local", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for i in range(8)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    names = set(json.loads(env.run("profile", "list", "--json", check=True).stdout)["profiles"])
    assert {f"p{i}" for i in range(8)} <= names


# -- downloads: full disk, refused keys -------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path):
    """An 8 MiB tmpfs (needs root and mount); skips on a laptop without them, fails in CI."""
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        backend_unavailable(f"cannot mount a tmpfs (needs root): {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_download_to_a_full_disk_says_how_much_and_leaves_nothing(env: Env, tmp_path: Path, small_disk: Path) -> None:
    src = write_random(tmp_path / "f.bin", 16 * MiB, seed=12)
    env.run("upload", str(src), env.uri("big/f.bin"), "-q", check=True)
    result = env.run("download", env.uri("big/f.bin"), str(small_disk / "f.bin"))
    assert result.returncode == 1
    assert f"not enough space for {small_disk / 'f.bin'}: it needs 16.0 MiB" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert list(small_disk.iterdir()) == [], "a part file was left on the full disk"


# -- an endpoint that accepts and never answers -----------------------------------------------------------
@pytest.fixture
def silent_endpoint():
    """A TCP server that accepts connections and never sends a byte."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    server.close()
    for conn in held:
        conn.close()


def test_silent_endpoint_fails_in_bounded_time(s3env: Env, tmp_path: Path, silent_endpoint: str) -> None:
    src = write_random(tmp_path / "f.bin", 100)
    started = time.monotonic()
    result = s3env.run(
        "upload", str(src), s3env.uri("x"), "--read-timeout", "2", extra_env={"JOBSUB_ENDPOINT_URL": silent_endpoint}
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert f"endpoint not answering: {silent_endpoint} (no reply in 2 s)" in result.stderr
    assert elapsed < 30, f"took {elapsed:.0f}s: retries are not bounded"
    profile = ["profile", "add", "slow", "--storage", "s3", "--endpoint-url", silent_endpoint]
    s3env.run(*profile, "--read-timeout", "2", check=True)
    started = time.monotonic()
    result = s3env.run("--profile", "slow", "ls", s3env.uri())
    assert result.returncode == 1 and "(no reply in 2 s)" in result.stderr
    assert time.monotonic() - started < 30


# -- flexible checksums -----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["auto", "md5", "crc32", "crc32c", "crc64nvme", "sha256"])
def test_each_checksum_mode_round_trips(s3env: Env, tmp_path: Path, mode: str) -> None:
    s3env.run(
        "profile", "add", f"m-{mode}", "--storage", "s3", "--endpoint-url", s3env.endpoint or "",
        "--addressing-style", "path", "--checksum", mode, "--use", check=True,
    )  # fmt: skip
    folder = tmp_path / "up"
    big = write_random(folder / "big.bin", 12 * MiB, seed=13)
    small = write_random(folder / "small.bin", 1000, seed=14)
    up = json.loads(s3env.run("upload", str(folder), s3env.uri("c/"), "--part-size", "5MiB", "--json").stdout)
    assert s3env.server is not None
    verified = "sha256-signed" if s3env.server.verifies_payload_sha256 else "md5"  # auto, non-AWS: the probe's
    algorithm = verified if mode == "auto" else mode
    assert set(up["verified_by"].values()) == {algorithm}
    head = s3env.boto().head_object(Bucket=s3env.bucket, Key="c/big.bin", ChecksumMode="ENABLED")
    member = {"crc32": "ChecksumCRC32", "crc32c": "ChecksumCRC32C", "crc64nvme": "ChecksumCRC64NVME"}
    member["sha256"] = "ChecksumSHA256"
    assert s3env.server is not None
    if algorithm in member and s3env.server.returns_flexible_checksums:
        assert head.get(member[algorithm]), f"{s3env.server.name} holds no {algorithm} for the object: {head}"
    out = tmp_path / "down"
    down = json.loads(s3env.run("download", s3env.uri("c/"), str(out), "--json").stdout)
    assert set(down["verified_by"].values()) == {"sha256"}
    assert (out / "big.bin").read_bytes() == big.read_bytes()
    assert (out / "small.bin").read_bytes() == small.read_bytes()


# -- credentials never in endpoint URLs; private by default -----------------------------------------------
def test_endpoint_url_with_user_password_is_refused_everywhere(env: Env) -> None:
    bad = "https://AKIAUSER:s3cr3tPass@s3.example.com"
    result = env.run("profile", "add", "x", "--storage", "s3", "--endpoint-url", bad)
    assert result.returncode == 2
    assert "must not contain user:password@" in result.stderr and "credential chain" in result.stderr
    assert "s3cr3tPass" not in result.stderr + result.stdout
    config = env.root / "config" / "jobsub" / "config.toml"
    assert "s3cr3tPass" not in config.read_text()
    config.write_text(config.read_text() + f'\n[profiles.hand]\nstorage = "s3"\nendpoint_url = "{bad}"\n')
    result = env.run("--profile", "hand", "ls")
    assert result.returncode == 2 and "s3cr3tPass" not in result.stderr
    assert "https://s3.example.com" in result.stderr
    config.write_text(config.read_text().replace(bad, "https://s3.example.com"))
    result = env.run("--profile", "hand", "ls", extra_env={"JOBSUB_ENDPOINT_URL": bad})
    assert result.returncode == 2 and "JOBSUB_ENDPOINT_URL" in result.stderr and "s3cr3tPass" not in result.stderr


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mode & 0o777 for p in [root, *root.rglob("*")]}


def test_config_state_and_local_store_are_private_whatever_the_umask(tmp_path: Path, monkeypatch) -> None:
    from tests.conftest import make_env

    old = os.umask(0)  # the child processes inherit a umask that would make everything world-writable
    try:
        env = make_env(tmp_path, "local")
        src = write_random(tmp_path / "src" / "f.bin", 12 * MiB, seed=15)
        env.run("upload", str(src.parent), env.uri("p/"), "-q", check=True)
        env.run("download", env.uri("p/"), str(tmp_path / "out"), "-q", check=True)
        env.run("uploads", "list", check=True)  # looks for resume journals in the state folder
    finally:
        os.umask(old)
    for folder in ("config", "state", "data"):
        modes = _modes(env.root / folder / "jobsub")
        assert modes, folder
        for name, mode in modes.items():
            is_dir = (env.root / folder / "jobsub" / name).is_dir()
            assert mode == (0o700 if is_dir else 0o600), f"{folder}/jobsub/{name} is {oct(mode)}"


def test_shared_store_setting_opens_the_local_store_to_the_group(tmp_path: Path) -> None:
    from tests.conftest import make_env

    env = make_env(tmp_path, "local")
    shared = tmp_path / "team-store"
    add = ["profile", "add", "team", "--storage", "local", "--root", str(shared)]
    env.run(*add, "--shared-store", "--use", check=True)
    old = os.umask(0o077)
    try:
        env.run("upload", str(write_random(tmp_path / "f.bin", 100)), env.uri("f.bin"), "-q", check=True)
    finally:
        os.umask(old)
    assert (shared / env.bucket).stat().st_mode & 0o777 == 0o770
    assert (shared / env.bucket / "f.bin").stat().st_mode & 0o777 == 0o660


# -- the local store copies in one pass ------------------------------------------------------------------
def test_local_upload_killed_midway_leaves_nothing_visible_and_reruns_whole(tmp_path: Path) -> None:
    from tests.conftest import make_env

    env = make_env(tmp_path, "local")
    src = write_random(tmp_path / "f.bin", 40 * MiB, seed=16)
    args = ["upload", str(src), env.uri("k/f.bin"), "--max-bandwidth", "10MiB", "-q"]
    proc = env.popen(*args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        poll(lambda: upload_in_progress(env), 60, what="the local copy to start")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert not (local_store_root(env) / env.bucket / "k" / "f.bin").exists()
    summary = json.loads(env.run(*args[:-3], "--json", check=True).stdout)
    assert summary["parts_sent"] == 1 and summary["verified_by"] == {str(src): "sha256"}
    assert (local_store_root(env) / env.bucket / "k" / "f.bin").read_bytes() == src.read_bytes()
