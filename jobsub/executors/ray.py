"""The Ray executor: the jobsub runtime as a Ray job, through the dashboard's Jobs REST API.

Why REST and not Ray's SDK: the client must not need Ray (hundreds of MB, and its version would have to
match the cluster's). Four calls do everything, with ``requests``:

    GET  /api/version                 check(): the address answers and has the Jobs API
    GET|PUT /api/packages/gcs/NAME    ship this jobsub as a py_modules zip (once per content hash)
    POST /api/jobs/                   submit: entrypoint = the runtime, resources, runtime_env
    GET  /api/jobs/ID, GET /api/jobs/ poll one job, or all of them for `jobsub jobs`
    POST /api/jobs/ID/stop            cancel (SIGTERM to the entrypoint's process tree, SIGKILL later)

    DELETE /api/jobs/ID               cleanup once the record is final: the job info leaves the cluster

No credential goes into ``runtime_env``: Ray writes a job's runtime_env into its session logs
(runtime_env_agent.log, kept after the cluster stops) and shows it in the job info. The secrets travel as a
one-time secret instead (executors/secret_drop.py, executors/secret_fetch.py): a one-time-pad ciphertext in
the store, fetched by the runner through a short-lived presigned URL and deleted after reading.

A handle read from the store is data: it is acted on only when it names this profile's dashboard (the
token in ray.headers_env is never sent anywhere else) and this job's submission id.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import shlex
import time
from collections.abc import Iterable
from typing import Any, Literal
from urllib.parse import urlsplit

import requests

from jobsub.config import Profile, strip_userinfo
from jobsub.errors import ExecutorUnavailableError, JobError, JobsubError
from jobsub.executors.base import BaseExecutor, BaseHandle, Capabilities, LaunchRequest, Observation
from jobsub.executors.ray_package import jobsub_package
from jobsub.executors.ray_settings import RaySettings
from jobsub.executors.secret_drop import TICKET_ENV, discard, seal
from jobsub.redact import redact
from jobsub.uri import ObjectURI

log = logging.getLogger(__name__)

#: connect / read timeouts: a dashboard that does not answer in this time is treated as unreachable
_TIMEOUT = (5.0, 30.0)
#: must match the runtime's default (jobsub/runtime/runner.py): Ray's SIGKILL must come after the runtime's
_DEFAULT_GRACE_SECONDS = 10.0
_STOP_MARGIN_SECONDS = 10.0
_FINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
#: exit codes of a shell whose runner was killed by a signal (128+N): the runner vanished, it did not fail
_SIGNALLED = 128


class _Unreachable(ExecutorUnavailableError):
    """The dashboard did not answer: a poll says 'unknown', a cancel leaves it to the record's marker."""


class _Refused(ExecutorUnavailableError):
    """HTTP 401/403: a credentials problem the user must fix, whatever the call was."""


#: seconds cleanup waits for the Ray job to end after the runner wrote its final state (DELETE needs that)
_DELETE_WAIT_SECONDS = 15.0


class _Untrusted(ExecutorUnavailableError):
    """A job record names a Ray address or submission that is not this profile's / this job's."""


def address_problem(address: str) -> str | None:
    """Why `address` cannot be used as the Ray dashboard's address (None: fine). Credentials in the address
    would end up in job records and logs: the token belongs in ray.headers_env."""
    parts = urlsplit(address)
    if parts.username is not None or parts.password is not None:
        return (
            "a Ray address must not hold credentials (user:password@): put the token in an environment "
            "variable and name it in ray.headers_env (e.g. Authorization -> RAY_TOKEN_HEADER)"
        )
    return None


def env_address(value: str) -> str:
    """RAY_ADDRESS as Ray's job CLI reads it: only an http(s):// dashboard address names the Jobs API; the
    other forms (auto, host:6379, ray://) name the GCS or Ray Client, which jobsub cannot use."""
    value = value.strip().rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise ExecutorUnavailableError(
            f"RAY_ADDRESS={value!r} is not a Ray dashboard address: jobsub needs the dashboard's "
            "http://HEAD:8265 (set RAY_ADDRESS to it, or the profile's ray.address)"
        )
    problem = address_problem(value)
    if problem:
        raise ExecutorUnavailableError(f"RAY_ADDRESS: {problem}")
    return value


def _same_address(a: str, b: str) -> bool:
    """Scheme, host and port equal (a default port spelled out or not), case-insensitive host."""
    pa, pb = urlsplit(a.rstrip("/")), urlsplit(b.rstrip("/"))
    default = {"http": 80, "https": 443}
    try:
        ports = (pa.port or default.get(pa.scheme), pb.port or default.get(pb.scheme))
    except ValueError:
        return False
    return (
        pa.scheme == pb.scheme
        and (pa.hostname or "") == (pb.hostname or "")
        and ports[0] == ports[1]
        and pa.path.rstrip("/") == pb.path.rstrip("/")
        and pa.username is None
        and pb.username is None
    )


def _printable(address: str) -> str:
    """An address from a record, fit for a message: one short line, never its user:password@."""
    try:
        address = strip_userinfo(address)
    except ValueError:
        address = address.rsplit("@", 1)[-1]
    return _one_line(address, 120)


def submission_id(job_id: str) -> str:
    """The Ray submission id of a jobsub job: the job id, recognisable on the dashboard."""
    return f"jobsub-{job_id}"


def _entrypoint(request: LaunchRequest) -> str:
    """A POSIX shell line (Ray runs entrypoints with /bin/sh): the runtime in a fresh work folder that is
    removed when it ends. Ray starts every job in the same folder (where `ray start` ran), so the work
    folder is made per job; the TERM trap lets the EXIT trap run when Ray stops the job."""
    work = shlex.quote(f"jobsub-{request.job_id}.XXXXXX")
    runtime = shlex.join(["python", "-m", "jobsub.runtime", request.job_uri, "--work-dir"])
    return (
        f'D=$(mktemp -d "${{TMPDIR:-/tmp}}"/{work}) || exit 1; '
        "trap 'rm -rf \"$D\"' EXIT; trap 'exit 143' TERM INT; "
        f'{runtime} "$D"'
    )


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _failure_reason(info: dict[str, Any]) -> str:
    """One line from Ray's message about a failed job: its first line (what Ray saw) and the last line of
    the logs Ray quotes (usually the exception that stopped the runner), redacted."""
    lines = [line.strip() for line in str(info.get("message") or "").splitlines() if line.strip()]
    head = lines[0].split(", last available logs")[0] if lines else f"status {info.get('status')}"
    tail = lines[-1] if len(lines) > 1 else ""
    return redact(_one_line(f"ray job failed: {head}" + (f": {tail}" if tail else "")))


def observe(info: dict[str, Any] | None) -> Observation:
    """What a Ray job's info (GET /api/jobs/ID) says about the runner; None = the cluster has no such job."""
    if info is None:
        return Observation("dead")  # the cluster forgot it (restarted): the runner is gone -> LOST
    status = str(info.get("status") or "")
    message = str(info.get("message") or "")
    if status == "PENDING":
        if "resources" in message:
            return Observation("alive", "queued: waiting for resources (Ray PENDING)")
        if "runtime env" in message:
            return Observation("alive", "queued: Ray is setting up the runtime environment")
        return Observation("alive", "queued: " + (_one_line(message, 120) if message else "Ray PENDING"))
    if status not in _FINAL:
        return Observation("alive")
    code = info.get("driver_exit_code")
    if status == "STOPPED":
        return Observation("dead", "stopped on the Ray cluster (ray job stop) before the runner wrote a final state")
    if status == "FAILED" and (code is None or 0 < int(code) < _SIGNALLED):
        # the runner never started (runtime_env setup, an import error, no such store): Ray knows why
        return Observation("dead", _failure_reason(info), int(code) if code is not None else None)
    return Observation("dead")  # killed by a signal, or exited 0 without a final state: LOST


class RayHandle(BaseHandle):
    """A Ray job: the dashboard it was submitted to and its submission id (both checked before any request)."""

    kind: Literal["ray"]
    address: str
    submission_id: str
    #: where the runner's own output is when it dies before the job log starts (Ray keeps it)
    log: str | None = None
    #: the one-time secret object, deleted by the runner after reading; by cleanup at the latest
    secret_uri: str | None = None

    def runner_log(self) -> str | None:
        return self.log


class RayExecutor(BaseExecutor[RayHandle]):
    kind = "ray"
    shares_client_environment = False
    capabilities = Capabilities(gpus=True, secret_env=True)  # memory is a scheduling reservation, not a limit
    handle_model = RayHandle
    settings_model = RaySettings

    def __init__(self, profile: Profile) -> None:
        super().__init__(profile)
        self.settings = profile.section(self.kind, RaySettings)
        self._http = requests.Session()
        self._uploaded: dict[str, str] = {}  # address -> package URI known to be on that cluster

    # -- HTTP --------------------------------------------------------------------------------------------
    def _configured(self) -> str:
        """The dashboard this profile talks to: ray.address, else an http(s) RAY_ADDRESS (as `ray job` reads it)."""
        address = self.settings.address
        if address:
            problem = address_problem(address)
            if problem:
                raise ExecutorUnavailableError(f"ray.address: {problem}")
            return str(address).rstrip("/")
        from_env = os.environ.get("RAY_ADDRESS", "").strip()
        if from_env:
            return env_address(from_env)
        raise ExecutorUnavailableError(
            "the profile has no Ray address: jobsub profile add NAME --executor ray --ray-address http://HEAD:8265 "
            "(or set RAY_ADDRESS=http://HEAD:8265)"
        )

    def _address(self, handle: RayHandle | None = None) -> str:
        """The address to call: the profile's. A handle (read from the store, so anyone who can write the
        jobs prefix may have written it) must name that same dashboard, or nothing is sent anywhere."""
        configured = self._configured()
        named = handle.address if handle is not None else None
        if named is not None and not _same_address(named, configured):
            raise _Untrusted(
                f"the job record names the Ray dashboard {_printable(named)}, not this profile's "
                f"{configured}: not contacting it (use the profile the job was submitted with, or the record was "
                "rewritten)"
            )
        return configured

    def verify_handle(self, handle: RayHandle, job_id: str) -> None:
        """Refuse a handle that is not this job's on this profile's cluster (before any request is made)."""
        self._address(handle)
        sid = handle.submission_id
        if sid != submission_id(job_id):
            raise _Untrusted(
                f"the job record names the Ray submission {redact(_one_line(sid, 80))}, not "
                f"{submission_id(job_id)}: not acting on it (the record was rewritten)"
            )

    def _headers(self) -> dict[str, str]:
        headers = {}
        for header, variable in self.settings.headers_env.items():
            value = os.environ.get(variable)
            if not value:
                raise ExecutorUnavailableError(
                    f"ray.headers_env: the {header} header comes from ${variable}, which is not set"
                )
            headers[header] = value
        return headers

    def _request(self, method: str, address: str, path: str, **kwargs: Any) -> requests.Response:
        """One call to the dashboard; unreachable and rejected become one line that says what to fix."""
        url = address + path
        if not _same_address(address, self._configured()):  # the token goes to this profile's dashboard only
            raise _Untrusted(f"not sending the Ray token to {address}: it is not this profile's Ray address")
        try:
            response = self._http.request(
                method, url, headers=self._headers(), timeout=_TIMEOUT, allow_redirects=False, **kwargs
            )
        except requests.RequestException as exc:
            reason = type(exc).__name__
            if isinstance(exc, requests.ConnectionError):
                reason = "connection refused or host unknown"
            elif isinstance(exc, requests.Timeout):
                reason = "no answer in time"
            raise _Unreachable(
                f"cannot reach the Ray dashboard at {address} ({reason}): is the cluster up and ray.address right?"
            ) from None
        if response.status_code in (401, 403):
            if self.settings.headers_env:
                fix = "check " + ", ".join(f"${v} ({h})" for h, v in self.settings.headers_env.items())
            else:
                fix = "set ray.headers_env, e.g. Authorization -> an environment variable holding 'Bearer TOKEN'"
            raise _Refused(f"the Ray dashboard at {address} refused jobsub (HTTP {response.status_code}): {fix}")
        return response

    @staticmethod
    def _no_jobs_api(address: str, path: str, response: requests.Response) -> ExecutorUnavailableError:
        return ExecutorUnavailableError(
            f"{address} has no Ray Jobs API (HTTP {response.status_code} on {path}): it is not a Ray dashboard, "
            "or Ray is older than 2.0 or installed without ray[default]; point ray.address at http://HEAD:8265"
        )

    # -- the interface -----------------------------------------------------------------------------------
    def check(self, request: LaunchRequest) -> None:
        if request.nodes > 1:
            raise ExecutorUnavailableError(
                f"resources.nodes={request.nodes}: the ray executor starts one runner; spread work across "
                "the cluster with Ray inside the job instead"
            )
        address = self._address()
        response = self._request("GET", address, "/api/version")
        try:
            version = response.json() if response.ok else None
        except ValueError:
            version = None
        if not isinstance(version, dict) or "ray_version" not in version:
            raise self._no_jobs_api(address, "/api/version", response)

    def _ensure_package(self, address: str) -> str:
        """Upload this jobsub to the cluster unless it is there already; its URI for py_modules.

        The GET also pins the package for a while on the cluster (Ray deletes unreferenced packages), so
        it survives until the job that names it is submitted."""
        name, data = jobsub_package()
        uri = f"gcs://{name}"
        if self._uploaded.get(address) == uri:
            return uri
        path = f"/api/packages/gcs/{name}"
        found = self._request("GET", address, path)
        if found.status_code == 404 and "does not exist" not in found.text:
            raise self._no_jobs_api(address, path, found)
        if found.status_code != 200:
            put = self._request("PUT", address, path, data=data)
            if not put.ok:
                reason = _one_line(put.text.strip().splitlines()[-1] if put.text.strip() else "")
                raise JobError(f"uploading jobsub to the Ray cluster failed (HTTP {put.status_code}): {reason}")
        self._uploaded[address] = uri
        return uri

    def runtime_env(self, request: LaunchRequest, package_uri: str | None, ticket: str | None = None) -> dict[str, Any]:
        """The job's runtime_env: the runner's non-secret variables and the one-time secret's ticket (never a
        credential: Ray logs runtime_env), this jobsub as a py_module, the profile's pip requirements, and
        Ray's stop grace after the runtime's."""
        profile = request.profile
        if profile.storage == "local" and not profile.root:
            # the runner must open the same folder, not its own user's default (a cluster on this machine
            # or a shared filesystem mounted at the same path)
            profile = profile.model_copy(update={"root": str(profile.local_root())})
        env = dataclasses.replace(request, profile=profile).runtime_env(include_secrets=False)
        env["JOBSUB_JOB_ID"] = request.job_id
        if ticket:
            env[TICKET_ENV] = ticket
        try:
            grace = float(request.env.get("JOBSUB_CANCEL_GRACE_SECONDS", _DEFAULT_GRACE_SECONDS))
        except ValueError:
            grace = _DEFAULT_GRACE_SECONDS
        env["RAY_JOB_STOP_WAIT_TIME_S"] = str(math.ceil(grace + _STOP_MARGIN_SECONDS))
        runtime_env: dict[str, Any] = {"env_vars": env}
        if package_uri:
            runtime_env["py_modules"] = [package_uri]
        if self.settings.pip:
            runtime_env["pip"] = list(self.settings.pip)
        return runtime_env

    def submit(self, request: LaunchRequest) -> RayHandle:
        address = self._address()
        package_uri = self._ensure_package(address) if self.settings.ship_jobsub else None
        ticket, secret = self._seal(request)
        body: dict[str, Any] = {
            "entrypoint": _entrypoint(request),
            "submission_id": submission_id(request.job_id),
            "runtime_env": self.runtime_env(request, package_uri, ticket),
            "metadata": {"jobsub_job_id": request.job_id, "jobsub_job_uri": request.job_uri},
        }
        if request.cpus:
            body["entrypoint_num_cpus"] = request.cpus
        if request.gpus:
            body["entrypoint_num_gpus"] = request.gpus
        if request.memory_bytes:
            body["entrypoint_memory"] = int(request.memory_bytes)
        try:
            response = self._request("POST", address, "/api/jobs/", json=body)
        except JobsubError:
            self._drop_secret(secret, request.job_id)
            raise
        if not response.ok:
            self._drop_secret(secret, request.job_id)
        if response.status_code == 404:
            raise self._no_jobs_api(address, "/api/jobs/", response)
        if not response.ok:
            # Ray answers a traceback; its last line is the reason (never the runtime_env: no secret)
            lines = [line for line in response.text.splitlines() if line.strip()]
            reason = _one_line(lines[-1] if lines else "")
            raise JobError(f"the Ray cluster refused the job (HTTP {response.status_code}): {reason}")
        sid = str(response.json().get("submission_id") or body["submission_id"])
        runner_log = f"{address}/api/jobs/{sid}/logs"
        if secret is None:  # the key is in the record only when there is a secret (as it always was)
            return RayHandle(kind="ray", address=address, submission_id=sid, log=runner_log)
        return RayHandle(kind="ray", address=address, submission_id=sid, log=runner_log, secret_uri=str(secret))

    def _seal(self, request: LaunchRequest) -> tuple[str | None, ObjectURI | None]:
        """The secrets as a one-time secret in the job's store: (ticket, object) or (None, None) if none."""
        if not request.secret_env:
            return None, None
        from jobsub.storage import open_store

        sealed = seal(open_store(self.profile), self.profile.jobs_uri, request.job_id, request.secret_env)
        return sealed.ticket, sealed.uri

    def _drop_secret(self, uri: object, job_id: str) -> None:
        if not uri:
            return
        from jobsub.storage import open_store

        discard(open_store(self.profile), self.profile.jobs_uri, uri, job_id)

    def cleanup(self, handle: RayHandle) -> None:
        """Once the record is final: delete the one-time secret if the runner never read it, and delete the
        Ray job (its info holds the entrypoint and runtime_env) once Ray has seen it end. Idempotent."""
        # only ever this job's one-time secret (record_job_id: the record the service read the handle from)
        self._drop_secret(handle.secret_uri, handle.record_job_id or "")
        if not handle.submission_id:
            return
        try:
            address = self._address(handle)
            path = f"/api/jobs/{handle.submission_id}"
            deadline = time.monotonic() + _DELETE_WAIT_SECONDS
            while True:
                info = self._job_info(handle)
                if info is None:
                    return  # already deleted (or forgotten by a restarted cluster)
                if str(info.get("status")) in _FINAL:
                    break
                if time.monotonic() > deadline:
                    log.warning("Ray job %s still %s; not deleted", handle.submission_id, info.get("status"))
                    return
                time.sleep(0.2)
            answer = self._request("DELETE", address, path)
            if not answer.ok and answer.status_code != 404:
                log.warning("Ray did not delete job %s (HTTP %s)", handle.submission_id, answer.status_code)
        except JobsubError as exc:
            log.warning("Ray job %s not deleted: %s", handle.submission_id, exc)

    def _job_info(self, handle: RayHandle) -> dict[str, Any] | None:
        address = self._address(handle)
        response = self._request("GET", address, f"/api/jobs/{handle.submission_id}")
        if response.status_code == 404:
            return None
        if not response.ok:
            raise JobError(f"Ray answered HTTP {response.status_code} for job {handle.submission_id}")
        info: dict[str, Any] = response.json()
        return info

    def poll(self, handle: RayHandle) -> Observation:
        if not handle.submission_id:
            return Observation("unknown")
        try:
            return observe(self._job_info(handle))
        except _Unreachable:
            return Observation("unknown", f"Ray cluster unreachable: {self._address(handle)}")

    def poll_many(self, handles: Iterable[RayHandle]) -> list[Observation]:
        """One GET /api/jobs/ per cluster address instead of one request per job (`jobsub jobs`)."""
        handles = list(handles)
        if len(handles) <= 1:
            return [self.poll(h) for h in handles]
        by_address: dict[str, dict[str, dict[str, Any]] | None] = {}
        refused: dict[int, str] = {}
        for index, handle in enumerate(handles):
            try:
                address = self._address(handle)
            except _Untrusted as exc:
                refused[index] = str(exc)  # a rewritten record: this one is not asked about, the others are
                continue
            if address in by_address:
                continue
            try:
                response = self._request("GET", address, "/api/jobs/")
                listing = response.json() if response.ok else None
            except _Unreachable:
                listing = None
            by_address[address] = (
                {str(j.get("submission_id")): j for j in listing if isinstance(j, dict)}
                if isinstance(listing, list)
                else None
            )
        result = []
        for index, handle in enumerate(handles):
            if index in refused:
                result.append(Observation("unknown", refused[index]))
                continue
            jobs = by_address[self._address(handle)]
            if jobs is None:
                result.append(Observation("unknown", f"Ray cluster unreachable: {self._address(handle)}"))
            else:
                result.append(observe(jobs.get(handle.submission_id)))
        return result

    def cancel(self, handle: RayHandle) -> None:
        """Stop the Ray job. Ray signals the whole process tree and kills it after RAY_JOB_STOP_WAIT_TIME_S,
        which submit set past the runtime's own grace period. An unreachable cluster is only a warning: the
        runtime also sees the record's cancel marker."""
        if not handle.submission_id:
            return
        try:
            self._request("POST", self._address(handle), f"/api/jobs/{handle.submission_id}/stop")
        except _Unreachable as exc:
            log.warning("%s; the runner will still see the cancel request in the job record", exc)

    def describe(self, handle: RayHandle) -> str:
        return f"ray submission {handle.submission_id} at {handle.address}"
