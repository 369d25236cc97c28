"""`jobsub profile add ... --executor slurm --partition gpu ...`: the Slurm settings of a profile.

Kept out of profile_cmds.py so that each executor's options live beside each other, not inside one
growing command: profile_cmds applies the decorator and passes what it collected to `slurm_settings`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from jobsub.errors import ConfigError
from jobsub.executors.slurm_settings import SlurmSettings

F = TypeVar("F", bound=Callable[..., Any])

_OPTIONS = [
    click.option("--partition", "slurm_partition", help="slurm: partition (sbatch --partition)."),
    click.option("--account", "slurm_account", help="slurm: account to charge (sbatch --account)."),
    click.option("--qos", "slurm_qos", help="slurm: quality of service (sbatch --qos)."),
    click.option(
        "--sbatch-arg",
        "slurm_sbatch_args",
        multiple=True,
        metavar="OPTION",
        help="slurm: an extra sbatch option, e.g. --sbatch-arg=--constraint=a100 (repeatable; wins over jobsub's).",
    ),
    click.option(
        "--setup",
        "slurm_setup",
        multiple=True,
        metavar="LINE",
        help="slurm: a shell line run on the node before the runtime, e.g. 'module load cuda' (repeatable).",
    ),
    click.option("--container", "slurm_container", help="slurm: runtime prefix, e.g. 'apptainer exec IMG.sif'."),
    click.option("--work-root", "slurm_work_root", help="slurm: folder for batch scripts and runner logs."),
    click.option("--python", "slurm_python", help="slurm: python with jobsub on the nodes (default python3)."),
]


def slurm_options(func: F) -> F:
    for option in reversed(_OPTIONS):
        func = option(func)
    return func


def slurm_settings(executor: str, options: dict[str, Any]) -> SlurmSettings:
    """The SlurmSettings the options describe; an error when they are given for another executor."""
    given = {k.removeprefix("slurm_"): v for k, v in options.items() if k.startswith("slurm_") and v not in (None, ())}
    if given and executor != "slurm":
        names = ", ".join("--" + k.replace("_args", "_arg").replace("_", "-") for k in sorted(given))
        raise ConfigError(f"{names} only apply to --executor slurm (this profile uses {executor})")
    for key in ("sbatch_args", "setup"):
        if key in given:
            given[key] = list(given[key])
    return SlurmSettings(**given)
