"""The runner: one job from STAGING to its final state. Started by every executor through __main__.

Rules it keeps (each one a bug once): it claims the job before doing anything, so a second runner exits
instead of running the command twice; staging and output failures fail the job with the reason and are
said in the job log; the code archive is checked against its SHA-256 before it is unpacked; nothing is
written outside the work folder; the command's whole process group dies with the runner, on cancel, on
timeout and when the runner itself fails; a signal exit is reported as 128+N; the signal handlers only
set a flag (the code they interrupt may hold any lock), a watcher thread does the rest.
"""

from __future__ import annotations

import logging
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobsub.costs import cost_limit_reached, money
from jobsub.errors import (
    ConditionalWriteUnsupported,
    IntegrityError,
    JobClaimedError,
    JobNotFoundError,
    JobsubError,
    ObjectNotFoundError,
    RecordFormatError,
    TransferInterrupted,
)
from jobsub.executors.base import RunnerPlace
from jobsub.executors.record_wait import record_wait_seconds
from jobsub.jobs.models import JobDocument, RunnerClaim
from jobsub.jobs.packaging import unpack_code, verify_archive
from jobsub.jobs.records import JobRecord, JobStatus, State, now_iso
from jobsub.jobs.spec import IDENT_RE
from jobsub.redact import register_secret
from jobsub.runtime.launch_env import launcher_env
from jobsub.runtime.logship import LogShipper
from jobsub.runtime.oom import OomWatch
from jobsub.runtime.outputs import OutputUploader, OutputUploadError
from jobsub.runtime.procs import (
    RUNNER_ID_ENV,
    Watchdog,
    become_subreaper,
    die_with_parent,
    kill_descendants,
    signal_group,
    wait_leader_exit,
)
from jobsub.storage.base import ObjectStore
from jobsub.units import human_duration, parse_size
from jobsub.uri import ObjectURI

if TYPE_CHECKING:  # imported when staging needs it: a job without inputs starts its command without it
    from jobsub.transfer import TransferManager, TransferOptions, TransferSummary

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = float(os.environ.get("JOBSUB_HEARTBEAT_SECONDS", "5"))
CANCEL_GRACE_SECONDS = float(os.environ.get("JOBSUB_CANCEL_GRACE_SECONDS", "10"))
OUTPUT_SYNC_SECONDS = float(os.environ.get("JOBSUB_OUTPUT_SYNC_SECONDS", "60"))
#: Optional caps on the runtime's transfer rates (e.g. 50MiB, per second), for shared links.
STAGING_MAX_BANDWIDTH = os.environ.get("JOBSUB_STAGING_MAX_BANDWIDTH")
OUTPUT_MAX_BANDWIDTH = os.environ.get("JOBSUB_OUTPUT_MAX_BANDWIDTH")


def wait_for_record(record: JobRecord, seconds: float | None = None) -> tuple[JobDocument, JobStatus]:
    """The job's document and status once both are there (status.json is written after job.json), polled
    every 20-250 ms for `seconds` (record_wait_seconds()). A record that never comes is JobNotFoundError in
    one line (the submit that started this runner failed or was stopped before writing it); a job.json
    that names another job is refused (a record copied or rewritten: nothing of that job is acted on)."""
    wait = record_wait_seconds() if seconds is None else seconds
    deadline = time.monotonic() + wait
    delay = 0.02
    while True:
        try:
            job = record.read_document()
            status = record.read_status()
            break
        except JobNotFoundError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise JobNotFoundError(
                    f"job record {record.uri()} did not appear within {wait:g} s of the runner's start "
                    "(JOBSUB_RECORD_WAIT_SECONDS): nothing was run; the submit that started this runner failed "
                    "or was stopped before writing it"
                ) from None
            time.sleep(min(delay, left))
            delay = min(delay * 1.5, 0.25)
    if job.id != record.job_id:
        raise RecordFormatError(
            f"{record.uri('job.json')} names job {job.id[:80]!r}, not {record.job_id!r}: not running it "
            "(the record was copied or rewritten)"
        )
    return job, status


class StagingError(JobsubError):
    pass


class StatusWriter:
    """The runner's copy of status.json; the heartbeat thread and the main flow write it under one lock.

    Where the store cannot do conditional writes the claim is a lease: before each write the claim is read
    back, and a runner that lost it stops writing (``lost`` is set and the runner stops the job)."""

    def __init__(self, record: JobRecord, status: JobStatus) -> None:
        self.record = record
        self.status = status
        self.claim_token: str | None = None  # set in lease mode
        self.lost = threading.Event()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def set(self, **changes: Any) -> None:
        """Change the runner's copy without writing it: the next `update` (or heartbeat) writes it with its
        own changes, one PUT for both (RUNNING goes out with the command's process group, see _run_command)."""
        with self._lock:
            for name, value in changes.items():
                setattr(self.status, name, value)

    def update(self, **changes: Any) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(self.status, name, value)
            self.status.heartbeat = time.time()
            self._write()

    def _still_ours(self) -> bool:
        if self.claim_token is None:
            return True
        try:
            claim = self.record.read_claim()
        except JobsubError:
            return True  # cannot tell now; the next write checks again
        if claim is not None and claim.token != self.claim_token:
            self.lost.set()
            return False
        return True

    def _write(self) -> None:
        if self.lost.is_set() or not self._still_ours():
            return
        for attempt in range(5):
            try:
                self.record.write_status(self.status)
                return
            except JobsubError as exc:
                log.warning("status not written (%s), attempt %d", exc, attempt + 1)
                time.sleep(1 + attempt)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            with self._lock:
                if self.status.state.final:
                    return
                self.status.heartbeat = time.time()
                self._write()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()


class Runner:
    def __init__(self, store: ObjectStore, record: JobRecord, work_dir: Path) -> None:
        self.store = store
        self.record = record
        self.work = work_dir.resolve()
        # version checked, validated, units parsed once; waited for when the runner started before it
        self.job, first_status = wait_for_record(record)
        self.spec = self.job.spec
        self.outputs_uri = ObjectURI.parse(self.job.outputs).as_prefix()
        self.outputs_dir = self.work / "outputs"
        self.metrics_file = self.work / "metrics.jsonl"
        self.code_dir = self.work / "code"
        self.token = secrets.token_hex(4)  # this runner's id: in its claim and in its log chunk names
        self.status = StatusWriter(record, first_status)
        self.logs = LogShipper(record, first_chunk=self._existing_chunks(), writer=self.token)
        # the bandwidth knobs are read now: a value that is no size fails the job before it runs, not after
        staging_bandwidth = parse_size(STAGING_MAX_BANDWIDTH) if STAGING_MAX_BANDWIDTH else None
        self._staging_bandwidth = staging_bandwidth
        output_bandwidth = parse_size(OUTPUT_MAX_BANDWIDTH) if OUTPUT_MAX_BANDWIDTH else None
        self.outputs = OutputUploader(
            store, self.outputs_dir, self.outputs_uri, self.logs.say, lambda: _output_options(output_bandwidth)
        )
        self.stop_reason: str | None = None  # "cancel" | "timeout" once the job must stop
        self._stop_lock = threading.Lock()  # stop_reason and _proc, set from two threads
        self._signal: int | None = None  # set by the signal handler, acted on by the watcher
        self._proc: subprocess.Popen | None = None
        self._watchdog_pid = 0  # never signalled by kill_descendants
        self._leader_exited = threading.Event()
        self._deadline: float | None = None
        self._done = threading.Event()
        self._metrics_size = -1
        self._staging_manager: TransferManager | None = None  # made when staging first downloads
        self._staging_cancelled = False
        for name in self.job.secret_env:  # values came through the executor; redact them too
            register_secret(os.environ.get(name))
        self._started = time.monotonic()
        cost = self.job.cost
        self._rate = cost.rate_per_hour if cost else 0.0  # compute price per hour (jobsub/costs.py)
        self._max_cost: float | None = cost.max_cost if cost else None
        self._currency = cost.currency if cost else ""
        self._cost_stop = ""  # the cost-limit reason, fixed when the limit is reached

    @property
    def _staging(self) -> TransferManager:
        """The staging downloads' transfer engine, imported and made on first use (cancelled already when
        the job was stopped before it existed)."""
        if self._staging_manager is None:
            from jobsub.transfer import TransferManager, TransferOptions

            options = TransferOptions(concurrency=4)
            if self._staging_bandwidth:
                options.max_bandwidth = self._staging_bandwidth
            self._staging_manager = TransferManager(self.store, options)
            if self._staging_cancelled:
                self._staging_manager.cancel()
        return self._staging_manager

    def _existing_chunks(self) -> int:
        """A restarted runner appends after the chunks an earlier attempt wrote."""
        keys = self.record.chunks_after("")
        return JobRecord.chunk_number(keys[-1]) + 1 if keys else 0

    # -- claim ---------------------------------------------------------------------------------------------
    def claim(self) -> None:
        """Become the job's only runner, or raise JobClaimedError naming the one that is."""
        mine = RunnerClaim(host=os.uname().nodename, pid=os.getpid(), token=self.token, claimed=now_iso())
        try:
            won = self.record.claim(mine)
        except ConditionalWriteUnsupported:
            won = self._claim_lease(mine)
        if not won:
            other = self.record.read_claim() or RunnerClaim()
            raise JobClaimedError(f"job {self.record.job_id} is already being run by {other.holder()}")
        status = self.record.read_status()
        if status.state.final:
            raise JobClaimedError(f"job {self.record.job_id} is already {status.state.value}; not running it again")

    def _claim_lease(self, mine: RunnerClaim) -> bool:
        """No conditional writes: claim only an unclaimed job, then re-check the claim before every status write."""
        if self.record.read_claim() is not None:
            return False
        self.record.write_claim(mine)
        time.sleep(1.0)  # a racing runner's write lands in this window; the last writer wins, the other stops
        claim = self.record.read_claim()
        self.status.claim_token = self.token
        return claim is not None and claim.token == self.token

    # -- main flow -----------------------------------------------------------------------------------------
    def run(self) -> int:
        self.claim()
        become_subreaper()  # orphans of the job (setsid + double fork) come back to us, never to init
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        place = RunnerPlace(kind="runtime", host=os.uname().nodename, pid=os.getpid(), runner=self.token)
        self.status.update(state=State.STAGING, started=self.status.status.started or now_iso(), executor=place)
        self.status.start()
        self.logs.on_tick.append(self._sync_metrics)
        self.logs.start()
        watcher = threading.Thread(target=self._watch, name="watcher", daemon=True)
        watcher.start()
        try:
            final = self._run_attempts()
        except Exception as exc:  # anything unexpected still ends in a final state with a reason
            log.exception("runner failed")
            self.logs.say(f"runner error: {exc}")
            final = {"state": State.FAILED, "exit_code": 1, "reason": f"runner error: {exc}"}
        finally:
            self._kill_command()
        self._finish(**final)
        self._done.set()
        return 0 if final["state"] == State.SUCCEEDED else 1

    def _on_signal(self, signum: int, _frame: Any) -> None:
        """Only a flag: the interrupted code may hold the log or status lock, so nothing here takes one."""
        self._signal = signum

    def _watch(self) -> None:
        """Acts on signals, the cancel marker (every second), the timeout and periodic output uploads."""
        last_marker = 0.0
        last_outputs = time.monotonic()
        while not self._done.wait(0.1):
            now = time.monotonic()
            if self._signal is not None and not self.stop_reason:
                self._request_stop("cancel", f"received {signal.Signals(self._signal).name}")
            if self._deadline and now > self._deadline and not self.stop_reason:
                self._request_stop("timeout", f"timeout of {self.spec.timeout} reached")
            # every second the resources are held counts: staging, the command and the output upload
            if not self.stop_reason and cost_limit_reached(self._rate, now - self._started, self._max_cost):
                self._cost_stop = self._cost_reason()
                self._request_stop("cost", self._cost_stop)
                self.outputs.cancel()
            if self.status.lost.is_set() and not self.stop_reason:
                self._request_stop("cancel", "another runner took over this job")
            if now - last_marker >= 1.0 and not self.stop_reason:
                last_marker = now
                try:
                    if self.record.cancel_requested():
                        self._request_stop("cancel", "cancel requested")
                except JobsubError:
                    pass
            if self.status.status.state == State.RUNNING and now - last_outputs >= OUTPUT_SYNC_SECONDS:
                last_outputs = now
                self.outputs.request()

    def _request_stop(self, reason: str, why: str) -> None:
        with self._stop_lock:  # against _run_command publishing a command just started (see there)
            if self.stop_reason:
                return
            self.stop_reason = reason
            proc = self._proc
        self.logs.say(f"{why}; stopping the job")
        self._staging_cancelled = True
        if self._staging_manager is not None:
            self._staging_manager.cancel()
        if proc is not None:
            self._stop_command(proc)

    def _stop_command(self, proc: subprocess.Popen) -> None:
        """SIGTERM to the command's group (and its escaped children), SIGKILL after the grace."""
        signal_group(proc.pid, signal.SIGTERM)
        self._signal_escaped(signal.SIGTERM)  # children that left the group get the same grace
        if not self._leader_exited.wait(CANCEL_GRACE_SECONDS):
            self.logs.say(f"still running after {CANCEL_GRACE_SECONDS:g}s; sending SIGKILL")
            signal_group(proc.pid, signal.SIGKILL)
            self._signal_escaped(signal.SIGKILL)

    def _stopped_from_outside(self) -> bool:
        """The runner itself got SIGTERM/SIGINT, or the record asks for a cancel: a command that just died
        was stopped, it did not fail on its own."""
        if self._signal is not None:
            return True
        try:
            return self.record.cancel_requested()
        except JobsubError:
            return False

    def _signal_escaped(self, sig: int) -> None:
        """Signal every process below the runner but the watchdog: with the runner a subreaper, that is all the
        job started, in its group or not. The leader's zombie is never reaped here (proc.wait does that)."""
        proc = self._proc
        keep = proc.pid if proc is not None else 0
        kill_descendants(sig, exclude=frozenset({self._watchdog_pid} - {0}), keep_zombie=keep)

    def _run_attempts(self) -> dict[str, Any]:
        try:
            paths = self._stage()
        except TransferInterrupted:
            paths = None
        except (StagingError, IntegrityError) as exc:
            if self.stop_reason == "cost":  # staging stopped by the cost limit: that is the reason
                return {"state": State.FAILED, "exit_code": None, "reason": self._cost_reason()}
            self.logs.say(str(exc))
            return {"state": State.FAILED, "exit_code": None, "reason": str(exc)}
        except JobsubError as exc:
            self.logs.say(f"staging failed: {exc}")
            return {"state": State.FAILED, "exit_code": None, "reason": f"staging failed: {exc}"}
        if self.stop_reason or paths is None:
            if self.stop_reason == "timeout":
                return {"state": State.FAILED, "exit_code": None, "reason": f"timed out after {self.spec.timeout}"}
            if self.stop_reason == "cost":
                return {"state": State.FAILED, "exit_code": None, "reason": self._cost_reason() + " while staging"}
            return {"state": State.CANCELLED, "exit_code": None, "reason": "cancelled while staging"}
        attempts = self.spec.max_retries + 1
        while True:
            attempt = self.status.status.attempt + 1
            self.status.set(state=State.RUNNING, attempt=attempt)  # written with the pgid, once it runs
            oom = OomWatch()
            code = self._run_command(paths)
            if not self.stop_reason and code != 0 and self._stopped_from_outside():
                # a scheduler's stop (Ray, Slurm) signals the whole tree at once: the command can die of it
                # before the watcher has turned the runner's own SIGTERM or the cancel marker into a stop
                self._request_stop("cancel", "the job was stopped from outside (cancel)")
            if self.stop_reason == "cancel":
                return {"state": State.CANCELLED, "exit_code": code, "reason": "cancelled by request"}
            if self.stop_reason == "timeout":
                return {"state": State.FAILED, "exit_code": code, "reason": f"timed out after {self.spec.timeout}"}
            if self.stop_reason == "cost":
                return {"state": State.FAILED, "exit_code": code, "reason": self._cost_reason()}
            if code == 0:
                return {"state": State.SUCCEEDED, "exit_code": 0, "reason": None}
            reason = oom.reason(code) or exit_reason(code)
            if attempt >= attempts:
                return {"state": State.FAILED, "exit_code": code, "reason": reason}
            self.logs.say(f"attempt {attempt} failed ({reason}); retrying ({attempt}/{attempts - 1} retries used)")
            try:
                self.outputs.final("before retry")
            except OutputUploadError as exc:
                self.logs.say(str(exc))

    def _finish(self, state: State, exit_code: int | None, reason: str | None) -> None:
        if state != State.CANCELLED or self.outputs_dir.is_dir():
            self.status.update(state=State.UPLOADING)
            try:
                self.outputs.final()
            except OutputUploadError as exc:
                self.logs.say(str(exc))
                if state == State.SUCCEEDED:
                    state, reason = State.FAILED, str(exc)
            if self.stop_reason == "cost" and not (reason or "").startswith("cost limit"):  # came during the upload
                state, reason = State.FAILED, self._cost_reason() + " while uploading outputs"
        try:
            self._sync_metrics()
        except JobsubError as exc:
            self.logs.say(f"metrics not saved: {exc}")
        self.logs.say(f"job {state.value.lower()}" + (f": {reason}" if reason else ""))
        self.logs.close()
        self.status.stop()
        self.status.update(state=state, exit_code=exit_code, reason=reason, finished=now_iso())

    # -- staging -----------------------------------------------------------------------------------------
    def _inside_work(self, path: Path, what: str) -> Path:
        resolved = path.resolve()
        if not resolved.is_relative_to(self.work):
            raise StagingError(f"staging input data failed: {what} resolves to {resolved}, outside the work folder")
        return resolved

    def _stage(self) -> dict[str, str]:
        self.work.mkdir(parents=True, exist_ok=True)
        paths: dict[str, str] = {}
        inputs = self.job.inputs
        for name in inputs:
            if not IDENT_RE.match(name):
                raise StagingError(f"staging input data failed: input name {name!r} is not allowed")
        failures: list[str] = []
        files = 0
        for name, uri in inputs.items():
            target = self._inside_work(self.work / "inputs" / name, f"input {name!r}")
            self.logs.say(f"staging input {name} from {uri}")
            source = ObjectURI.parse(uri)
            target.mkdir(parents=True, exist_ok=True)
            try:
                summary = self._staging.download(source, target)
            except ObjectNotFoundError as exc:
                failures.append(f"{name}: {exc}")
                continue
            files += summary.files + len(summary.refused)
            failures.extend(self._staging_failures(name, source, summary))
            single = source.key and not source.is_prefix and self.store.head(source.bucket, source.key)
            paths[name] = str(target / source.name) if single else str(target)
            self.logs.say(
                f"input {name}: {summary.files} files, {summary.bytes_total} bytes "
                f"({summary.files_skipped} already here) -> {paths[name]}"
            )
            if self.stop_reason:
                raise TransferInterrupted("staging stopped")
        if failures:
            raise StagingError(
                f"staging input data failed: {len(failures)} of {max(files, len(failures))} files: "
                + "; ".join(failures[:5])
                + (f" (and {len(failures) - 5} more)" if len(failures) > 5 else "")
            )
        self._stage_code()
        self.outputs_dir.mkdir(parents=True, exist_ok=True)
        try:  # a retried or resubmitted job continues from the checkpoints already in its outputs
            if not self._has_objects(self.outputs_uri):
                return paths  # nothing to restore (a first run): no transfer engine needed to say so
            summary = self._staging.download(self.outputs_uri, self.outputs_dir)
            if summary.failures or summary.refused:
                problems = self._staging_failures("outputs", self.outputs_uri, summary)
                raise StagingError(
                    f"restoring earlier outputs failed: {len(problems)} files: " + "; ".join(problems[:5])
                )
            if summary.files:
                self.logs.say(f"restored {summary.files} files from {self.outputs_uri} (checkpoints to resume from)")
        except ObjectNotFoundError:
            pass
        return paths

    def _has_objects(self, prefix: ObjectURI) -> bool:
        """Whether anything is stored under `prefix` (one listing page, the first key is enough)."""
        return next(iter(self.store.iter_objects(prefix.bucket, prefix.key)), None) is not None

    @staticmethod
    def _staging_failures(name: str, source: ObjectURI, summary: TransferSummary) -> list[str]:
        prefix = f"s3://{source.bucket}/{source.as_prefix().key if source.key else ''}"
        problems = []
        for line in summary.failures:
            where, _, reason = line.partition(": ")
            rel = where[len(prefix) :] if where.startswith(prefix) else where.rsplit("/", 1)[-1]
            if "wrong checksum" in reason:
                reason = "wrong checksum"
            problems.append(f"{name}/{rel}: {reason}")
        for key in summary.refused:
            rel = key[len(source.as_prefix().key) :] if source.key else key
            problems.append(f"{name}/{rel}: unsafe key, refused")
        return problems

    def _stage_code(self) -> None:
        code = self.job.code
        if code is None:
            self.code_dir.mkdir(parents=True, exist_ok=True)
            return
        marker = self.code_dir / ".jobsub-code-sha256"
        if not (marker.is_file() and marker.read_text() == code.sha256):
            shutil.rmtree(self.code_dir, ignore_errors=True)
            src = ObjectURI.parse(code.uri)
            named = src.name.removesuffix(".tar.gz")
            if named != code.sha256:
                raise IntegrityError(f"code archive {src} is not the one the job record names ({code.sha256[:12]})")
            data = self.store.get(src.bucket, src.key)
            verify_archive(data, code.sha256, str(src))
            unpack_code(data, self.code_dir)
            marker.write_text(code.sha256)
        self.logs.say(f"code {code.sha256[:12]} ({code.files} files, SHA-256 verified) in {self.code_dir}")

    # -- the command -----------------------------------------------------------------------------------
    def _run_command(self, paths: dict[str, str]) -> int:
        values: dict[str, dict[str, Any]] = {
            "inputs": paths,
            "params": self.spec.params,
            "outputs": {"dir": str(self.outputs_dir)},
            "job": {"id": self.record.job_id},
        }
        command = self.spec.render_command(values)
        env = {k: v for k, v in os.environ.items() if k != "JOBSUB_PROFILE_JSON"}
        # the runtime's own interpreter comes first on PATH, so `python` in a command is one with jobsub installed
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env.update(launcher_env(self.spec.resources, env))  # JOBSUB_NPROC, MASTER_ADDR, ... for torchrun
        env.update(self.spec.env)
        env.update(
            {
                "JOBSUB_JOB_ID": self.record.job_id,
                "JOBSUB_OUTPUT_DIR": str(self.outputs_dir),
                "JOBSUB_METRICS_FILE": str(self.metrics_file),
                "JOBSUB_ATTEMPT": str(self.status.status.attempt),
                RUNNER_ID_ENV: self.token,  # how the watchdog and `cancel` recognise what this runner started
                "PYTHONUNBUFFERED": "1",
            }
        )
        for name, path in paths.items():
            env[f"JOBSUB_INPUT_{name.upper()}"] = path
        for name, value in self.spec.params.items():
            env[f"JOBSUB_PARAM_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
        timeout = self.job.timeout_seconds  # parsed once, when the record was loaded
        self._deadline = time.monotonic() + timeout if timeout is not None else None
        self.logs.say(f"running: {command}")
        self._leader_exited.clear()
        runner_pid = os.getpid()
        proc = subprocess.Popen(
            [*shlex.split(os.environ.get("JOBSUB_COMMAND_PREFIX", "")), "bash", "-c", command],
            cwd=str(self.code_dir),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=lambda: die_with_parent(runner_pid),
        )
        watchdog = Watchdog(proc.pid, self.token)
        self._watchdog_pid = watchdog.proc.pid
        pumps: list[threading.Thread] = []
        try:
            watchdog.wait_ready()  # before the job's output shows: its escaped children are known from here on
            self.logs.before_write = watchdog.snapshot  # and each chunk of it is shipped after a fresh snapshot
            with self._stop_lock:  # a stop asked for since the last check (e.g. during the Popen) found no
                self._proc = proc  # command to signal: it is this one's to carry out, on a thread (the grace
                stopped_meanwhile = self.stop_reason is not None  # waits for the leader's exit, seen below)
            if stopped_meanwhile:
                threading.Thread(target=self._stop_command, args=(proc,), name="stop-command", daemon=True).start()
            # RUNNING (set by _run_attempts), the attempt and the command's process group in one PUT, after the
            # command was started: no status write between the staging and the command's start
            self.status.update(executor=self.status.status.executor.model_copy(update={"pgid": proc.pid}))
            pumps = [self.logs.pump(proc.stdout, "out"), self.logs.pump(proc.stderr, "err")]  # type: ignore[arg-type]
            wait_leader_exit(proc.pid)
            self._leader_exited.set()
            signal_group(proc.pid, signal.SIGKILL)  # whatever the command left behind in its group
            self._signal_escaped(signal.SIGKILL)  # and outside it (setsid, double fork): nothing outlives the job
            code = proc.wait()
        finally:
            with self._stop_lock:
                self._proc = proc  # whatever failed above, this command is the one to end now
            self._kill_command()
            self.logs.before_write = None
            watchdog.done()
            self._proc = None
        for pump in pumps:
            pump.join(timeout=5)
        return code if code >= 0 else 128 - code  # killed by signal N: 128+N, as a shell reports it

    def _kill_command(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            signal_group(proc.pid, signal.SIGKILL)
            self._signal_escaped(signal.SIGKILL)
            proc.wait()

    def _cost_reason(self) -> str:
        """The reason when the cost limit stopped the job, with the time it was reached (kept from then on)."""
        if self._cost_stop:
            return self._cost_stop
        elapsed = human_duration(time.monotonic() - self._started)
        return f"cost limit {money(self._max_cost, self._currency)} reached after {elapsed}"

    # -- periodic side tasks ----------------------------------------------------------------------------
    def _sync_metrics(self) -> None:
        try:
            size = self.metrics_file.stat().st_size
        except OSError:
            return
        if size != self._metrics_size:
            data = self.metrics_file.read_bytes()
            self.store.put(self.record.bucket, self.record.key("metrics.jsonl"), data)
            self._metrics_size = len(data)


def _output_options(max_bandwidth: int | None) -> TransferOptions:
    from jobsub.transfer import TransferOptions

    options = TransferOptions(concurrency=4, part_attempts=2)
    if max_bandwidth:
        options.max_bandwidth = max_bandwidth
    return options


def exit_reason(code: int) -> str:
    if code == 127:
        return "command not found (exit code 127)"
    if code == 126:
        return "command not executable (exit code 126)"
    if code < 0 or code > 128:
        number = -code if code < 0 else code - 128
        try:
            return f"killed by {signal.Signals(number).name} (exit code {128 + number})"
        except ValueError:
            pass
    return f"exit code {code}"
