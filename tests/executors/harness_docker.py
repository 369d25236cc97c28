"""The Docker executor's harness: a real dockerd of its own, a base image made here, the job image built offline.

There is no Docker Hub on these machines (and no systemd), so the session fixture:

1. starts ``dockerd`` with its data root, exec root, pidfile and socket in a temporary folder (it never
   touches a system engine) and stops it by its pid at the end;
2. makes a minimal Debian base with ``mmdebstrap`` (python3 + venv) from this machine's apt sources and
   ``docker import``s it;
3. builds the job image with jobsub's own builder (jobsub/image.py: wheels prepared here, ``pip install
   --no-index`` inside the build), in its light form (the runtime without torch: these jobs are Python
   scripts; the BERT image is built by `jobsub image build` and checked by the demo).

Both images are cached under ~/.cache/jobsub-test-images (JOBSUB_TEST_IMAGE_CACHE) as tarballs named by a
hash of what made them (the mmdebstrap command; the Dockerfile, pyproject and jobsub's sources), so a rerun
loads them in seconds instead of building them again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.backends import backend_unavailable
from tests.conftest import REPO
from tests.executors.harness import KILL_RUNNER, MEMORY_LIMIT, ExecutorHarness

CACHE = Path(os.environ.get("JOBSUB_TEST_IMAGE_CACHE", Path.home() / ".cache" / "jobsub-test-images"))
MIRROR = os.environ.get("JOBSUB_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
MMDEBSTRAP = ["mmdebstrap", "--variant=apt", "--include=python3,python3-venv,ca-certificates", "bookworm"]


def _digest(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:16]


def _source_digest(base_key: str) -> str:
    files = [REPO / "docker" / "Dockerfile", REPO / "pyproject.toml"]
    files += sorted(p for p in (REPO / "jobsub").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return _digest(base_key.encode(), *(f"{p.relative_to(REPO)}\0".encode() + p.read_bytes() for p in files))


class DockerEngine:
    """A dockerd of our own: data root, exec root, pidfile and socket in `folder`; stopped by its pid."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.sock = folder / "docker.sock"
        self.log = folder / "dockerd.log"
        self.host = f"unix://{self.sock}"
        self.proc: subprocess.Popen | None = None

    def start(self, deadline_s: float = 60) -> Any:
        """Start dockerd and return a client once it answers; RuntimeError (with its log) when it does not."""
        import docker

        binary = shutil.which("dockerd")
        if binary is None:
            raise RuntimeError("dockerd not found on PATH: apt-get install -y docker.io (.ci/install-docker.sh)")
        command = [
            binary,
            "--data-root", str(self.folder / "data"),
            "--exec-root", str(self.folder / "exec"),
            "--pidfile", str(self.folder / "dockerd.pid"),
            "-H", self.host,
        ]  # fmt: skip
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited with {self.proc.returncode}: {self.log.read_text()[-600:]}")
            if self.sock.exists():
                try:
                    client = docker.DockerClient(base_url=self.host, timeout=120)
                    client.ping()
                    return client
                except Exception:
                    pass
            time.sleep(0.2)
        raise RuntimeError(f"dockerd did not answer on {self.sock} within {deadline_s}s: {self.log.read_text()[-600:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._unmount_leftovers()

    def _unmount_leftovers(self) -> None:
        """dockerd leaves its default network namespace mounted in the exec root: unmount what is ours."""
        try:
            mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        except OSError:
            return
        for point in sorted((m for m in mounts if m.startswith(f"{self.folder}/")), reverse=True):
            subprocess.run(["umount", point], capture_output=True, check=False)


def base_image(client: Any) -> str:
    """The mmdebstrap'ed Debian base, imported (and cached as a tarball)."""
    key = _digest(" ".join([*MMDEBSTRAP, MIRROR]).encode())
    tag = f"jobsub-base:{key}"
    tarball = CACHE / f"base-{key}.tar"
    if not tarball.exists():
        if shutil.which("mmdebstrap") is None:
            raise RuntimeError("mmdebstrap not found on PATH: apt-get install -y mmdebstrap (.ci/install-docker.sh)")
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = tarball.with_suffix(".partial.tar")
        result = subprocess.run([*MMDEBSTRAP, str(partial), MIRROR], capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            raise RuntimeError(f"mmdebstrap failed: {result.stderr.strip()[-600:]}")
        partial.rename(tarball)
    with tarball.open("rb") as data:
        client.api.import_image_from_data(data.read(), repository="jobsub-base", tag=key)
    return tag


def job_image(client: Any, base: str) -> str:
    """The light job image (runtime, no torch), built offline by jobsub's builder (and cached with docker save)."""
    from jobsub.image import ImagePlan, build_image

    key = _source_digest(base)
    tag = f"jobsub-test:{key}"
    tarball = CACHE / f"job-{key}.tar"
    if tarball.exists():
        with tarball.open("rb") as data:
            client.images.load(data.read())
        return tag
    build_image(client, ImagePlan(tag=tag, base=base, extras=""), say=lambda line: None)
    CACHE.mkdir(parents=True, exist_ok=True)
    for old in CACHE.glob("job-*.tar"):
        old.unlink()  # one job image at a time: each source change makes a new one
    partial = tarball.with_suffix(".partial")
    with partial.open("wb") as out:
        for chunk in client.images.get(tag).save(named=True):
            out.write(chunk)
    partial.rename(tarball)
    return tag


def _host_runner(handle: dict[str, Any]) -> bool:
    """A local-store job: its runner is a process here, its command a container with the job-id label."""
    return handle.get("mode") == "host-runner"


def _runner_gone(handle: dict[str, Any]) -> bool:
    try:
        state = Path(f"/proc/{int(handle['pid'])}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def _labelled(host: str, handle: dict[str, Any]) -> list[dict[str, Any]]:
    import docker

    job_id = Path(handle["run_dir"]).name
    return docker.DockerClient(base_url=host).api.containers(all=True, filters={"label": f"jobsub.job-id={job_id}"})


def _kill(host: str):
    def kill(handle: dict[str, Any]) -> None:
        import docker

        if _host_runner(handle):
            os.kill(int(handle["pid"]), signal.SIGKILL)
            return
        docker.DockerClient(base_url=host).api.kill(handle["container_id"], "SIGKILL")

    return kill


def _nothing_running(host: str):
    def gone(handle: dict[str, Any]) -> bool:
        import docker

        if _host_runner(handle):
            return _runner_gone(handle) and not [c for c in _labelled(host, handle) if c.get("State") == "running"]
        try:
            state = docker.DockerClient(base_url=host).api.inspect_container(handle["container_id"])["State"]
        except docker.errors.NotFound:
            return True
        return not state.get("Running") and state.get("Status") != "restarting"

    return gone


def _reap(host: str):
    def reap(handle: dict[str, Any]) -> None:
        import docker

        if _host_runner(handle):
            if not _runner_gone(handle):
                os.kill(int(handle["pid"]), signal.SIGKILL)
            for container in _labelled(host, handle):
                docker.DockerClient(base_url=host).api.remove_container(container["Id"], force=True)
            return
        try:
            docker.DockerClient(base_url=host).api.remove_container(handle["container_id"], force=True)
        except docker.errors.NotFound:
            pass

    return reap


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[tuple[str, Any]]:
    """A dockerd of this test session: (DOCKER_HOST, client). Stopped by its pid at the end."""
    pytest.importorskip("docker", reason="the docker SDK is not installed (pip install 'jobsub[docker]')")
    engine = DockerEngine(Path(tempfile.mkdtemp(prefix="jsd-", dir="/tmp")))  # short: a socket path has 108 bytes
    try:
        try:
            client = engine.start()
        except RuntimeError as exc:
            backend_unavailable(str(exc))
        yield engine.host, client
    finally:
        engine.stop()
        shutil.rmtree(engine.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def docker_harness(docker_engine: tuple[str, Any]) -> ExecutorHarness:
    host, client = docker_engine
    try:
        image = job_image(client, base_image(client))
    except RuntimeError as exc:
        backend_unavailable(str(exc))
    return ExecutorHarness(
        kind="docker",
        profile_settings={"executor": "docker", "docker": {"host": host, "image": image}},
        cli_env={"DOCKER_HOST": host},
        capabilities=frozenset({KILL_RUNNER, MEMORY_LIMIT}),
        kill_runner=_kill(host),
        nothing_running=_nothing_running(host),
        reap=_reap(host),
    )
