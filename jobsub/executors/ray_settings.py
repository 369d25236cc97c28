"""The ray executor's profile options (``[profiles.X.ray]``), apart from jobsub/executors/ray.py.

A module of its own because every profile that holds this section imports it when it is loaded (the CLI
at each command, the runner in each job through JOBSUB_PROFILE_JSON), and ray.py imports requests.
RayExecutor.settings_model names this class.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class RaySettings(BaseModel):
    """A Ray cluster through its Jobs REST API (no Ray needed on this machine)."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(default=None, description="dashboard address, e.g. http://head:8265")
    headers_env: dict[str, str] = Field(
        default_factory=dict, description="HTTP header -> name of the environment variable holding its value"
    )
    ship_jobsub: bool = Field(
        default=True, description="upload this jobsub with each job (runtime_env py_modules); off if the image has it"
    )
    pip: list[str] = Field(
        default_factory=list,
        description="requirements Ray installs for the runner (runtime_env pip), e.g. jobsub's own dependencies",
    )

    @field_validator("address")
    @classmethod
    def _check_address(cls, value: str | None) -> str | None:
        """The dashboard's HTTP address; a bare host:port means http. A ray:// (Ray Client) or GCS address is a
        different service, so it is refused with the address to use instead."""
        if not value:
            return None
        value = value.strip().rstrip("/")
        if value.startswith("ray://"):
            raise ValueError(f"{value} is a Ray Client address; jobsub uses the dashboard's Jobs API: http://HEAD:8265")
        if "://" not in value:
            value = "http://" + value
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value}: the Ray dashboard address starts with http:// or https://")
        if "@" in value.split("://", 1)[1].split("/", 1)[0]:
            raise ValueError(
                "a Ray address must not hold credentials (user:password@): put the token in an environment "
                "variable and name it in ray.headers_env"
            )
        return value
