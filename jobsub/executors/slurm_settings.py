"""The slurm executor's profile options (``[profiles.X.slurm]``), apart from jobsub/executors/slurm.py.

A module of its own because every profile that holds this section imports it when it is loaded (the CLI
at each command, the runner in each job through JOBSUB_PROFILE_JSON). SlurmExecutor.settings_model names
this class.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SlurmSettings(BaseModel):
    """Slurm through sbatch/squeue/scancel on a login node."""

    model_config = ConfigDict(extra="forbid")

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    sbatch_args: list[str] = Field(default_factory=list, description="extra sbatch options")
    setup: list[str] = Field(default_factory=list, description="lines run before the runtime (module load ...)")
    container: str | None = Field(
        default=None, description="prefix for the runtime, e.g. 'apptainer exec --nv {image}' ({image}: the job's)"
    )
    work_root: str | None = Field(
        default=None, description="folder for batch scripts, runner logs and work dirs (default: the state dir)"
    )
    python: str = Field(default="python3", description="the interpreter with jobsub installed, on the compute nodes")
