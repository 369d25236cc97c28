"""The Docker executor: the jobsub runtime as a container on a Docker Engine (or Podman's Docker-compatible API).

How the executor interface maps onto the engine (docs/architecture.md has the why):

- ``check``: ping the engine, look the image up, look for the NVIDIA runtime when GPUs are asked for, and
  refuse resources the engine would refuse (memory under its minimum, more CPUs than it has); each is one
  line (exit 2) before anything is uploaded or recorded.
- ``submit``: create the container of the job's image with ``python -m jobsub.runtime JOB_URI --work-dir
  DIR`` as its command, the job's resources as limits, the job id as a label, ``no-new-privileges``, no
  capabilities and a pids limit; start it and write the storage credentials and ``--secret-env`` values as
  one JSON line on its standard input (executors/secret_handoff.py): they are never in its config, so
  `docker inspect` does not show them. A container that fails to start is removed at once; every other
  one is created with AutoRemove, so the engine removes it when the runner exits, whoever looks or not
  (the runner writes the exit code and an out-of-memory reason into the record itself first).
  On a local store the runner stays on this machine and only the command runs in a container, with only
  the job's own folders mounted and never as root (executors/docker_local.py has how and why). On an S3
  store the container never runs as root either: an image whose user is root runs as an unprivileged uid
  of its own per job. A loopback S3
  endpoint is reached through the host's network, and `jobsub status` says so.
- ``poll``: the container's state; an OOM kill becomes the reason ("killed: out of memory (limit 2 GiB)").
- ``cancel``: ``docker stop`` with the runtime's grace period plus the time it needs to write its final
  state, then SIGKILL (the engine escalates).
- ``cleanup``: removes the container once the record is final (``keep`` set: it is kept for debugging).

The handle is read back from the bucket, where anyone who can write the jobs prefix could rewrite it: so
before poll, cancel or cleanup act on it, the handle's engine must be this profile's engine and the
container must carry this job's ``jobsub.job-id`` label (docs/reliability.md, "What the executors promise").
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from jobsub.config import strip_userinfo
from jobsub.errors import ConfigError, ExecutorUnavailableError, JobError, JobsubError
from jobsub.executors import docker_local, secret_handoff
from jobsub.executors.base import BaseExecutor, Capabilities, LaunchRequest, Observation, RunnerPlace
from jobsub.executors.docker_handle import HOST_RUNNER, MAX_STOP_TIMEOUT, DockerHandle
from jobsub.executors.docker_settings import DockerSettings
from jobsub.units import human_limit, parse_size

if TYPE_CHECKING:
    import docker
    from jobsub.executors.local import LocalExecutor

log = logging.getLogger(__name__)

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
#: processes and threads a job's container may hold (a fork bomb stops here; torch data loaders fit)
PIDS_LIMIT = 8192
#: Docker Engine refuses a memory limit under 6 MiB (moby's linuxMinMemory)
MIN_MEMORY_BYTES = 6 * 1024 * 1024
#: uids (and gids) of the per-job users of containers that would otherwise run as root
JOB_UID_BASE, JOB_UID_SPAN = 2_000_000, 1_000_000
#: seconds for which the submit reuses what check just learnt (the engine answered, the image's user)
CHECK_REUSE_SECONDS = 10.0
_CONTAINER_ID_RE = re.compile(r"[0-9a-f]{12,64}")


def check_host(host: str) -> str:
    """Refuse an engine address with a password in it (it would be stored and shown); ssh://user@host is fine."""
    netloc = urlparse(host).netloc if "://" in host else ""
    if "@" in netloc and ":" in netloc.rsplit("@", 1)[0]:
        raise ConfigError(
            f"docker host {strip_userinfo(host)} must not contain user:password@; use ssh://user@host with an "
            "SSH key, or the engine's TLS certificates (DOCKER_CERT_PATH)"
        )
    return host


def job_uid(job_id: str) -> int:
    """An unprivileged uid of this job alone (no two jobs share one but by a 1-in-a-million chance)."""
    return JOB_UID_BASE + int(hashlib.sha256(job_id.encode()).hexdigest()[:12], 16) % JOB_UID_SPAN


def resolve_host(configured: str | None = None) -> str:
    """The engine address as the docker CLI finds it: the profile's host, DOCKER_HOST, the DOCKER_CONTEXT or
    current docker context (~/.docker/config.json), else the default socket."""
    if configured:
        return check_host(configured)
    if os.environ.get("DOCKER_HOST"):
        return check_host(os.environ["DOCKER_HOST"])
    try:
        from docker.context import ContextAPI

        context = ContextAPI.get_context(os.environ.get("DOCKER_CONTEXT") or None)
        if context is not None and context.Host:
            return check_host(str(context.Host))
    except JobsubError:
        raise
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


class DockerExecutor(BaseExecutor[DockerHandle]):
    kind = "docker"
    shares_client_environment = False
    capabilities = Capabilities(memory_limit=True, gpus=True, secret_env=True)
    handle_model = DockerHandle
    settings_model = DockerSettings

    def __init__(self, profile: Any) -> None:
        super().__init__(profile)
        self.settings = profile.section(self.kind, DockerSettings)
        self.host = resolve_host(self.settings.host)
        self._clients: dict[str, docker.DockerClient] = {}
        # what check learnt, reused by the submit right after it (not asked twice), for CHECK_REUSE_SECONDS:
        # a long-lived process (the web view, the API) asks again later
        self._pinged: dict[str, float] = {}  # engine -> when it answered
        self._image_users: dict[str, tuple[float, str]] = {}  # image -> (when, its Config.User)

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
        if time.monotonic() - self._pinged.get(host, -CHECK_REUSE_SECONDS) < CHECK_REUSE_SECONDS:
            return client
        try:
            client.ping()
        except Exception:
            raise ExecutorUnavailableError(_no_engine(host)) from None
        self._pinged[host] = time.monotonic()
        return client

    def image_for(self, request: LaunchRequest) -> str:
        return request.image or self.settings.image or DEFAULT_IMAGE

    # -- check ---------------------------------------------------------------------------------------
    def check(self, request: LaunchRequest) -> None:
        import docker

        endpoint = request.profile.effective_endpoint() if request.profile.storage != "local" else None
        if self.settings.network == "host" and not _is_loopback(endpoint):
            where = f"this profile's is {strip_userinfo(endpoint)}" if endpoint else "this profile has none"
            raise ExecutorUnavailableError(
                "docker.network=host gives a job the engine host's whole network; it is only for a loopback "
                f"storage endpoint ({where}): unset it (`jobsub profile add ... --docker-network bridge`)"
            )
        client = self.ping()
        image = self.image_for(request)
        try:
            found = client.images.get(image)
            self._image_users[image] = (time.monotonic(), str(found.attrs.get("Config", {}).get("User") or ""))
        except docker.errors.ImageNotFound:
            raise ExecutorUnavailableError(
                f"image {image} is not on the engine at {self.host}: build it with "
                f"`jobsub image build --tag {image}` or set image: in the spec (or `docker.image` in the profile)"
            ) from None
        if request.memory_bytes is not None and request.memory_bytes < MIN_MEMORY_BYTES:
            raise ExecutorUnavailableError(
                f"resources.memory={human_limit(request.memory_bytes)} is below the Docker engine's minimum of "
                f"{human_limit(MIN_MEMORY_BYTES)}: ask for more memory"
            )
        info = client.info() if request.gpus > 0 or request.cpus else {}
        cpus = int(info.get("NCPU") or 0)
        if request.cpus and cpus and request.cpus > cpus:
            raise ExecutorUnavailableError(
                f"resources.cpus={request.cpus:g} but the Docker engine at {self.host} has {cpus} CPUs: "
                f"ask for at most {cpus}"
            )
        if request.gpus > 0:
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
    def _confined(self, request: LaunchRequest, network: str | None) -> dict[str, Any]:
        """What every container jobsub creates gets, on either store: its labels, no capabilities, no new
        privileges, a pids limit, /dev/shm, the network asked for and the job's CPUs and memory (no swap:
        over the limit is an OOM kill)."""
        options: dict[str, Any] = {
            "labels": {LABEL: request.job_id, "jobsub.job-uri": request.job_uri},
            "shm_size": parse_size(self.settings.shm_size or DEFAULT_SHM),
            "security_opt": ["no-new-privileges"],
            "cap_drop": ["ALL"],
            "pids_limit": PIDS_LIMIT,
        }
        if network:
            options["network_mode" if network in ("host", "none", "bridge") else "network"] = network
        if request.cpus:
            options["nano_cpus"] = int(request.cpus * 1e9)
        if request.memory_bytes:
            options["mem_limit"] = request.memory_bytes
            options["memswap_limit"] = request.memory_bytes
        return options

    def run_options(self, request: LaunchRequest, image_user: str = "") -> dict[str, Any]:
        """The keyword arguments of `containers.create` for this request. They hold no secret: the secrets go
        over the container's standard input after the start (see `submit`)."""
        import docker

        profile = request.profile
        network = self.settings.network
        if network is None and _is_loopback(profile.effective_endpoint()):
            network = "host"  # a loopback endpoint is the engine host's loopback: share its network
        options: dict[str, Any] = {
            **self._confined(request, network),
            "name": f"jobsub-{request.job_id}",
            "detach": True,
            "stdin_open": bool(request.secret_env),
            "working_dir": "/tmp",
            "auto_remove": not self.settings.keep,
        }
        env = request.runtime_env(include_secrets=False)
        if request.secret_env:
            env[secret_handoff.FLAG] = secret_handoff.STDIN
        if image_user.split(":")[0] in ("", "root", "0"):
            uid = job_uid(request.job_id)  # never root: a uid of this job alone, owning nothing on the host
            options["user"] = f"{uid}:{uid}"
            env.setdefault("HOME", "/tmp")
        if request.gpus:
            options["device_requests"] = [docker.types.DeviceRequest(count=request.gpus, capabilities=[["gpu"]])]
        options["environment"] = env
        options["entrypoint"] = request.runtime_argv(f"{WORK_ROOT}/{request.job_id}")
        return options

    def local_store_config(self, request: LaunchRequest) -> dict[str, Any]:
        """What the shim of a local-store job (executors/docker_local.py) creates its container with: never
        root (a uid of this job alone when the submitter is root, handed the job's folders), no capabilities,
        no new privileges, a pids limit, the job's resources; no secret (those go over stdin)."""
        if os.getuid() == 0:
            uid = gid = job_uid(request.job_id)
        else:
            uid, gid = os.getuid(), os.getgid()
        options: dict[str, Any] = {
            **self._confined(request, self.settings.network),
            "auto_remove": False,  # the shim removes it after reading OOMKilled (unless keep); cleanup if it died
            "user": f"{uid}:{gid}",
        }
        return {
            "host": self.host,
            "image": self.image_for(request),
            "uid": uid,
            "gid": gid,
            "hand_over": os.getuid() == 0,
            "keep": bool(self.settings.keep),
            "gpus": request.gpus,
            "stop_after": max(0.5, _runner_grace() - 2.0),
            "options": options,
        }

    def starts_before_record(self, request: LaunchRequest) -> bool:
        """On an S3 store the container is created and started beside the submit's record writes
        (jobs/service.py): the engine's start and the runtime's own start overlap them, and the runtime
        waits for its record (runtime/runner.py, wait_for_record). A local-store job's runner (a process
        on this machine: docker_local.py) is started the same way."""
        return True

    def starts_before_uploads(self, request: LaunchRequest) -> bool:
        """The container is created and started right after `check`, before the code archive's upload, for a
        submit that uploads no input (jobs/service.py): the engine's start and the runtime's interpreter,
        imports and S3 client then overlap the code upload and the record writes (docs/performance.md,
        "Start latency", fifth pass). The service stops it and starts another after the record when that
        upload outlasts half the runtime's record wait."""
        return True

    def abandon(self, handle: DockerHandle) -> None:
        """The submit failed after the container started and before the record was written: remove the
        container at once (SIGKILL; `keep` does not apply: nothing of the job ran). Only a container this
        submit just created is named here, so no ownership check is needed."""
        import docker

        if handle.mode == HOST_RUNNER:
            self._local().abandon(handle.runner())  # its containers start later, from the runner
            return
        if not handle.container_id:
            return
        api = self.client(handle.host).api
        try:
            api.remove_container(handle.container_id, force=True)
        except docker.errors.NotFound:
            pass  # gone already (AutoRemove after the runner exited)
        except docker.errors.APIError as exc:
            if exc.status_code != 409:
                raise
            # "removal already in progress": the runner gave up and AutoRemove is taking it; done once it is gone
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    api.inspect_container(handle.container_id)
                except docker.errors.NotFound:
                    return
                time.sleep(0.1)
            raise

    def submit(self, request: LaunchRequest) -> DockerHandle:
        """Create, attach to stdin, start, hand the secrets over, close. Any failure on the way removes the
        container (a start refused by the engine or an image without python would otherwise stay)."""
        import docker

        if request.profile.storage == "local":  # the runner on this machine, only the command in a container
            self.ping()
            return docker_local.submit(request, self.local_store_config(request))
        client = self.ping()
        image = self.image_for(request)
        secrets = secret_handoff.encode(dict(request.secret_env)) if request.secret_env else b""
        when, image_user = self._image_users.pop(image, (-CHECK_REUSE_SECONDS, ""))
        if time.monotonic() - when >= CHECK_REUSE_SECONDS:  # else looked up by check a moment ago
            try:
                image_user = str(client.images.get(image).attrs.get("Config", {}).get("User") or "")
            except docker.errors.DockerException:
                image_user = ""
        options = self.run_options(request, image_user)
        options.pop("detach")
        # the engine's name (docker info, a slow call) only describes the job: asked beside create + start
        engine_name: list[str] = []
        asking = threading.Thread(target=lambda: engine_name.append(_engine_name(client, self.host)), daemon=True)
        asking.start()
        container = None
        try:
            container = client.containers.create(image, **options)
            stream = container.attach_socket(params={"stdin": 1, "stream": 1}) if secrets else None
            try:
                container.start()
                if stream is not None:
                    _send(stream, secrets)
            finally:
                if stream is not None:
                    _close(stream)
        except (docker.errors.DockerException, OSError) as exc:
            if container is not None:
                _remove(client, container.id)
            raise ExecutorUnavailableError(f"docker run {image} failed: {_one_line(exc)}") from None
        except BaseException:
            if container is not None:
                _remove(client, container.id)
            raise
        return DockerHandle(
            kind="docker",
            host=self.host,
            engine_host=_joined(asking, engine_name),
            container_id=container.id,
            image=image,
            memory_bytes=request.memory_bytes,
            stop_timeout=min(int(_runner_grace() + FINISH_MARGIN_SECONDS), MAX_STOP_TIMEOUT),
            keep=bool(self.settings.keep),
            network=options.get("network_mode") or options.get("network") or "",
            user=options.get("user") or image_user,
        )

    # -- the handle is data from the bucket ----------------------------------------------------------
    def foreign(self, handle: DockerHandle, attrs: dict[str, Any] | None = None) -> str | None:
        """Why this handle must not be acted on, or None. The engine must be this profile's; the container
        (when inspected) must carry the job id of the record the handle was read from."""
        host, container_id = handle.host, handle.container_id or ""
        if host != self.host:
            named = strip_userinfo(host)[:200]
            return f"its executor record names the docker engine {named}, not this profile's {self.host}"
        if not _CONTAINER_ID_RE.fullmatch(container_id):
            return f"its executor record names {container_id[:80]!r}, which is not a container id"
        if attrs is not None:
            labels = (attrs.get("Config") or {}).get("Labels") or {}
            expected = handle.record_job_id
            if LABEL not in labels or (expected is not None and labels[LABEL] != expected):
                return (
                    f"container {container_id[:12]} is not this job's (its {LABEL} label is "
                    f"{str(labels.get(LABEL, 'missing'))[:80]!r}): the executor record was rewritten"
                )
        return None

    def verify_handle(self, handle: DockerHandle, job_id: str) -> None:
        """A host-runner handle (local store) names a pid: act on it only when it is this job's runner on this
        profile's engine (the local executor's check). A container handle is checked where it is used."""
        if handle.mode != HOST_RUNNER:
            return
        if handle.host != self.host:
            named = strip_userinfo(handle.host)[:200]
            raise JobError(
                f"job {job_id}: its executor record names the docker engine {named}, not this profile's "
                f"{self.host}: not acting on it (the record was rewritten?)"
            )
        self._local().verify_handle(handle.runner(), job_id)

    def _local(self) -> LocalExecutor:
        from jobsub.executors.local import LocalExecutor

        return LocalExecutor(self.profile)

    def _inspect(self, handle: DockerHandle) -> dict[str, Any] | None:
        """The container's attributes once the handle is known to be ours; None when it is gone."""
        import docker

        reason = self.foreign(handle)
        if reason:
            raise _Foreign(reason)
        try:
            attrs = self.client(handle.host).api.inspect_container(handle.container_id)
        except docker.errors.NotFound:
            return None
        reason = self.foreign(handle, attrs)
        if reason:
            raise _Foreign(reason)
        return dict(attrs)

    # -- poll ----------------------------------------------------------------------------------------
    def poll(self, handle: DockerHandle) -> Observation:
        import docker

        if handle.mode == HOST_RUNNER:
            return self._local().poll(handle.runner())
        try:
            attrs = self._inspect(handle)
        except _Foreign as exc:
            return Observation("unknown", f"not looking at it: {exc}")
        except (docker.errors.DockerException, OSError, ExecutorUnavailableError):
            return Observation("unknown")  # the engine is unreachable from here now
        if attrs is None:
            return Observation("dead")  # removed (AutoRemove after the runner exited, or from outside)
        return _observe(attrs.get("State") or {}, handle)

    def poll_many(self, handles: Iterable[DockerHandle]) -> list[Observation]:
        """One `docker ps -a` per engine for all of its jobs, instead of one inspect per job."""
        import docker

        handles = list(handles)
        if any(h.mode == HOST_RUNNER for h in handles):
            return [self.poll(h) for h in handles]  # host runners are pids: no engine listing helps
        states: dict[str, dict[str, dict[str, Any]] | None] = {}
        for host in {h.host for h in handles if not self.foreign(h)}:
            try:
                listing = self.client(host).api.containers(all=True, filters={"label": LABEL})
                states[host] = {c["Id"]: c for c in listing}
            except (docker.errors.DockerException, OSError, ExecutorUnavailableError):
                states[host] = None
        seen: list[Observation] = []
        for handle in handles:
            reason = self.foreign(handle)
            listed = states.get(handle.host)
            entry = listed.get(handle.container_id or "") if listed else None
            if reason:
                seen.append(Observation("unknown", f"not looking at it: {reason}"))
            elif listed is None:
                seen.append(Observation("unknown"))
            elif entry is None:
                seen.append(Observation("dead"))
            elif handle.record_job_id is not None and (entry.get("Labels") or {}).get(LABEL) != handle.record_job_id:
                seen.append(self.poll(handle))  # inspect says why it is not this job's
            elif entry.get("State") in ("created", "running", "restarting", "paused"):
                seen.append(Observation("alive"))
            else:
                seen.append(self.poll(handle))  # exited: inspect says whether it was an OOM kill
        return seen

    # -- cancel / cleanup / describe -----------------------------------------------------------------
    def cancel(self, handle: DockerHandle) -> None:
        """`docker stop`: SIGTERM to the runner (it stops the command and records CANCELLED), SIGKILL from
        the engine after the runner's grace period plus the time it needs to finish. A handle that is not
        this job's (another engine, another container) is refused with one line and nothing is stopped."""
        import docker

        if handle.mode == HOST_RUNNER:  # SIGTERM to the runner: it stops the container
            self._local().cancel(handle.runner())
            return
        container_id = handle.container_id or ""
        try:
            if self._inspect(handle) is None:
                return
            container = self.client(handle.host).containers.get(container_id)
            container.stop(timeout=int(handle.stop_timeout or _runner_grace() + FINISH_MARGIN_SECONDS))
        except _Foreign as exc:
            raise ExecutorUnavailableError(f"not stopping a container: {exc}") from None
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            raise ExecutorUnavailableError(f"cannot stop container {container_id[:12]}: {exc}") from None

    def kill_leftovers(self, handle: DockerHandle | None, place: RunnerPlace, job_id: str) -> str:
        """A LOST job in a container: every process of it ran in that container (the runner recorded the
        container's hostname as its host), so stopping it is the whole answer; the default would send
        the user to a host that is a container id. A host runner (local store) is the default's case."""
        if handle is None or handle.mode == HOST_RUNNER:
            return super().kill_leftovers(handle, place, job_id)
        self.cancel(handle)  # refuses a foreign container with one line; a container already gone is fine
        container = str(handle.container_id)[:12]
        return f"its container {container} on {strip_userinfo(handle.host)} is stopped: nothing of it is left running"

    def cleanup(self, handle: DockerHandle) -> None:
        import docker

        if handle.keep or self.settings.keep:
            return
        if handle.mode == HOST_RUNNER:
            self._remove_left_over(handle)
            return
        try:
            if self._inspect(handle) is None:
                return
            self.client(handle.host).api.remove_container(handle.container_id, force=True)
        except _Foreign as exc:
            log.warning("not removing a container: %s", exc)
        except (docker.errors.NotFound, docker.errors.APIError, ExecutorUnavailableError, OSError):
            pass  # gone already, or being removed; an unreachable engine keeps it until the next look

    def _remove_left_over(self, handle: DockerHandle) -> None:
        """A host-runner job's containers carry its job-id label; AutoRemove usually took them already. Only
        this profile's engine is asked, only for the job id of the record the handle was read from."""
        job_id = handle.record_job_id
        if not job_id or handle.host != self.host:
            return
        try:
            client = self.client(self.host)
            for entry in client.api.containers(all=True, filters={"label": f"{LABEL}={job_id}"}):
                client.api.remove_container(entry["Id"], force=True)
        except Exception:  # gone already, or an unreachable engine: the next look tries again
            pass

    def describe(self, handle: DockerHandle) -> str:
        if handle.mode == HOST_RUNNER:
            return (
                f"docker image {handle.image} on {handle.host} as uid {handle.user}, "
                f"runner pid {handle.pid} on {handle.runner_host} (local store: only the job's "
                "own folders are mounted)"
            )
        where = handle.host
        if handle.engine_host and handle.engine_host not in where:
            where = f"{where} ({handle.engine_host})"
        line = f"docker container {str(handle.container_id)[:12]} image {handle.image} on {where}"
        if handle.network == "host":
            line += ", host network (its endpoint is on the engine's loopback)"
        return line


class _Foreign(Exception):
    """A handle read from the bucket that names something that is not this job's container."""


def _observe(state: dict[str, Any], handle: DockerHandle) -> Observation:
    status = state.get("Status")
    if status in ("created", "running", "restarting", "paused"):
        return Observation("alive")
    code = state.get("ExitCode")
    if state.get("OOMKilled"):
        limit = handle.memory_bytes
        return Observation("dead", "killed: out of memory" + (f" (limit {human_limit(limit)})" if limit else ""), code)
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


def _joined(thread: threading.Thread, result: list[str]) -> str:
    thread.join()
    return result[0] if result else ""


def _no_engine(host: str) -> str:
    return f"no Docker engine at {host}: start dockerd or set DOCKER_HOST (or `docker.host` in the profile)"


def _send(stream: Any, data: bytes) -> None:
    raw = getattr(stream, "_sock", stream)
    raw.sendall(data)


def _close(stream: Any) -> None:
    for thing in (getattr(stream, "_sock", None), stream):
        try:
            if thing is not None:
                thing.close()
        except OSError:
            pass


def _remove(client: docker.DockerClient, container_id: str) -> None:
    try:
        client.api.remove_container(container_id, force=True)
    except Exception as exc:  # the engine went away too: say so, the original error is what matters
        log.warning("could not remove container %s after its failed start: %s", container_id[:12], _one_line(exc))


def _one_line(exc: BaseException) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return " ".join(str(text).split())[:300]
