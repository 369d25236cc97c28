"""The docker executor's handle: a container on an engine, or (local store) a runner on this machine whose
command runs in containers (executors/docker_local.py).

Its own module because both docker.py (the container) and docker_local.py (the host runner) make one, and
neither may import the other (no import circles between sibling modules).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

from pydantic import Field, model_validator

from jobsub.executors.base import MAX_PID, BaseHandle
from jobsub.executors.local import LocalHandle

#: the longest a container is given to stop on cancel (a day): a rewritten record cannot make cancel hang longer
MAX_STOP_TIMEOUT: Final = 24 * 3600

#: the handle's "mode" for a job whose runner runs on the host and whose command runs in a container
HOST_RUNNER: Final = "host-runner"


class DockerHandle(BaseHandle):
    """One model for both shapes, as executor.json has always held them: without ``mode`` it names a
    container (``container_id`` on the engine ``host``); with ``mode: host-runner`` it names the runner
    process (``pid`` on ``runner_host``) and the engine its command's containers run on."""

    kind: Literal["docker"]
    #: the engine's address (unix:///..., ssh://user@host, tcp://...)
    host: str
    mode: Literal["host-runner"] | None = None
    image: str | None = None
    keep: bool = False
    #: "host" when the container uses the engine's network (a loopback endpoint), else the network or ""
    network: str = ""
    #: uid:gid the job runs as in its containers
    user: str | None = None
    # -- a container (S3 store) --
    engine_host: str | None = None
    container_id: str | None = None
    memory_bytes: int | None = Field(default=None, gt=0, le=2**60)
    #: seconds `cancel` waits for the container to stop: bounded, the record is anyone's to rewrite
    stop_timeout: int | None = Field(default=None, ge=0, le=MAX_STOP_TIMEOUT)
    # -- a host runner (local store) --
    runner_host: str | None = None
    pid: int | None = Field(default=None, gt=0, le=MAX_PID)
    start_time: str | None = None
    run_dir: str | None = None

    @model_validator(mode="after")
    def _one_shape(self) -> DockerHandle:
        if self.mode == HOST_RUNNER and (self.pid is None or self.runner_host is None):
            raise ValueError("a host-runner handle names its runner: pid and runner_host are required")
        if self.mode is None and not self.container_id:
            raise ValueError("a container handle names its container: container_id is required")
        return self

    def runner(self) -> LocalHandle:
        """The runner part of a host-runner handle, in the local executor's terms."""
        if self.pid is None or self.runner_host is None:  # a container handle: validated away above
            raise ValueError("not a host-runner handle")
        local = LocalHandle(
            kind="local", host=self.runner_host, pid=self.pid, start_time=self.start_time, run_dir=self.run_dir
        )
        return local.model_copy(update={"record_job_id": self.record_job_id})

    def runner_log(self) -> str | None:
        return str(Path(self.run_dir) / "runner.log") if self.run_dir else None
