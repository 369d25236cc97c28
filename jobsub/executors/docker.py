"""The Docker executor: the jobsub runtime as a container on a Docker Engine (or Podman's Docker-compatible API).

How the executor interface maps onto the engine (docs/architecture.md has the why):

- ``check``: ping the engine, look the image up, look for the NVIDIA runtime when GPUs are asked for; each
  missing piece is one line (exit 2) before anything is uploaded or recorded.
- ``submit``: ``docker run -d`` of the job's image with ``python -m jobsub.runtime JOB_URI --work-dir DIR``
  as its command, the job's resources as limits, the job id as a label, and the storage credentials as
  container environment only. A local store is bind-mounted at the same path and the container runs as
  the submitting uid:gid, so records and outputs land where the CLI reads them, owned by the user. A
  loopback S3 endpoint is reached through the host's network.
- ``poll``: the container's state; an OOM kill becomes the reason ("killed: out of memory (limit 2 GiB)").
- ``cancel``: ``docker stop`` with the runtime's grace period plus the time it needs to write its final
  state, then SIGKILL (the engine escalates).
- ``cleanup``: removes the container once the record is final, unless ``keep`` is set.

The handle names the engine the container runs on, so a job is always polled where it was started.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from jobsub.errors import ExecutorUnavailableError
from jobsub.executors.base import BaseExecutor, Capabilities, Handle, LaunchRequest, Observation
from jobsub.units import human_limit, parse_size

if TYPE_CHECKING:
    import docker

#: the image a spec without `image:` runs in (docker/Dockerfile, `jobsub image build`)
DEFAULT_IMAGE = "jobsub-train:latest"
DEFAULT_HOST = "unix:///var/run/docker.sock"
DEFAULT_SHM = "1GiB"
#: the label every jobsub container carries (its value is the job id)
LABEL = "jobsub.job-id"
#: the runner's working folder inside the container (inputs, code and outputs before upload)
WORK_ROOT = "/tmp/jobsub-work"
#: seconds the runner needs after its command stopped: upload outputs, ship the last log chunk, final state
FINISH_MARGIN_SECONDS = 20


def resolve_host(configured: str | None = None) -> str:
    """The engine address as the docker CLI finds it: the profile's host, DOCKER_HOST, the DOCKER_CONTEXT or
    current docker context (~/.docker/config.json), else the default socket."""
    if configured:
        return configured
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    try:
        from docker.context import ContextAPI

        context = ContextAPI.get_context(os.environ.get("DOCKER_CONTEXT") or None)
        if context is not None and context.Host:
            return str(context.Host)
    except Exception:  # no SDK, no config, a broken context file: the CLI's default then
        pass
    return DEFAULT_HOST


def _is_loopback(url: str | None) -> bool:
    host = urlparse(url).hostname if url else None
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_local_engine(host: str) -> bool:
    return host.startswith(("unix://", "npipe://")) or _is_loopback(host.replace("tcp://", "http://", 1))


class DockerExecutor(BaseExecutor):
    kind = "docker"
    shares_client_environment = False
    capabilities = Capabilities(memory_limit=True, gpus=True, secret_env=True)

    def __init__(self, profile: Any) -> None:
        super().__init__(profile)
        self.settings = profile.docker
        self.host = resolve_host(self.settings.host)
        self._clients: dict[str, docker.DockerClient] = {}

    # -- the engine ----------------------------------------------------------------------------------
    def client(self, host: str | None = None) -> docker.DockerClient:
        host = host or self.host
        if host not in self._clients:
            try:
                import docker
            except ImportError:
                raise ExecutorUnavailableError(
                    "the docker executor needs the docker SDK: pip install 'jobsub[docker]'"
                ) from None
            try:
                self._clients[host] = docker.DockerClient(
                    base_url=host, timeout=30, use_ssh_client=host.startswith("ssh://")
                )
            except docker.errors.DockerException:  # the SDK asks the engine for its API version here
                raise ExecutorUnavailableError(_no_engine(host)) from None
        return self._clients[host]

    def ping(self, host: str | None = None) -> docker.DockerClient:
        host = host or self.host
        client = self.client(host)
        try:
            client.ping()
        except Exception:
            raise ExecutorUnavailableError(_no_engine(host)) from None
        return client

    def image_for(self, request: LaunchRequest) -> str:
        return request.image or self.settings.image or DEFAULT_IMAGE

    # -- check ---------------------------------------------------------------------------------------
    def check(self, request: LaunchRequest) -> None:
        import docker

        client = self.ping()
        image = self.image_for(request)
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            raise ExecutorUnavailableError(
                f"image {image} is not on the engine at {self.host}: build it with "
                f"`jobsub image build --tag {image}` or set image: in the spec (or `docker.image` in the profile)"
            ) from None
        if request.gpus > 0:
            info = client.info()
            runtimes = set(info.get("Runtimes") or {}) | {str(info.get("DefaultRuntime", ""))}
            if "nvidia" not in runtimes:
                raise ExecutorUnavailableError(
                    f"resources.gpus={request.gpus} but the Docker engine at {self.host} has no NVIDIA runtime: "
                    "install nvidia-container-toolkit on it, or set resources.gpus=0"
                )
        if self.profile.storage == "local" and not _is_local_engine(self.host):
            raise ExecutorUnavailableError(
                f"the local store {self.profile.local_root()} cannot be mounted into containers on the remote "
                f"engine {self.host}: use an S3 profile (`jobsub profile add NAME --storage s3 ...`)"
            )
        if self.settings.shm_size:
            parse_size(self.settings.shm_size)

    # -- submit --------------------------------------------------------------------------------------
    def run_options(self, request: LaunchRequest) -> dict[str, Any]:
        """The keyword arguments of `containers.run` for this request (everything but the secrets' values
        is safe to show; the secrets are only in `environment`)."""
        import docker

        profile = request.profile
        options: dict[str, Any] = {
            "labels": {LABEL: request.job_id, "jobsub.job-uri": request.job_uri},
            "name": f"jobsub-{request.job_id}",
            "detach": True,
            "stdin_open": False,
            "shm_size": parse_size(self.settings.shm_size or DEFAULT_SHM),
            "working_dir": "/tmp",
        }
        env = request.runtime_env()
        if profile.storage == "local":
            root = str(profile.local_root().resolve())
            # the runtime inside reads the same folder: a path that does not depend on the container's HOME
            env["JOBSUB_PROFILE_JSON"] = profile.model_copy(update={"root": root}).model_dump_json()
            options["volumes"] = {root: {"bind": root, "mode": "rw"}}
            options["user"] = f"{os.getuid()}:{os.getgid()}"
            env.setdefault("HOME", "/tmp")  # the submitting uid may have no home in the image
        network = self.settings.network
        if network is None and _is_loopback(profile.effective_endpoint()):
            network = "host"  # a loopback endpoint is the engine host's loopback: share its network
        if network:
            options["network_mode" if network in ("host", "none", "bridge") else "network"] = network
        if request.cpus:
            options["nano_cpus"] = int(request.cpus * 1e9)
        if request.memory_bytes:
            options["mem_limit"] = request.memory_bytes
            options["memswap_limit"] = request.memory_bytes  # no swap: over the limit is an OOM kill
        if request.gpus:
            options["device_requests"] = [docker.types.DeviceRequest(count=request.gpus, capabilities=[["gpu"]])]
        options["environment"] = env
        options["entrypoint"] = request.runtime_argv(f"{WORK_ROOT}/{request.job_id}")
        return options

    def submit(self, request: LaunchRequest) -> Handle:
        import docker

        client = self.ping()
        image = self.image_for(request)
        try:
            container = client.containers.run(image, **self.run_options(request))
        except docker.errors.APIError as exc:
            raise ExecutorUnavailableError(f"docker run {image} failed: {_one_line(exc)}") from None
        return {
            "kind": self.kind,
            "host": self.host,
            "engine_host": _engine_name(client, self.host),
            "container_id": container.id,
            "image": image,
            "memory_bytes": request.memory_bytes,
            "stop_timeout": int(_runner_grace() + FINISH_MARGIN_SECONDS),
            "keep": bool(self.settings.keep),
        }

    # -- poll ----------------------------------------------------------------------------------------
    def poll(self, handle: Handle) -> Observation:
        import docker

        try:
            attrs = self.client(handle["host"]).api.inspect_container(handle["container_id"])
        except docker.errors.NotFound:
            return Observation("dead")  # removed from outside: the runner is gone
        except (docker.errors.DockerException, OSError, ExecutorUnavailableError):
            return Observation("unknown")  # the engine is unreachable from here now
        return _observe(attrs.get("State") or {}, handle)

    def poll_many(self, handles: Iterable[Handle]) -> list[Observation]:
        """One `docker ps -a` per engine for all of its jobs, instead of one inspect per job."""
        import docker

        handles = list(handles)
        states: dict[str, dict[str, dict[str, Any]] | None] = {}
        for host in {str(h.get("host")) for h in handles}:
            try:
                listing = self.client(host).api.containers(all=True, filters={"label": LABEL})
                states[host] = {c["Id"]: c for c in listing}
            except (docker.errors.DockerException, OSError, ExecutorUnavailableError):
                states[host] = None
        seen: list[Observation] = []
        for handle in handles:
            listed = states.get(str(handle.get("host")))
            if listed is None:
                seen.append(Observation("unknown"))
            elif handle.get("container_id") not in listed:
                seen.append(Observation("dead"))
            elif listed[handle["container_id"]].get("State") in ("created", "running", "restarting", "paused"):
                seen.append(Observation("alive"))
            else:
                seen.append(self.poll(handle))  # exited: inspect says whether it was an OOM kill
        return seen

    # -- cancel / cleanup / describe -----------------------------------------------------------------
    def cancel(self, handle: Handle) -> None:
        """`docker stop`: SIGTERM to the runner (it stops the command and records CANCELLED), SIGKILL from
        the engine after the runner's grace period plus the time it needs to finish."""
        import docker

        try:
            container = self.client(handle["host"]).containers.get(handle["container_id"])
            container.stop(timeout=int(handle.get("stop_timeout") or _runner_grace() + FINISH_MARGIN_SECONDS))
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            raise ExecutorUnavailableError(f"cannot stop container {handle['container_id'][:12]}: {exc}") from None

    def cleanup(self, handle: Handle) -> None:
        import docker

        if handle.get("keep") or self.settings.keep:
            return
        try:
            self.client(handle["host"]).api.remove_container(handle["container_id"], force=True)
        except (docker.errors.NotFound, docker.errors.APIError, ExecutorUnavailableError, OSError):
            pass  # gone already, or being removed; an unreachable engine keeps it until the next look

    def describe(self, handle: Handle) -> str:
        if not handle:
            return "docker (not started)"
        where = handle.get("host")
        if handle.get("engine_host") and handle["engine_host"] not in str(where):
            where = f"{where} ({handle['engine_host']})"
        return f"docker container {str(handle.get('container_id'))[:12]} image {handle.get('image')} on {where}"


def _observe(state: dict[str, Any], handle: Handle) -> Observation:
    status = state.get("Status")
    if status in ("created", "running", "restarting", "paused"):
        return Observation("alive")
    code = state.get("ExitCode")
    if state.get("OOMKilled"):
        limit = handle.get("memory_bytes")
        return Observation(
            "dead", "killed: out of memory" + (f" (limit {human_limit(int(limit))})" if limit else ""), code
        )
    return Observation("dead", None, code)


def _runner_grace() -> float:
    from jobsub.errors import UsageError

    try:
        return float(os.environ.get("JOBSUB_CANCEL_GRACE_SECONDS", "10"))
    except ValueError:
        raise UsageError("JOBSUB_CANCEL_GRACE_SECONDS must be a number of seconds") from None


def _engine_name(client: docker.DockerClient, host: str) -> str:
    """The engine machine's name (docker info), or this machine's for a local socket when info fails."""
    try:
        return str(client.info().get("Name") or "")
    except Exception:
        return socket.gethostname() if _is_local_engine(host) else ""


def _no_engine(host: str) -> str:
    return f"no Docker engine at {host}: start dockerd or set DOCKER_HOST (or `docker.host` in the profile)"


def _one_line(exc: BaseException) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return " ".join(str(text).split())[:300]
