"""`jobsub profile add ... --executor modelarts --modelarts-region cn-north-4 ...`: the ModelArts settings.

Kept beside the other executors' options (slurm_options.py, docker_options.py): profile_cmds applies the
decorator and passes what it collected to `modelarts_settings`. No option takes a credential: the SDK's own
chain (HUAWEICLOUD_SDK_AK / HUAWEICLOUD_SDK_SK, ~/.huaweicloud/credentials) provides them at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from jobsub.errors import ConfigError
from jobsub.executors.modelarts_settings import ModelArtsSettings

F = TypeVar("F", bound=Callable[..., Any])

_OPTIONS = [
    click.option("--modelarts-region", "modelarts_region", help="modelarts: region, e.g. cn-north-4."),
    click.option("--modelarts-endpoint", "modelarts_endpoint", help="modelarts: API endpoint (default: the region's)."),
    click.option("--modelarts-project-id", "modelarts_project_id", help="modelarts: the region's project id."),
    click.option("--modelarts-flavor", "modelarts_flavor", help="modelarts: default training flavor id."),
    click.option("--modelarts-pool-id", "modelarts_pool_id", help="modelarts: a dedicated resource pool."),
    click.option(
        "--modelarts-image", "modelarts_image", help="modelarts: SWR image with jobsub, for specs without image:."
    ),
    click.option(
        "--modelarts-log-export-path", "modelarts_log_export_path", help="modelarts: obs://bucket/path/ for job logs."
    ),
]


def modelarts_options(func: F) -> F:
    for option in reversed(_OPTIONS):
        func = option(func)
    return func


def modelarts_settings(executor: str, options: dict[str, Any]) -> ModelArtsSettings:
    """The ModelArtsSettings the options describe; an error when they are given for another executor."""
    given = {k.removeprefix("modelarts_"): v for k, v in options.items() if k.startswith("modelarts_") and v}
    if given and executor != "modelarts":
        names = ", ".join("--modelarts-" + k.replace("_", "-") for k in sorted(given))
        raise ConfigError(f"{names} only apply to --executor modelarts (this profile uses {executor})")
    return ModelArtsSettings(**given)
