"""The executor interface: what a Ray, Kubernetes or container executor implements next to the local one."""

from __future__ import annotations

from typing import Any, Literal, Protocol

Liveness = Literal["alive", "dead", "unknown"]


class Executor(Protocol):
    kind: str

    def submit(self, job_id: str, job_uri: str, profile_json: str) -> dict[str, Any]:
        """Start `python -m jobsub.runtime JOB_URI` with the profile; return a JSON-able handle."""

    def poll(self, handle: dict[str, Any]) -> Liveness:
        """Is the runner behind this handle still there? 'unknown' when this machine cannot tell."""

    def cancel(self, handle: dict[str, Any]) -> None:
        """Ask the runner to stop now (the runtime also watches the record's cancel marker)."""

    def describe(self, handle: dict[str, Any]) -> str:
        """One line for `jobsub status`."""
