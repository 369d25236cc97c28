"""The Ray executor: the jobsub runtime as a Ray job, through the dashboard's Jobs REST API.

Why REST and not Ray's SDK: the client must not need Ray (hundreds of MB, and its version would have to
match the cluster's). Four calls do everything, with ``requests``:

    GET  /api/version                 check(): the address answers and has the Jobs API
    GET|PUT /api/packages/gcs/NAME    ship this jobsub as a py_modules zip (once per content hash)
    POST /api/jobs/                   submit: entrypoint = the runtime, resources, runtime_env
    GET  /api/jobs/ID, GET /api/jobs/ poll one job, or all of them for `jobsub jobs`
    POST /api/jobs/ID/stop            cancel (SIGTERM to the entrypoint's process tree, SIGKILL later)

Credentials reach the runner in ``runtime_env.env_vars``, the only channel Ray has into a job's
environment. Ray shows a job's runtime_env on its dashboard and in GET /api/jobs/ to anyone who can reach
the dashboard: README and docs/architecture.md say so and recommend instance roles / workload identity.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import shlex
from collections.abc import Iterable
from typing import Any

import requests

from jobsub.config import Profile
from jobsub.errors import ExecutorUnavailableError, JobError
from jobsub.executors.base import BaseExecutor, Capabilities, Handle, LaunchRequest, Observation
from jobsub.executors.ray_package import jobsub_package
from jobsub.redact import redact

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


class RayExecutor(BaseExecutor):
    kind = "ray"
    shares_client_environment = False
    capabilities = Capabilities(gpus=True, secret_env=True)  # memory is a scheduling reservation, not a limit

    def __init__(self, profile: Profile) -> None:
        super().__init__(profile)
        self.settings = profile.ray
        self._http = requests.Session()
        self._uploaded: dict[str, str] = {}  # address -> package URI known to be on that cluster

    # -- HTTP --------------------------------------------------------------------------------------------
    def _address(self, handle: Handle | None = None) -> str:
        address = (handle or {}).get("address") or self.settings.address
        if not address:
            raise ExecutorUnavailableError(
                "the profile has no Ray address: jobsub profile add NAME --executor ray --ray-address http://HEAD:8265"
            )
        return str(address).rstrip("/")

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
        try:
            response = self._http.request(method, url, headers=self._headers(), timeout=_TIMEOUT, **kwargs)
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

    def runtime_env(self, request: LaunchRequest, package_uri: str | None) -> dict[str, Any]:
        """The job's runtime_env: the runner's variables (secrets included: Ray has no other channel), this
        jobsub as a py_module, the profile's pip requirements, and Ray's stop grace after the runtime's."""
        profile = request.profile
        if profile.storage == "local" and not profile.root:
            # the runner must open the same folder, not its own user's default (a cluster on this machine
            # or a shared filesystem mounted at the same path)
            profile = profile.model_copy(update={"root": str(profile.local_root())})
        env = dataclasses.replace(request, profile=profile).runtime_env(include_secrets=True)
        env["JOBSUB_JOB_ID"] = request.job_id
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

    def submit(self, request: LaunchRequest) -> Handle:
        address = self._address()
        package_uri = self._ensure_package(address) if self.settings.ship_jobsub else None
        body: dict[str, Any] = {
            "entrypoint": _entrypoint(request),
            "submission_id": submission_id(request.job_id),
            "runtime_env": self.runtime_env(request, package_uri),
            "metadata": {"jobsub_job_id": request.job_id, "jobsub_job_uri": request.job_uri},
        }
        if request.cpus:
            body["entrypoint_num_cpus"] = request.cpus
        if request.gpus:
            body["entrypoint_num_gpus"] = request.gpus
        if request.memory_bytes:
            body["entrypoint_memory"] = int(request.memory_bytes)
        response = self._request("POST", address, "/api/jobs/", json=body)
        if response.status_code == 404:
            raise self._no_jobs_api(address, "/api/jobs/", response)
        if not response.ok:
            # Ray answers a traceback; its last line is the reason (never the runtime_env: no secret)
            lines = [line for line in response.text.splitlines() if line.strip()]
            reason = _one_line(lines[-1] if lines else "")
            raise JobError(f"the Ray cluster refused the job (HTTP {response.status_code}): {reason}")
        sid = response.json().get("submission_id") or body["submission_id"]
        # "log": where the runner's own output is when it dies before the job log starts (Ray keeps it)
        return {"kind": self.kind, "address": address, "submission_id": sid, "log": f"{address}/api/jobs/{sid}/logs"}

    def _job_info(self, handle: Handle) -> dict[str, Any] | None:
        address = self._address(handle)
        response = self._request("GET", address, f"/api/jobs/{handle['submission_id']}")
        if response.status_code == 404:
            return None
        if not response.ok:
            raise JobError(f"Ray answered HTTP {response.status_code} for job {handle['submission_id']}")
        info: dict[str, Any] = response.json()
        return info

    def poll(self, handle: Handle) -> Observation:
        if not handle.get("submission_id"):
            return Observation("unknown")
        try:
            return observe(self._job_info(handle))
        except _Unreachable:
            return Observation("unknown", f"Ray cluster unreachable: {self._address(handle)}")

    def poll_many(self, handles: Iterable[Handle]) -> list[Observation]:
        """One GET /api/jobs/ per cluster address instead of one request per job (`jobsub jobs`)."""
        handles = list(handles)
        if len(handles) <= 1:
            return [self.poll(h) for h in handles]
        by_address: dict[str, dict[str, dict[str, Any]] | None] = {}
        for handle in handles:
            address = self._address(handle)
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
        for handle in handles:
            jobs = by_address[self._address(handle)]
            if jobs is None:
                result.append(Observation("unknown", f"Ray cluster unreachable: {self._address(handle)}"))
            else:
                result.append(observe(jobs.get(str(handle.get("submission_id")))))
        return result

    def cancel(self, handle: Handle) -> None:
        """Stop the Ray job. Ray signals the whole process tree and kills it after RAY_JOB_STOP_WAIT_TIME_S,
        which submit set past the runtime's own grace period. An unreachable cluster is only a warning: the
        runtime also sees the record's cancel marker."""
        if not handle.get("submission_id"):
            return
        try:
            self._request("POST", self._address(handle), f"/api/jobs/{handle['submission_id']}/stop")
        except _Unreachable as exc:
            log.warning("%s; the runner will still see the cancel request in the job record", exc)

    def describe(self, handle: Handle) -> str:
        if not handle:
            return "ray (not started)"
        return f"ray submission {handle.get('submission_id')} at {handle.get('address')}"
