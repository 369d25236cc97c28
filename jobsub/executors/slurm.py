"""The Slurm executor: the runtime as a batch job, through sbatch/squeue/scontrol/scancel on a login node.

The way submitit and SkyPilot reach Slurm: no daemon of ours, no REST endpoint, only the commands every
cluster user has. The batch script (0700, in a 0700 folder under ``slurm.work_root`` or the user's state
dir) runs the profile's setup lines and then *execs* the runtime, so Slurm's signals reach the runner
itself, not a shell that is waiting for it.

Credentials never go into the script. sbatch is run with ``--export=ALL`` and the runtime's variables
(profile JSON, tunables, storage credentials, ``--secret-env`` values) set in *its* environment only: Slurm
carries that environment to the job over its authenticated RPC and keeps it in the controller's private
state folder (as it does for every job's environment), never in a file the user's other jobs or a shared
filesystem can read. Nothing secret is ever passed on a command line (``ps`` would show it).

A handle read from the store is data: ``verify_handle`` acts on a Slurm job id only when it is a plain
number and Slurm names that job after this jobsub job (``--job-name`` and ``--comment=jobsub:<id>``), so a
rewritten record cannot make ``cancel`` scancel another of the user's jobs. The container prefix's
``{image}`` is inert: image names are checked (shell-safe characters only, no leading ``-``) and quoted.

Handle (SlurmHandle): ``{"kind": "slurm", "job_id", "cluster", "partition", "run_dir", "output", "log"}``. A
job is polled with one ``squeue --states=all`` for any number of jobs; ``scontrol show job`` is asked only
for the exit code of a job that ended without the runner writing a final state.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar, Literal

from jobsub.config import Profile, state_dir
from jobsub.errors import ExecutorUnavailableError, JobError
from jobsub.executors.base import BaseExecutor, BaseHandle, Capabilities, LaunchRequest, Observation
from jobsub.executors.slurm_settings import SlurmSettings

log = logging.getLogger(__name__)

#: the commands this executor runs; all come with any Slurm client install
COMMANDS = ("sbatch", "squeue", "scontrol", "scancel")
#: seconds a Slurm command may take before the controller counts as not answering
COMMAND_TIMEOUT = float(os.environ.get("JOBSUB_SLURM_COMMAND_TIMEOUT", "30"))
#: Slurm states in which the job (and so the runner) is not running yet
_QUEUED = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "CONFIGURING", "SUSPENDED"}
#: states in which the runner is (or may still be) running
_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING", "STOPPED"}
#: variables of the submitting shell that must not reach the job: they would point boto3 at a ~/.aws
#: profile the node may not have, or at credentials other than the ones resolved for the job
_CLIENT_ONLY = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "JOBSUB_PROFILE")
_SQUEUE_FORMAT = "%i|%T|%r|%N|%P|%m|%l|%j|%k"
#: seconds one process reuses a job's squeue answer in poll() (a follower polls every 0.3 s)
POLL_SECONDS = float(os.environ.get("JOBSUB_SLURM_POLL_SECONDS", "3"))


#: In an allocation of several nodes the runtime runs once, here on the first node, and starts the command
#: once per node through srun (the runner puts JOBSUB_COMMAND_PREFIX before `bash -c COMMAND`); each copy
#: learns its node rank from SLURM_NODEID. --overlap: the batch step holds the job's memory and CPUs;
#: --kill-on-bad-exit: one failed node fails the whole command.
_MULTI_NODE = (
    'if [ "${SLURM_JOB_NUM_NODES:-1}" -gt 1 ]; then\n'
    '    export JOBSUB_COMMAND_PREFIX="srun --overlap --nodes=$SLURM_JOB_NUM_NODES --ntasks=$SLURM_JOB_NUM_NODES'
    " --ntasks-per-node=1 --kill-on-bad-exit=1"
    ' bash -c \'export JOBSUB_NODE_RANK=\\$SLURM_NODEID; exec \\"\\$@\\"\' jobsub-node"\n'
    "fi\n"
)


def _mib(text: str) -> str:
    """Slurm's memory ('256M', '2G', '1500M') as a person reads it ('256 MiB', '2 GiB')."""
    units = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}
    text = text.strip()
    if not text or text[-1].upper() not in units:
        return text or "?"
    try:
        mib = float(text[:-1]) * units[text[-1].upper()]
    except ValueError:
        return text
    if mib >= 1024 and mib % 1024 == 0:
        return f"{mib / 1024:.0f} GiB"
    return f"{mib:g} MiB"


def sbatch_time(timeout_seconds: float) -> str:
    """Slurm's --time for a job whose runtime stops it after `timeout_seconds`: Slurm's own limit is a
    backstop that leaves the runtime time to stop the command and upload outputs (10 %, at least 5 min),
    in whole minutes (Slurm's granularity)."""
    margin = max(300.0, 0.1 * timeout_seconds)
    return str(math.ceil((timeout_seconds + margin) / 60))


class SlurmHandle(BaseHandle):
    """A batch job: Slurm's job id (checked to be a plain number before use: verify_handle) and its files."""

    kind: Literal["slurm"]
    job_id: str
    cluster: str | None = None
    partition: str | None = None
    run_dir: str | None = None
    #: the batch job's output file (slurm-<id>.out): the runner's own output before the job log starts
    output: str | None = None
    #: the same file, under the name every handle uses for it (added after the first release)
    log: str | None = None

    def runner_log(self) -> str | None:
        if self.log:
            return self.log
        return str(Path(self.run_dir) / "runner.log") if self.run_dir else None


class SlurmExecutor(BaseExecutor[SlurmHandle]):
    kind = "slurm"
    shares_client_environment = False
    capabilities = Capabilities(multi_node=True, memory_limit=True, gpus=True, secret_env=True)
    handle_model = SlurmHandle
    settings_model = SlurmSettings
    commands: ClassVar[tuple[str, ...]] = COMMANDS

    def __init__(self, profile: Profile) -> None:
        super().__init__(profile)
        self.settings = profile.section(self.kind, SlurmSettings)
        self._cache: dict[str, tuple[float, Observation]] = {}
        #: Slurm job id -> the jobsub job id the service read it for (verify_handle); checked against
        #: Slurm's job name / comment in the same squeue that polls, so `jobs` still asks squeue once
        self._expected: dict[str, str] = {}

    # -- running Slurm's commands ------------------------------------------------------------------------
    def _run(self, argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """A Slurm command; ExecutorUnavailableError (one line) when it is missing or the controller hangs."""
        if shutil.which(argv[0]) is None:
            raise ExecutorUnavailableError(
                f"slurm: {argv[0]} not found on PATH; run jobsub on a Slurm login node "
                "(or install the Slurm client: apt-get install slurm-client)"
            )
        try:
            return subprocess.run(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            raise ExecutorUnavailableError(
                f"slurm: {argv[0]} got no answer from slurmctld within {COMMAND_TIMEOUT:g}s; is the controller up?"
            ) from None

    @staticmethod
    def _error_line(result: subprocess.CompletedProcess[str]) -> str:
        """Slurm's own reason in one line: its error lines without the 'sbatch: error: ' prefixes."""
        lines = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        errors = [line.split("error:", 1)[1].strip() if "error:" in line else line for line in lines]
        unique = list(dict.fromkeys(errors)) or [f"exit code {result.returncode}"]
        text = "; ".join(unique)
        if "Unable to contact slurm controller" in text:
            where = os.environ.get("SLURM_CONF", "the cluster's slurm.conf")
            text += f" (is slurmctld up? this login node reads {where})"
        return text

    # -- the sbatch request ------------------------------------------------------------------------------
    def sbatch_options(self, request: LaunchRequest) -> list[str]:
        """The spec mapped to sbatch options; the profile's own sbatch_args come last and win."""
        s = self.settings
        opts = [f"--job-name={request.job_id}", f"--comment=jobsub:{request.job_id}"]
        if s.partition:
            opts.append(f"--partition={s.partition}")
        if s.account:
            opts.append(f"--account={s.account}")
        if s.qos:
            opts.append(f"--qos={s.qos}")
        if request.nodes and request.nodes > 1:
            opts.append(f"--nodes={request.nodes}")
        if request.cpus:
            opts.append(f"--cpus-per-task={math.ceil(request.cpus)}")
        if request.gpus:
            opts.append(f"--gpus={request.gpus}")
        if request.memory_bytes:
            opts.append(f"--mem={math.ceil(request.memory_bytes / (1 << 20))}M")
        if request.timeout_seconds:
            opts.append(f"--time={sbatch_time(request.timeout_seconds)}")
        return [*opts, *s.sbatch_args]

    def batch_script(self, request: LaunchRequest, run_dir: Path) -> str:
        """The script Slurm runs: setup lines, then exec the runtime. It holds no secret and no profile."""
        s = self.settings
        runtime = shlex.join(request.runtime_argv(str(run_dir / "work"), python=s.python))
        prefix = f"{container_prefix(s.container, request.image)} " if s.container else ""
        setup = "\n".join(s.setup)
        return (
            "#!/bin/bash\n"
            f"# jobsub job {request.job_id}, written by jobsub's slurm executor.\n"
            "# No credential is written here: the runtime's variables arrive in the job's environment through\n"
            "# sbatch --export (Slurm keeps them in the controller's private state, not on this disk).\n"
            "set -e\n"
            f"{setup}\n"
            f"{_MULTI_NODE}"
            f"exec {prefix}{runtime}\n"
        )

    def _run_root(self) -> Path:
        return Path(self.settings.work_root).expanduser() if self.settings.work_root else state_dir() / "slurm"

    def _sbatch_env(self, request: LaunchRequest) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _CLIENT_ONLY}
        env.update(request.runtime_env(include_secrets=True))
        return env

    # -- the executor interface --------------------------------------------------------------------------
    def check(self, request: LaunchRequest) -> None:
        """sbatch --test-only with the job's own options: Slurm validates partition, account, qos and
        resources (and answers at all) before anything is uploaded or recorded."""
        for name in self.commands:
            if shutil.which(name) is None:
                raise ExecutorUnavailableError(
                    f"slurm: {name} not found on PATH; run jobsub on a Slurm login node "
                    "(or install the Slurm client: apt-get install slurm-client)"
                )
        if self.settings.container and "{image}" in self.settings.container and not request.image:
            raise ExecutorUnavailableError(
                f"slurm: the profile's container prefix {self.settings.container!r} needs the job's image: "
                "set image in the spec or pass --set image=IMAGE"
            )
        if self.settings.container and request.image:
            problem = image_problem(request.image)
            if problem:
                raise ExecutorUnavailableError(f"slurm: {problem}")
        result = self._run(["sbatch", "--test-only", *self.sbatch_options(request), "--wrap", "true"])
        if result.returncode != 0:
            raise ExecutorUnavailableError(f"slurm: sbatch --test-only: {self._error_line(result)}")

    def submit(self, request: LaunchRequest) -> SlurmHandle:
        run_dir = self._run_root() / request.job_id
        run_dir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        run_dir.mkdir(mode=0o700, exist_ok=True)
        script = run_dir / "job.sbatch"
        fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o700)
        with os.fdopen(fd, "w") as handle_file:
            handle_file.write(self.batch_script(request, run_dir))
        output = run_dir / "slurm-%j.out"
        argv = [
            "sbatch",
            "--parsable",
            "--export=ALL",
            f"--chdir={run_dir}",
            f"--output={output}",
            "--open-mode=append",
            *self.sbatch_options(request),
            str(script),
        ]
        result = self._run(argv, env=self._sbatch_env(request))
        if result.returncode != 0:
            raise JobError(f"sbatch failed: {self._error_line(result)}")
        job_id, _, cluster = result.stdout.strip().splitlines()[-1].partition(";")
        return SlurmHandle(
            kind="slurm",
            job_id=job_id,
            cluster=cluster or None,
            partition=self.settings.partition,
            run_dir=str(run_dir),
            output=str(output).replace("%j", job_id),
            log=str(output).replace("%j", job_id),  # the runner's own log, named in reasons
        )

    def starts_before_record(self, request: LaunchRequest) -> bool:
        """sbatch is run beside the submit's record writes (jobs/service.py): Slurm's own start of the batch
        job overlaps them, and the runtime waits for its record (runtime/runner.py, wait_for_record)."""
        return True

    def abandon(self, handle: SlurmHandle) -> None:
        """The submit failed after sbatch and before the record was written: scancel the batch job (its
        runner is waiting for a record that will not come). The id is the one sbatch just answered."""
        if handle.job_id and _SLURM_ID.fullmatch(handle.job_id):
            self._run(["scancel", handle.job_id])

    def verify_handle(self, handle: SlurmHandle, job_id: str) -> None:
        """Refuse a Slurm job id that is not a plain number; remember which jobsub job it must be, so that
        every squeue answer (poll, cancel) is checked against Slurm's name and comment for it."""
        slurm_id = handle.job_id
        if not slurm_id:
            return
        if not _SLURM_ID.fullmatch(slurm_id):
            raise JobError(f"job {job_id}: its executor record names Slurm job {slurm_id[:40]!r}: not a job id")
        self._expected[slurm_id] = job_id

    def _foreign(self, slurm_id: str, row: dict[str, str] | None) -> str | None:
        """Why the Slurm job `row` is not the jobsub job its handle was read for (None: it is, or unknown)."""
        expected = self._expected.get(slurm_id)
        if expected is None or row is None:
            return None
        if expected in (row.get("name", ""), row.get("comment", "").removeprefix("jobsub:")):
            return None
        return (
            f"job {expected}: its executor record names Slurm job {slurm_id}, which is not this job "
            f"(Slurm calls it {row.get('name', '')[:60]!r}): not acting on it (the record was rewritten?)"
        )

    def poll(self, handle: SlurmHandle) -> Observation:
        """One job; a follower asks every 0.3 s, so answers are reused for POLL_SECONDS (squeue is an RPC to
        slurmctld, and sites ask users not to run it in a tight loop). The record's own final state is read
        every time, so this only delays noticing a runner that died without one."""
        key = handle.job_id
        cached = self._cache.get(key)
        if cached and time.monotonic() - cached[0] < POLL_SECONDS:
            return cached[1]
        observation = self.poll_many([handle])[0]
        self._cache[key] = (time.monotonic(), observation)
        return observation

    def poll_many(self, handles: Iterable[SlurmHandle]) -> list[Observation]:
        """One squeue for every job; squeue --states=all also answers for jobs that ended recently."""
        handles = list(handles)
        ids = [h.job_id for h in handles]
        wanted = sorted({i for i in ids if i})
        if not wanted:
            return [Observation("unknown") for _ in handles]
        try:
            rows = self._squeue(wanted)
        except ExecutorUnavailableError as exc:
            # another machine (a laptop with only the profile) or a controller that does not answer: the
            # record's heartbeat decides, as for any runner this machine cannot see
            log.info("cannot ask Slurm about %s: %s", ",".join(wanted), exc)
            return [Observation("unknown") for _ in handles]
        return [self._observe(handle, rows.get(job_id)) for handle, job_id in zip(handles, ids, strict=True)]

    def _squeue(self, ids: list[str]) -> dict[str, dict[str, str]]:
        result = self._run(["squeue", "--noheader", "--states=all", f"--jobs={','.join(ids)}", "-o", _SQUEUE_FORMAT])
        if result.returncode != 0:
            if "Invalid job id" in result.stderr:
                return {}  # none of them is known any more
            raise ExecutorUnavailableError(f"slurm: squeue failed: {self._error_line(result)}")
        rows: dict[str, dict[str, str]] = {}
        for line in result.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) >= 9:
                job_id, state, reason, nodes, partition, memory, limit, name = parts[:8]
                rows[job_id] = {
                    "state": state.split()[0],
                    "reason": reason,
                    "nodes": nodes,
                    "partition": partition,
                    "memory": memory,
                    "time_limit": limit,
                    "name": name.strip(),
                    "comment": "|".join(parts[8:]).strip(),
                }
        return rows

    def _observe(self, handle: SlurmHandle, row: dict[str, str] | None) -> Observation:
        foreign = self._foreign(handle.job_id, row)
        if foreign:
            return Observation("unknown", foreign)  # another job's state says nothing about this one
        if row is None:
            return Observation("dead")  # Slurm has forgotten the job and the runner left no final state
        state, reason = row["state"], row["reason"]
        if state in _QUEUED:
            why = reason if reason and reason != "None" else state.lower()
            return Observation("alive", detail=f"queued: {why}")
        if state in _RUNNING:
            return Observation("alive")
        if state == "OUT_OF_MEMORY":
            return Observation("dead", detail=f"killed: out of memory (limit {_mib(row['memory'])})", exit_code=137)
        if state == "TIMEOUT":
            return Observation("dead", detail=f"killed: Slurm time limit reached ({row['time_limit']})")
        if state == "NODE_FAIL":
            return Observation("dead", detail=f"killed: node failure ({row['nodes'] or 'node'}, Slurm NODE_FAIL)")
        if state in ("PREEMPTED", "DEADLINE", "BOOT_FAIL"):
            return Observation("dead", detail=f"killed: Slurm {state}")
        if state == "FAILED":
            return self._failed(handle)
        return Observation("dead")  # COMPLETED/CANCELLED without a final record: the runner is gone

    def _failed(self, handle: SlurmHandle) -> Observation:
        """A batch job that FAILED without a final record: a signal (runner killed) is LOST; an exit code
        means the script failed before or around the runner (a setup line, no python): say so."""
        result = self._run(["scontrol", "show", "job", "--oneliner", handle.job_id])
        fields = dict(part.split("=", 1) for part in result.stdout.split() if "=" in part)
        code, _, sig = fields.get("ExitCode", "0:0").partition(":")
        if sig not in ("", "0") or code in ("", "0"):
            return Observation("dead")
        output = handle.output or "its slurm output file"
        return Observation(
            "dead",
            detail=f"the batch script exited with {code} before the runner wrote a final state (see {output})",
            exit_code=int(code) if code.isdigit() else None,
        )

    def cancel(self, handle: SlurmHandle) -> None:
        """A running job: SIGTERM to the runner only (it stops the command with its own grace period and
        writes CANCELLED), and Slurm's time limit shortened so that Slurm itself kills whatever is left a
        minute or two later. A queued job: scancel (no runner to tell)."""
        job_id = handle.job_id
        if not job_id:
            return
        if not _SLURM_ID.fullmatch(job_id):
            raise JobError(f"Slurm job id {job_id[:40]!r} is not a job id: not cancelling it")
        self._cache.pop(job_id, None)
        row = self._squeue([job_id]).get(job_id)
        foreign = self._foreign(job_id, row)
        if foreign:
            raise JobError(foreign)
        if row is None or row["state"] not in _RUNNING:
            self._run(["scancel", job_id])
            return
        self._run(["scancel", "--batch", "--signal=TERM", job_id])
        grace = float(os.environ.get("JOBSUB_CANCEL_GRACE_SECONDS", "10"))
        used = self._run(["squeue", "--noheader", f"--jobs={job_id}", "-o", "%M"]).stdout.strip()
        minutes = math.ceil((_seconds(used) + grace + 60) / 60)
        self._run(["scontrol", "update", f"JobId={job_id}", f"TimeLimit={minutes}"])

    def describe(self, handle: SlurmHandle) -> str:
        job_id = handle.job_id
        parts = [f"slurm job {job_id}"]
        row: dict[str, str] | None = None
        try:
            row = self._squeue([job_id]).get(job_id)
        except ExecutorUnavailableError:
            row = None
        partition = (row or {}).get("partition") or handle.partition
        if partition:
            parts.append(f"partition {partition}")
        if row and row.get("nodes"):
            parts.append(f"node {row['nodes']}")
        if handle.cluster:
            parts.append(f"cluster {handle.cluster}")
        return ", ".join(parts)


#: a Slurm job id (an array task is 123_4)
_SLURM_ID = re.compile(r"[0-9]{1,12}(_[0-9]{1,9})?")
#: image references as container tools take them (docker://org/img:tag@sha256:..., /shared/img.sif): only
#: characters the shell never interprets, in any quoting, and no leading '-' (it would be an option)
_IMAGE = re.compile(r"[A-Za-z0-9_./][A-Za-z0-9_.@%+=:,/-]{0,511}", re.ASCII)


def image_problem(image: str) -> str | None:
    """Why `image` cannot be put into the container prefix (None: fine)."""
    if _IMAGE.fullmatch(image):
        return None
    shown = image if len(image) <= 80 and image.isprintable() else repr(image[:80])
    return (
        f"image {shown!r} is not an image name: use letters, digits and . _ / : @ % + = , - "
        "(e.g. docker://org/train:1 or /shared/train.sif)"
    )


def container_prefix(template: str, image: str | None) -> str:
    """The profile's container prefix with the job's image in place of {image}, e.g.
    'apptainer exec --nv {image}' + image 'docker://org/train:1' -> apptainer exec --nv docker://org/train:1.

    The image is validated (shell-safe characters only), so it stays one inert word whatever quotes the
    template puts around it ('{image}', "{image}"); it is also shlex-quoted, which leaves such a name as is."""
    if not image or "{image}" not in template:
        return template
    problem = image_problem(image)
    if problem:
        raise ExecutorUnavailableError(f"slurm: {problem}")
    return template.replace("{image}", shlex.quote(image))


def _seconds(elapsed: str) -> float:
    """squeue's %M ('1:02', '1:02:03', '2-01:02:03') in seconds; 0 when unreadable."""
    days, _, clock = elapsed.rpartition("-")
    try:
        parts = [int(p) for p in clock.split(":")]
    except ValueError:
        return 0.0
    seconds = 0
    for part in parts:
        seconds = seconds * 60 + part
    return seconds + (int(days) * 86400 if days.isdigit() else 0)
