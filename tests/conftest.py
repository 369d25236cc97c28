"""Shared fixtures: isolated user dirs, real S3 servers on loopback (moto, and Ceph's RADOS Gateway), profiles.

The store harness: `env` runs a test on the local store, on moto and on Ceph; `s3env` on moto and on Ceph;
`cephenv` on Ceph alone. Each S3 server is described by an `S3Server` that names what it verifies, so a test
asserts what that server really does. Ceph starts once per session, only when a selected test needs it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
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


@pytest.fixture(autouse=True)
def _restore_environ() -> Iterator[None]:
    """`Env.apply()` points this process at one test's user dirs and credentials; the next test starts clean."""
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    proc, url = start_moto()
    yield url
    proc.terminate()
    proc.wait(10)


@dataclass(frozen=True)
class S3Server:
    """An S3 server the tests talk to, and the behaviours in which servers differ (S3-SERVERS.md)."""

    name: str  # "moto" | "ceph"
    url: str
    verifies_content_md5: bool  # a wrong Content-MD5 is refused (400 BadDigest)
    verifies_payload_sha256: bool  # a body that does not match its signed x-amz-content-sha256 is refused
    verifies_flexible_checksums: bool  # a wrong x-amz-checksum-crc32 is refused
    returns_flexible_checksums: bool  # HeadObject with ChecksumMode answers the checksum (its own)
    accepts_aws_chunked_over_https: bool  # boto3's default streaming trailer checksum
    error_messages: bool  # error bodies carry <Message>
    https_url: str = ""
    ca_bundle: str = ""
    admin: tuple[str, ...] = ()  # Ceph: the radosgw-admin command line for this cluster

    def admin_run(self, *args: str) -> str:
        """Run radosgw-admin on this cluster (quotas and the like); fails the test on an error."""
        assert self.admin, f"{self.name} has no admin tool"
        result = subprocess.run([*self.admin, *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout


@pytest.fixture(scope="session")
def moto_server(moto_url: str) -> S3Server:
    return S3Server(
        "moto",
        moto_url,
        verifies_content_md5=False,
        verifies_payload_sha256=False,
        verifies_flexible_checksums=False,  # moto 5.2 stores its own CRC and ignores a wrong one
        returns_flexible_checksums=True,
        accepts_aws_chunked_over_https=True,
        error_messages=True,
    )


@pytest.fixture(scope="session")
def ceph_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A single-node Ceph + radosgw (tests/ceph.py), started on first use and stopped by pid at session end."""
    from tests.backends import backend_unavailable
    from tests.ceph import CephUnavailable, start_ceph

    root = tmp_path_factory.mktemp("ceph")
    try:
        ceph = start_ceph(
            KEY_ID, SECRET, memstore_gb=float(os.environ.get("JOBSUB_TEST_CEPH_MEMSTORE_GB", "3")), root=root
        )
    except CephUnavailable as exc:
        backend_unavailable(f"Ceph RGW cannot start: {exc}")
    previous = signal.getsignal(signal.SIGTERM) or signal.SIG_DFL

    def stop_then_exit(signum, frame):  # `timeout pytest ...` sends SIGTERM: no daemon may outlive the run
        ceph.stop()
        signal.signal(signal.SIGTERM, previous)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop_then_exit)
    try:
        yield S3Server(
            "ceph",
            ceph.url,
            verifies_content_md5=True,
            verifies_payload_sha256=True,
            verifies_flexible_checksums=False,
            returns_flexible_checksums=False,
            accepts_aws_chunked_over_https=False,
            error_messages=False,
            https_url=ceph.https_url,
            ca_bundle=ceph.ca_bundle,
            admin=("radosgw-admin", "-c", str(ceph.conf)),
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
        ceph.stop()
        shutil.rmtree(root, ignore_errors=True)


def _server(request: pytest.FixtureRequest, name: str) -> S3Server:
    return request.getfixturevalue("ceph_server" if name == "ceph" else "moto_server")


@dataclass
class Env:
    """An isolated jobsub user: its own config/data/state dirs, AWS test credentials, and a profile."""

    root: Path
    vars: dict[str, str]
    kind: str = "local"
    bucket: str = ""
    endpoint: str | None = None
    server: S3Server | None = None  # the S3 server behind an "s3" env

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

    def boto(self, **config):
        """A plain boto3 client on the same server; `config` goes to botocore's Config."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
            config=Config(s3={"addressing_style": "path"}, **config),
        )

    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"


def make_env(tmp_path: Path, kind: str = "local", moto: str | None = None, server: S3Server | None = None) -> Env:
    """A jobsub user; kind "s3" needs the server (or just the moto URL, for a moto server)."""
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
    env = Env(root, variables, kind, bucket="b" + uuid.uuid4().hex[:10], server=server)
    if kind == "s3":
        moto = server.url if server else moto
        assert moto
        env.endpoint = moto
        env.run(
            "profile",
            "add",
            server.name if server else "moto",
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


def use_env(monkeypatch: pytest.MonkeyPatch, env: Env) -> Env:
    """Make this test process the jobsub user `env` (for in-process API calls): none of the shell's own
    XDG_*, JOBSUB_* or AWS_* variables, the user's instead; undone when the test ends."""
    for key in list(os.environ):
        if key.startswith(("XDG_", "JOBSUB_", "AWS_")):
            monkeypatch.delenv(key)
    for key, value in env.vars.items():
        monkeypatch.setenv(key, value)
    return env


def _isolated_env(tmp_path: Path, monkeypatch, kind: str, server: S3Server | None) -> Env:
    return use_env(monkeypatch, make_env(tmp_path, kind, server=server))


@pytest.fixture(params=["local", "s3", "ceph"])
def env(request, tmp_path: Path, monkeypatch) -> Env:
    """A jobsub user on the local store, then on the moto S3 server ("s3"), then on Ceph's radosgw ("ceph")."""
    if request.param == "local":
        return _isolated_env(tmp_path, monkeypatch, "local", None)
    return _isolated_env(tmp_path, monkeypatch, "s3", _server(request, "ceph" if request.param == "ceph" else "moto"))


@pytest.fixture(params=["moto", "ceph"])
def s3env(request, tmp_path: Path, monkeypatch) -> Env:
    """A jobsub user on an S3 server: moto, then Ceph's radosgw (env.server says which and what it verifies)."""
    return _isolated_env(tmp_path, monkeypatch, "s3", _server(request, request.param))


@pytest.fixture
def cephenv(request, tmp_path: Path, monkeypatch) -> Env:
    """A jobsub user on Ceph's radosgw alone, for what only a production server does."""
    return _isolated_env(tmp_path, monkeypatch, "s3", _server(request, "ceph"))


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


def code_folder(tmp_path: Path, body: str, name: str = "src") -> Path:
    """A job's code folder holding main.py (what the python-script template runs)."""
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    (folder / "main.py").write_text(body)
    return folder


def submit_script(env: Env, code: Path, *extra: str, extra_env: dict[str, str] | None = None) -> str:
    """Submit the python-script template on `code`; the job id (the submit must succeed)."""
    result = env.run("submit", "python-script", "--code", str(code), *extra, "--json", extra_env=extra_env)
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["job_id"])


#: Session fixtures that start a daemon that cannot run twice on one machine (one dockerd owns the docker0
#: bridge and its iptables chains) or that costs too much to start twice (a Ray head is ~700 MB): every test
#: that uses one is kept on one pytest-xdist worker (`-n N --dist loadgroup`, see the Makefile).
HEAVY_FIXTURE_GROUPS = {
    "docker_engine": "docker",
    "docker_harness": "docker",
    "ray_cluster": "ray",
    "ray_harness": "ray",
    "slurm_cluster": "slurm",
    "slurm_harness": "slurm",
}


#: test modules whose tests reach a daemon through a helper (`request.getfixturevalue`), which the fixture
#: names of an item do not show: the whole module goes to that daemon's worker
HEAVY_MODULE_PREFIXES = {"test_docker": "docker", "test_ray": "ray", "test_slurm": "slurm"}


#: test modules whose module-scoped fixtures train or run something costly (a fine-tuned model, a two-process
#: run, the crafted MindSpore checkpoints): each is one xdist group, so its fixtures are computed once. As
#: single-test work units its tests were spread over both workers and each worker computed them again (CI of
#: 2026-11-30: three setups of test_ddp's `one`/`two` fixtures, 14-29 s each; test_train_entry's twice).
SHARED_FIXTURE_MODULES = {
    "test_ddp.py": "ddp-fixtures",
    "test_train_entry.py": "train-entry-fixtures",
    "test_mindspore_crafted.py": "mindspore-crafted-fixtures",
}


def heavy_group(item: pytest.Item) -> str | None:
    """The daemon group of a test: by its module, by the fixtures it names, or by the executor kind of a
    parametrized case (conformance, escape)."""
    module = getattr(item, "path", None)
    for prefix, group in HEAVY_MODULE_PREFIXES.items():
        if module is not None and module.name.startswith(prefix):
            return group
    for name in getattr(item, "fixturenames", ()):
        if name in HEAVY_FIXTURE_GROUPS:
            return HEAVY_FIXTURE_GROUPS[name]
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        for value in callspec.params.values():
            kind = value[0] if isinstance(value, tuple) and value else value
            if isinstance(kind, str) and f"{kind}_harness" in HEAVY_FIXTURE_GROUPS:
                return HEAVY_FIXTURE_GROUPS[f"{kind}_harness"]
    return None


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist appends the group to each node id
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(item, "path", None)
        group = heavy_group(item) or (SHARED_FIXTURE_MODULES.get(module.name) if module is not None else None)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
