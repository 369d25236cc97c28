"""The ModelArts executor: a jobsub job as a Huawei Cloud ModelArts v2 training job, through the official SDK.

Transport: ``huaweicloudsdkmodelarts`` (optional extra ``jobsub[modelarts]``, imported lazily). Its v1
module calls the v2 REST API, signed with the SDK's AK/SK signer:

    GET  /v2/{project}/training-job-flavors            check(): credentials, project, flavor
    POST /v2/{project}/training-jobs                   submit: custom image, command, env, flavor, auto_stop
    GET  /v2/{project}/training-jobs/{id}              poll: phase / secondary_phase ("Pending: queuing")
    POST /v2/{project}/training-job-searches           poll_many: one request for `jobsub jobs`
    POST /v2/{project}/training-jobs/{id}/actions      cancel: {"action_type": "terminate"}
    DELETE /v2/{project}/training-jobs/{id}            cleanup when modelarts.keep_jobs is false

The job runs the jobsub runtime itself (``python -m jobsub.runtime.modelarts_boot JOB_URI`` in a custom
image that has jobsub), so logs, metrics, outputs and the final state go to the job record like on every
other executor, and `logs -f` needs nothing from ModelArts. Storage credentials never enter the job
definition (the console shows it to the whole project): they travel as a one-time secret, like on Ray
(executors/secret_drop.py, secret_fetch.py): the definition holds only a ticket that is worthless once the job
has read its secret. ModelArts credentials follow the SDK's conventions (HUAWEICLOUD_SDK_AK /
HUAWEICLOUD_SDK_SK / HUAWEICLOUD_SDK_SECURITY_TOKEN, ~/.huaweicloud/credentials, OIDC) and are never stored.
"""

from __future__ import annotations

import logging
import math
import re
import shlex
from collections.abc import Iterable
from typing import Any, Literal

from jobsub.config import Profile
from jobsub.errors import ExecutorUnavailableError, JobError
from jobsub.executors.base import BaseExecutor, BaseHandle, Capabilities, LaunchRequest, Observation
from jobsub.executors.modelarts_settings import ModelArtsSettings
from jobsub.executors.secret_drop import TICKET_ENV, discard, seal
from jobsub.redact import redact, register_credentials
from jobsub.storage.base import ObjectStore

log = logging.getLogger(__name__)

_TIMEOUT = (5.0, 30.0)
#: phases of a training job (ModelArts API reference, "Querying the Details of a Training Job")
_QUEUED = {"Creating", "Pending"}
_ALIVE = {"Creating", "Pending", "Running", "Terminating"}
#: exit codes of a runner killed by a signal (128+N): it vanished, it did not fail
_SIGNALLED = 128
_NAME_RE = re.compile(r"[^A-Za-z0-9_-]")
#: ModelArts limits (API reference): environment values up to 4096 characters, at most 100 variables
_MAX_ENV_VALUE = 4096


class _Unreachable(ExecutorUnavailableError):
    """No answer from the endpoint: a poll says 'unknown', a cancel leaves it to the record's marker."""


def training_job_name(job_id: str) -> str:
    """The job's name on ModelArts: recognisable on the console, 1-64 of [A-Za-z0-9_-]."""
    return ("jobsub-" + _NAME_RE.sub("-", job_id))[:64]


def image_problem(image: str | None, region: str | None) -> str | None:
    """Why ModelArts cannot pull this image, or None. ModelArts pulls custom images from SWR of its own
    region; a bare local tag (jobsub-train:latest) exists only on the machine that built it."""
    if not image:
        return (
            "no image for the ModelArts job: set image: in the spec or modelarts.image in the profile "
            "(an SWR image with jobsub, e.g. swr.REGION.myhuaweicloud.com/ORG/jobsub-train:TAG)"
        )
    host = image.split("/", 1)[0] if "/" in image else ""
    if not host or ("." not in host and ":" not in host and host != "localhost"):
        return (
            f"image {image!r} is a local name; ModelArts pulls custom images from SWR: push it "
            f"(docker push swr.{region or 'REGION'}.myhuaweicloud.com/ORG/{image.rsplit('/', 1)[-1]}) and use that name"
        )
    match = re.fullmatch(r"swr\.([a-z0-9-]+)\.myhuaweicloud\.(com|cn)", host)
    if match and region and match.group(1) != region:
        return (
            f"image {image!r} is in SWR of region {match.group(1)}; ModelArts in {region} pulls only from "
            f"swr.{region}.myhuaweicloud.com: push the image there"
        )
    return None


def observe(job: dict[str, Any] | None) -> Observation:
    """What a training job (the API's JSON) says about the runner; None = ModelArts has no such job."""
    if job is None:
        return Observation("dead")  # deleted on the console: the runner is gone -> LOST
    status = job.get("status") or {}
    phase = str(status.get("phase") or "")
    secondary = str(status.get("secondary_phase") or "")
    if phase in _QUEUED:
        return Observation("alive", f"queued: ModelArts {phase}" + (f": {secondary}" if secondary else ""))
    if phase in _ALIVE or not phase:
        return Observation("alive")
    if phase == "Terminated":
        return Observation("dead", "terminated on ModelArts before the runner wrote a final state")
    if phase in ("Failed", "Abnormal"):
        code: int | None = None
        message = ""
        for task in status.get("task_statuses") or []:
            if isinstance(task, dict):
                code = task.get("exit_code") if isinstance(task.get("exit_code"), int) else code
                message = str(task.get("message") or message)
        if code is not None and code >= _SIGNALLED:
            return Observation("dead")  # the runner was killed (OOM killer, a node lost): LOST, not its failure
        text = f"ModelArts job {phase}" + (f" (exit code {code})" if code is not None else "")
        if message or secondary:
            text += ": " + " ".join((message or secondary).split())[:300]
        return Observation("dead", redact(text), code)
    return Observation("dead")  # Completed without a final record: LOST


class ModelArtsHandle(BaseHandle):
    """A training job: its id in the project at the endpoint it was created through (checked before use)."""

    kind: Literal["modelarts"]
    #: the jobsub job id (the training job's name is made from it)
    job_id: str
    training_job_id: str
    name: str | None = None
    endpoint: str | None = None
    project_id: str | None = None
    region: str | None = None
    flavor: str | None = None
    image: str | None = None
    #: the one-time secret object holding the job's storage credentials until the job reads it
    secrets: str | None = None
    #: modelarts.log_export_path: where ModelArts exports the runner's output
    log: str | None = None

    def runner_log(self) -> str | None:
        return self.log


class ModelArtsExecutor(BaseExecutor[ModelArtsHandle]):
    kind = "modelarts"
    #: the flavor sets memory (no per-job cap of jobsub's), one node per job; secrets travel as a one-time object
    capabilities = Capabilities(gpus=True, secret_env=True)
    shares_client_environment = False
    handle_model = ModelArtsHandle
    settings_model = ModelArtsSettings

    def __init__(self, profile: Profile) -> None:
        super().__init__(profile)
        self.settings = profile.section(self.kind, ModelArtsSettings)
        self._client: Any = None
        self._project: str | None = None

    # -- SDK -----------------------------------------------------------------------------------------------
    @staticmethod
    def _sdk() -> Any:
        try:
            import huaweicloudsdkmodelarts.v1 as v1
        except ImportError:
            raise ExecutorUnavailableError(
                "the modelarts executor needs Huawei Cloud's SDK: pip install 'jobsub[modelarts]'"
            ) from None
        return v1

    def _endpoint(self) -> str:
        if self.settings.endpoint:
            return self.settings.endpoint
        region = self.settings.region
        if not region:
            raise ExecutorUnavailableError(
                "the profile has no ModelArts region: jobsub profile add NAME --executor modelarts "
                "--modelarts-region cn-north-4 --modelarts-project-id ID"
            )
        from huaweicloudsdkmodelarts.v1.region.modelarts_region import ModelArtsRegion

        try:
            return str(ModelArtsRegion.value_of(region).endpoint)
        except KeyError:
            known = ", ".join(sorted(ModelArtsRegion.static_fields))
            raise ExecutorUnavailableError(
                f"unknown ModelArts region {region!r}; known: {known} (or set modelarts.endpoint)"
            ) from None

    def _credentials(self) -> Any:
        """The SDK's own chain without the metadata providers (they wait seconds on a machine outside
        Huawei Cloud): OIDC variables, HUAWEICLOUD_SDK_* variables, then ~/.huaweicloud/credentials."""
        from huaweicloudsdkcore.auth.provider import (
            CredentialProviderChain,
            EnvCredentialProvider,
            OidcStsCredentialProvider,
            ProfileCredentialProvider,
        )

        chain = CredentialProviderChain(
            (
                OidcStsCredentialProvider.get_basic(),
                EnvCredentialProvider.get_basic(),
                ProfileCredentialProvider.get_basic(),
            )
        )
        try:
            credentials = chain.get_credentials()
        except Exception:
            raise ExecutorUnavailableError(
                "no Huawei Cloud credentials: set HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK (or write "
                "~/.huaweicloud/credentials); jobsub never stores them"
            ) from None
        register_credentials(
            getattr(credentials, "ak", None),
            getattr(credentials, "sk", None),
            getattr(credentials, "security_token", None),
        )
        project = self.settings.project_id or getattr(credentials, "project_id", None)
        if not project:
            raise ExecutorUnavailableError(
                "no ModelArts project id: set modelarts.project_id in the profile (or HUAWEICLOUD_SDK_PROJECT_ID); "
                "the console shows it under My Credentials > API Credentials, per region"
            )
        self._project = str(project)
        return credentials.with_project_id(self._project)

    def client(self) -> Any:
        if self._client is None:
            v1 = self._sdk()
            from huaweicloudsdkcore.http.http_config import HttpConfig

            endpoint = self._endpoint()
            config = HttpConfig.get_default_config()
            config.timeout = _TIMEOUT
            self._client = (
                v1.ModelArtsClient.new_builder()
                .with_credentials(self._credentials())
                .with_endpoint(endpoint)
                .with_http_config(config)
                .build()
            )
            self._endpoint_url = endpoint
        return self._client

    def _call(self, what: str, method: str, request: Any) -> Any:
        """One SDK call; unreachable, refused credentials and an unknown project become one line each."""
        from huaweicloudsdkcore.exceptions import exceptions as sdk_errors

        client = self.client()
        try:
            return getattr(client, method)(request)
        except (sdk_errors.ConnectionException, sdk_errors.RequestTimeoutException):
            raise _Unreachable(
                f"cannot reach ModelArts at {self._endpoint_url} ({what}): check modelarts.region / modelarts.endpoint "
                "and the network"
            ) from None
        except sdk_errors.ServiceResponseException as exc:
            code, message = exc.error_code or "", " ".join(str(exc.error_msg or "").split())[:300]
            detail = redact(f"HTTP {exc.status_code} {code}: {message}".strip())
            if exc.status_code == 401:
                raise ExecutorUnavailableError(
                    f"ModelArts refused the credentials ({detail}): check HUAWEICLOUD_SDK_AK / HUAWEICLOUD_SDK_SK"
                ) from None
            if exc.status_code == 403:
                raise ExecutorUnavailableError(
                    f"ModelArts refused project {self._project} ({detail}): modelarts.project_id must be the "
                    f"project of region {self.settings.region or '?'} that these credentials belong to"
                ) from None
            raise JobError(f"ModelArts {what} failed ({detail})") from exc

    def _to_dict(self, response: Any) -> dict[str, Any]:
        data: dict[str, Any] = response.to_dict()
        return data

    # -- flavors -------------------------------------------------------------------------------------------
    def flavors(self) -> list[dict[str, Any]]:
        v1 = self._sdk()
        response = self._call("listing flavors", "show_training_job_flavors", v1.ShowTrainingJobFlavorsRequest())
        return [f for f in self._to_dict(response).get("flavors") or [] if isinstance(f, dict)]

    def _flavor(self, request: LaunchRequest) -> str:
        flavor = request.flavor or self.settings.flavor
        if not flavor:
            raise ExecutorUnavailableError(
                "no ModelArts flavor: set resources.flavor in the spec (--set resources.flavor=ID) or modelarts.flavor "
                "in the profile"
            )
        return flavor

    # -- the interface -------------------------------------------------------------------------------------
    def check(self, request: LaunchRequest) -> None:
        self._sdk()
        if request.profile.storage != "s3":
            raise ExecutorUnavailableError(
                "the modelarts executor needs an S3-compatible store (OBS) that the job can reach: "
                "jobsub profile add NAME --storage s3 --endpoint-url https://obs.REGION.myhuaweicloud.com ..."
            )
        if request.nodes > 1:
            raise ExecutorUnavailableError(f"resources.nodes={request.nodes}: the modelarts executor runs one node")
        self._endpoint()  # an unknown region before anything else is looked at
        problem = image_problem(request.image or self.settings.image, self.settings.region)
        if problem:
            raise ExecutorUnavailableError(problem)
        flavor = self._flavor(request)
        listed = self.flavors()
        usable = [f for f in listed if not self.settings.pool_id or f.get("pool_id") in (None, self.settings.pool_id)]
        if not any(f.get("flavor_id") == flavor for f in usable):
            names = ", ".join(sorted(str(f.get("flavor_id")) for f in usable)) or "none"
            raise ExecutorUnavailableError(f"unknown ModelArts flavor {flavor!r}; this project offers: {names}")
        too_long = [k for k, v in request.runtime_env(include_secrets=False).items() if len(v) > _MAX_ENV_VALUE]
        if too_long:
            raise ExecutorUnavailableError(f"{too_long[0]} is longer than ModelArts' {_MAX_ENV_VALUE} characters")

    def job_body(self, request: LaunchRequest, environments: dict[str, str]) -> dict[str, Any]:
        """The v2 create body as plain JSON (the tests validate it against the SDK's own models)."""
        command = shlex.join(["python", "-m", "jobsub.runtime.modelarts_boot", request.job_uri])
        resource: dict[str, Any] = {"flavor_id": self._flavor(request), "node_count": 1}
        if self.settings.pool_id:
            resource["pool_id"] = self.settings.pool_id
        spec: dict[str, Any] = {"resource": resource}
        if request.timeout_seconds:
            # a backstop only: the runtime enforces the exact timeout first (ModelArts counts whole hours)
            spec["auto_stop"] = {
                "time_unit": "HOURS",
                "duration": max(1, math.ceil((request.timeout_seconds + 600) / 3600)),
            }
        if self.settings.log_export_path:
            spec["log_export_path"] = {"obs_url": self.settings.log_export_path}
        return {
            "kind": "job",
            "metadata": {"name": training_job_name(request.job_id), "description": f"jobsub job {request.job_id}"},
            "algorithm": {
                "command": command,
                "engine": {"image_url": request.image or self.settings.image},
                "environments": environments,
            },
            "spec": spec,
        }

    def _store(self) -> ObjectStore:
        from jobsub.storage import open_store  # lazily, like the SDK: `jobsub jobs` on other executors skips it

        return open_store(self.profile)

    def submit(self, request: LaunchRequest) -> ModelArtsHandle:
        v1 = self._sdk()
        store = self._store()
        sealed = seal(
            store, self.profile.jobs_uri, request.job_id, request.secret_env, self.settings.credentials_ttl_seconds
        )
        environments = request.runtime_env(include_secrets=False)
        environments.update({"JOBSUB_JOB_ID": request.job_id, TICKET_ENV: sealed.ticket})
        body = self.job_body(request, environments)
        try:
            response = self._call(
                "creating the training job", "create_training_job", v1.CreateTrainingJobRequest(body=body)
            )
        except BaseException:
            discard(
                store, self.profile.jobs_uri, sealed.uri, request.job_id
            )  # a warning at worst: the launch error is reported
            raise
        created = self._to_dict(response)
        training_job_id = str((created.get("metadata") or {}).get("id") or "")
        if not training_job_id:
            raise JobError("ModelArts created the training job but returned no id")
        fields: dict[str, Any] = {
            "kind": "modelarts",
            "job_id": request.job_id,
            "training_job_id": training_job_id,
            "name": body["metadata"]["name"],
            "endpoint": self._endpoint_url,
            "project_id": self._project,
            "region": self.settings.region,
            "flavor": body["spec"]["resource"]["flavor_id"],
            "image": body["algorithm"]["engine"]["image_url"],
            "secrets": str(sealed.uri),
        }
        if self.settings.log_export_path:  # the key is in the record only then (as it always was)
            fields["log"] = self.settings.log_export_path
        return ModelArtsHandle.model_validate(fields)

    def verify_handle(self, handle: ModelArtsHandle, job_id: str) -> None:
        """Refuse a handle that names another jobsub job (the record is anyone's to rewrite): its job id and
        training job name must be this job's. The training job id itself is checked against the job ModelArts
        returns (`_is_ours`) before it is stopped or deleted."""
        if handle.job_id != job_id or (handle.name is not None and handle.name != training_job_name(job_id)):
            raise JobError(
                f"the job record names the ModelArts job {redact(handle.name or handle.job_id)[:80]!r}, not "
                f"{training_job_name(job_id)}: not acting on it (the record was rewritten)"
            )

    @staticmethod
    def _is_ours(job: dict[str, Any] | None, handle: ModelArtsHandle) -> bool:
        """Does the training job ModelArts returned for `handle.training_job_id` carry this job's name? A
        rewritten record can name any training job id in the project; only our own is stopped or deleted."""
        if job is None:
            return False
        name = (job.get("metadata") or {}).get("name")
        return name == training_job_name(handle.record_job_id or handle.job_id)

    def _same_place(self, handle: ModelArtsHandle) -> bool:
        """A handle is data from a shared bucket: act on it only against this profile's endpoint and project."""
        self.client()
        return handle.endpoint == self._endpoint_url and handle.project_id == self._project

    def _job(self, handle: ModelArtsHandle) -> dict[str, Any] | None:
        v1 = self._sdk()
        from huaweicloudsdkcore.exceptions import exceptions as sdk_errors

        request = v1.ShowTrainingJobDetailsRequest(training_job_id=handle.training_job_id)
        try:
            return self._to_dict(self._call("reading the training job", "show_training_job_details", request))
        except JobError as exc:
            if isinstance(exc.__cause__, sdk_errors.ServiceResponseException) and exc.__cause__.status_code == 404:
                return None
            raise

    def poll(self, handle: ModelArtsHandle) -> Observation:
        if not handle.training_job_id:
            return Observation("unknown")
        try:
            if not self._same_place(handle):
                return Observation("unknown", f"ModelArts job in another project or endpoint: {handle.endpoint}")
            job = self._job(handle)
            if job is not None and not self._is_ours(job, handle):
                return Observation("unknown", "the job record names another training job: not following it")
            seen = observe(job)
        except _Unreachable as exc:
            return Observation("unknown", str(exc))
        return self._with_log_hint(seen, handle)

    @staticmethod
    def _with_log_hint(seen: Observation, handle: ModelArtsHandle) -> Observation:
        """A runner that failed before the job log started left its reason in ModelArts' exported log."""
        if seen.liveness == "dead" and seen.detail and handle.log:
            return Observation("dead", f"{seen.detail}; its output is exported to {handle.log}", seen.exit_code)
        return seen

    def poll_many(self, handles: Iterable[ModelArtsHandle]) -> list[Observation]:
        """One search request (up to 50 newest jobs of the project) instead of one request per job."""
        handles = list(handles)
        if len(handles) <= 1:
            return [self.poll(h) for h in handles]
        v1 = self._sdk()
        try:
            body = v1.JobSearches(offset=0, limit=50, sort_by="create_time", order="desc")
            found = self._to_dict(
                self._call("listing training jobs", "list_training_jobs", v1.ListTrainingJobsRequest(body=body))
            )
        except (_Unreachable, JobError):
            return [self.poll(h) for h in handles]
        jobs = {str((j.get("metadata") or {}).get("id")): j for j in found.get("items") or [] if isinstance(j, dict)}
        return [
            self._with_log_hint(observe(jobs[h.training_job_id]), h)
            if h.training_job_id in jobs and self._same_place(h) and self._is_ours(jobs[h.training_job_id], h)
            else self.poll(h)
            for h in handles
        ]

    def cancel(self, handle: ModelArtsHandle) -> None:
        """Terminate the training job: ModelArts stops its container (SIGTERM, then SIGKILL); the runtime also
        sees the record's cancel marker, so an unreachable endpoint is only a warning."""
        if not handle.training_job_id:
            return
        v1 = self._sdk()
        try:
            if not self._same_place(handle):
                log.warning("not stopping %s: it belongs to another ModelArts project or endpoint", handle.name)
                return
            if not self._is_ours(self._job(handle), handle):
                log.warning("not stopping %s: ModelArts names it otherwise (the record was rewritten)", handle.name)
                return
            request = v1.StopTrainingJobRequest(
                training_job_id=handle.training_job_id, body=v1.JobActionType(action_type="terminate")
            )
            self._call("stopping the training job", "stop_training_job", request)
        except _Unreachable as exc:
            log.warning("%s; the runner will still see the cancel request in the job record", exc)

    def cleanup(self, handle: ModelArtsHandle) -> None:
        """Delete the one-time credentials if the job never took them, and the training job if asked to."""
        if handle.secrets:
            discard(self._store(), self.profile.jobs_uri, handle.secrets, handle.record_job_id or "")
        if not self.settings.keep_jobs and handle.training_job_id:
            v1 = self._sdk()
            try:
                if self._same_place(handle) and self._is_ours(self._job(handle), handle):
                    request = v1.DeleteTrainingJobRequest(training_job_id=handle.training_job_id)
                    self._call("deleting the training job", "delete_training_job", request)
            except (_Unreachable, JobError) as exc:
                log.warning("could not delete training job %s: %s", handle.name, exc)

    def describe(self, handle: ModelArtsHandle) -> str:
        return (
            f"modelarts training job {handle.name} ({handle.training_job_id}) in "
            f"{handle.region or handle.endpoint}, flavor {handle.flavor}, "
            f"image {handle.image}"
        )
