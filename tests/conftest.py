"""Shared fixtures: isolated user dirs, a real moto S3 server on loopback, profiles for both stores."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYTESTSECRET"
KEY_ID = "AKIAJOBSUBTESTKEY1234"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, deadline_s: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {deadline_s}s")


def _moto_binary() -> str | None:
    candidate = Path(sys.executable).with_name("moto_server")
    return str(candidate) if candidate.exists() else shutil.which("moto_server")


def start_moto(extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    binary = _moto_binary()
    if binary is None:
        pytest.skip("moto_server not installed (pip install 'moto[server]')")
    port = free_port()
    env = {**os.environ, **(extra_env or {})}
    proc = subprocess.Popen(
        [binary, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    wait_for_port(port)
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    proc, url = start_moto()
    yield url
    proc.terminate()
    proc.wait(10)


@dataclass
class Env:
    """An isolated jobsub user: its own config/data/state dirs, AWS test credentials, and a profile."""

    root: Path
    vars: dict[str, str]
    kind: str = "local"
    bucket: str = ""
    endpoint: str | None = None

    def run(
        self,
        *args: str,
        check: bool = False,
        timeout: float = 120,
        input: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "jobsub", *args],
            env={**self.vars, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"jobsub {' '.join(args)} -> {result.returncode}\n{result.stdout}\n{result.stderr}")
        return result

    def popen(self, *args: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "jobsub", *args], env=self.vars, **kwargs)

    def run_json(self, *args: str) -> dict | list:
        return json.loads(self.run(*args, "--json", check=True).stdout)

    def apply(self) -> None:
        """Make this process see the same user dirs (for in-process API calls in tests)."""
        os.environ.update(self.vars)

    def store(self):
        from jobsub.config import resolve_profile
        from jobsub.storage import open_store

        self.apply()
        return open_store(resolve_profile()[1])

    def boto(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
        )

    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"


def make_env(tmp_path: Path, kind: str = "local", moto: str | None = None) -> Env:
    root = tmp_path / "user"
    variables = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "JOBSUB_", "XDG_"))},
        "XDG_CONFIG_HOME": str(root / "config"),
        "XDG_DATA_HOME": str(root / "data"),
        "XDG_STATE_HOME": str(root / "state"),
        "XDG_CACHE_HOME": str(root / "cache"),
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "PYTHONPATH": str(REPO),
        "COLUMNS": "200",
    }
    env = Env(root, variables, kind, bucket="b" + uuid.uuid4().hex[:10])
    if kind == "s3":
        assert moto
        env.endpoint = moto
        env.run(
            "profile",
            "add",
            "moto",
            "--storage",
            "s3",
            "--endpoint-url",
            moto,
            "--addressing-style",
            "path",
            "--jobs-uri",
            f"s3://{env.bucket}/jobs/",
            "--use",
            check=True,
        )
        env.boto().create_bucket(Bucket=env.bucket)
    else:
        env.run(
            "profile", "add", "loc", "--storage", "local", "--jobs-uri", f"s3://{env.bucket}/jobs/", "--use", check=True
        )
    return env


@pytest.fixture(params=["local", "s3"])
def env(request, tmp_path: Path, monkeypatch) -> Env:
    """A jobsub user on the local store and, in a second run of the test, on the moto S3 server."""
    moto = request.getfixturevalue("moto_url") if request.param == "s3" else None
    for key in list(os.environ):
        if key.startswith(("XDG_", "JOBSUB_", "AWS_")):
            monkeypatch.delenv(key)
    result = make_env(tmp_path, request.param, moto)
    for key, value in result.vars.items():
        monkeypatch.setenv(key, value)
    return result


@pytest.fixture
def s3env(tmp_path: Path, moto_url: str, monkeypatch) -> Env:
    for key in list(os.environ):
        if key.startswith(("XDG_", "JOBSUB_", "AWS_")):
            monkeypatch.delenv(key)
    result = make_env(tmp_path, "s3", moto_url)
    for key, value in result.vars.items():
        monkeypatch.setenv(key, value)
    return result


def poll(predicate, deadline_s: float = 30.0, interval: float = 0.02, what: str = "condition"):
    """Wait for ``predicate()`` to return something truthy, failing the test after a deadline."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {deadline_s}s waiting for {what}")


def write_random(path: Path, size: int, seed: int = 0) -> Path:
    import random

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    with path.open("wb") as fh:
        remaining = size
        while remaining:
            n = min(remaining, 1 << 20)
            fh.write(rng.randbytes(n))
            remaining -= n
    return path
