"""The modelarts executor's profile options (``[profiles.X.modelarts]``), apart from
jobsub/executors/modelarts.py.

A module of its own because every profile that holds this section imports it when it is loaded (the CLI
at each command, the runner in each job through JOBSUB_PROFILE_JSON). ModelArtsExecutor.settings_model
names this class.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from jobsub.config import check_endpoint_url


class ModelArtsSettings(BaseModel):
    """Huawei Cloud ModelArts training jobs through the official SDK. Never a credential: the SDK's own chain
    (HUAWEICLOUD_SDK_AK / HUAWEICLOUD_SDK_SK, ~/.huaweicloud/credentials, OIDC) provides them."""

    model_config = ConfigDict(extra="forbid")

    region: str | None = Field(default=None, description="e.g. cn-north-4 (the SDK's region list gives the endpoint)")
    endpoint: str | None = Field(
        default=None, description="API endpoint override, e.g. https://modelarts.cn-north-4.myhuaweicloud.com"
    )
    project_id: str | None = Field(
        default=None, description="the project of the region (default: HUAWEICLOUD_SDK_PROJECT_ID)"
    )
    flavor: str | None = Field(default=None, description="training flavor id for jobs without resources.flavor")
    pool_id: str | None = Field(default=None, description="a dedicated resource pool (default: the public pool)")
    image: str | None = Field(default=None, description="SWR image with jobsub, for specs without image:")
    log_export_path: str | None = Field(default=None, description="obs://bucket/path/ where ModelArts exports job logs")
    credentials_ttl_seconds: int = Field(
        default=6 * 3600,
        ge=60,
        le=7 * 24 * 3600,
        description="how long a queued job may wait for its one-time storage credentials",
    )
    keep_jobs: bool = Field(default=True, description="keep finished training jobs on ModelArts (False: delete them)")

    @field_validator("endpoint")
    @classmethod
    def _check_ma_endpoint(cls, value: str | None) -> str | None:
        return check_endpoint_url(value.rstrip("/")) if value else value
