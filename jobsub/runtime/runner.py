"""The runner: one job from STAGING to its final state. Started by every executor through __main__."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from jobsub.costs import cost_limit_reached, money
from jobsub.errors import JobsubError, ObjectNotFoundError
from jobsub.jobs.packaging import unpack_code
from jobsub.jobs.records import JobRecord, JobStatus, State, now_iso
from jobsub.jobs.spec import JobSpec
from jobsub.runtime.logship import LogShipper
from jobsub.storage.base import ObjectStore
from jobsub.transfer import TransferManager, TransferOptions
from jobsub.units import human_duration, parse_duration
from jobsub.uri import ObjectURI

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = float(os.environ.get("JOBSUB_HEARTBEAT_SECONDS", "5"))
CANCEL_GRACE_SECONDS = float(os.environ.get("JOBSUB_CANCEL_GRACE_SECONDS", "10"))
OUTPUT_SYNC_SECONDS = float(os.environ.get("JOBSUB_OUTPUT_SYNC_SECONDS", "60"))


class StatusWriter:
    """The runner's copy of status.json; the heartbeat thread and the main flow write it under one lock."""

    def __init__(self, record: JobRecord, status: JobStatus) -> None:
        self.record = record
        self.status = status
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def update(self, **changes: Any) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(self.status, name, value)
            self.status.heartbeat = time.time()
            self._write()

    def _write(self) -> None:
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
        self.work = work_dir
        self.job = record.read_job()
        self.spec = JobSpec.model_validate(self.job["spec"])
        self.outputs_uri = ObjectURI.parse(self.job["outputs"]).as_prefix()
        self.outputs_dir = self.work / "outputs"
        self.metrics_file = self.work / "metrics.jsonl"
        self.status = StatusWriter(record, record.read_status())
        self.logs = LogShipper(record, first_chunk=self._existing_chunks())
        self.stop_reason: str | None = None  # "cancel" | "timeout" once the job must stop
        self._metrics_size = -1
        self._last_output_sync = time.monotonic()
        self._transfer = TransferManager(store, TransferOptions(concurrency=4))
        self._started = time.monotonic()
        cost = self.job.get("cost") or {}
        self._rate = float(cost.get("rate_per_hour", 0.0))  # compute price per hour (jobsub/costs.py)
        self._max_cost: float | None = cost.get("max_cost")
        self._currency = str(cost.get("currency", ""))

    def _existing_chunks(self) -> int:
        """A restarted runner appends after the chunks an earlier attempt wrote."""
        keys = self.record.chunks_after("")
        return int(keys[-1].rsplit("/", 1)[1].split(".")[0]) + 1 if keys else 0

    # -- main flow -----------------------------------------------------------------------------------------
    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self._request_stop("cancel"))
        signal.signal(signal.SIGINT, lambda *_: self._request_stop("cancel"))
        handle = {"kind": "runtime", "host": os.uname().nodename, "pid": os.getpid()}
        self.status.update(state=State.STAGING, started=self.status.status.started or now_iso(), executor={**handle})
        self.status.start()
        self.logs.on_tick.append(self._sync_metrics)
        self.logs.on_tick.append(self._periodic_outputs)
        self.logs.start()
        try:
            final = self._run_attempts()
        except Exception as exc:  # anything unexpected still ends in a final state with a reason
            log.exception("runner failed")
            self.logs.say(f"runner error: {exc}")
            final = {"state": State.FAILED, "exit_code": 1, "reason": f"runner error: {exc}"}
        self._finish(**final)
        return 0 if final["state"] == State.SUCCEEDED else 1

    def _run_attempts(self) -> dict[str, Any]:
        try:
            paths = self._stage()
        except JobsubError as exc:
            self.logs.say(f"staging failed: {exc}")
            return {"state": State.FAILED, "exit_code": None, "reason": f"staging failed: {exc}"}
        if self.stop_reason:
            return {"state": State.CANCELLED, "exit_code": None, "reason": "cancelled while staging"}
        attempts = self.spec.max_retries + 1
        while True:
            attempt = self.status.status.attempt + 1
            self.status.update(state=State.RUNNING, attempt=attempt)
            code = self._run_command(paths)
            if self.stop_reason == "cancel":
                return {"state": State.CANCELLED, "exit_code": code, "reason": "cancelled by request"}
            if self.stop_reason == "timeout":
                return {"state": State.FAILED, "exit_code": code, "reason": f"timed out after {self.spec.timeout}"}
            if self.stop_reason == "cost":
                return {"state": State.FAILED, "exit_code": code, "reason": self._cost_reason()}
            if code == 0:
                return {"state": State.SUCCEEDED, "exit_code": 0, "reason": None}
            reason = _exit_reason(code)
            if attempt >= attempts:
                return {"state": State.FAILED, "exit_code": code, "reason": reason}
            self.logs.say(f"attempt {attempt} failed ({reason}); retrying ({attempt}/{attempts - 1} retries used)")
            self._upload_outputs()

    def _finish(self, state: State, exit_code: int | None, reason: str | None) -> None:
        if state != State.CANCELLED or self.outputs_dir.is_dir():
            self.status.update(state=State.UPLOADING)
            try:
                self._upload_outputs()
            except JobsubError as exc:
                self.logs.say(f"uploading outputs failed: {exc}")
                if state == State.SUCCEEDED:
                    state, exit_code, reason = State.FAILED, exit_code, f"uploading outputs failed: {exc}"
        self._sync_metrics()
        self.logs.say(f"job {state.value.lower()}" + (f": {reason}" if reason else ""))
        self.logs.close()
        self.status.stop()
        self.status.update(state=state, exit_code=exit_code, reason=reason, finished=now_iso())

    # -- staging -----------------------------------------------------------------------------------------
    def _stage(self) -> dict[str, str]:
        self.work.mkdir(parents=True, exist_ok=True)
        paths: dict[str, str] = {}
        for name, uri in self.job["inputs"].items():
            target = self.work / "inputs" / name
            self.logs.say(f"staging input {name} from {uri}")
            source = ObjectURI.parse(uri)
            target.mkdir(parents=True, exist_ok=True)
            summary = self._transfer.download(source, target)
            single = source.key and not source.is_prefix and self.store.head(source.bucket, source.key)
            paths[name] = str(target / source.name) if single else str(target)
            self.logs.say(
                f"input {name}: {summary.files} files, {summary.bytes_total} bytes "
                f"({summary.files_skipped} already here) -> {paths[name]}"
            )
            if self.stop_reason:
                return paths
        code = self.job.get("code")
        self.code_dir = self.work / "code"
        if code:
            marker = self.code_dir / ".jobsub-code-sha256"
            if not (marker.is_file() and marker.read_text() == code["sha256"]):
                shutil.rmtree(self.code_dir, ignore_errors=True)
                src = ObjectURI.parse(code["uri"])
                unpack_code(self.store.get(src.bucket, src.key), self.code_dir)
                marker.write_text(code["sha256"])
            self.logs.say(f"code {code['sha256'][:12]} ({code['files']} files) in {self.code_dir}")
        else:
            self.code_dir.mkdir(parents=True, exist_ok=True)
        self.outputs_dir.mkdir(parents=True, exist_ok=True)
        try:  # a retried or resubmitted job continues from the checkpoints already in its outputs
            summary = self._transfer.download(self.outputs_uri, self.outputs_dir)
            if summary.files:
                self.logs.say(f"restored {summary.files} files from {self.outputs_uri} (checkpoints to resume from)")
        except ObjectNotFoundError:
            pass
        return paths

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
        env.update(self.spec.env)
        env.update(
            {
                "JOBSUB_JOB_ID": self.record.job_id,
                "JOBSUB_OUTPUT_DIR": str(self.outputs_dir),
                "JOBSUB_METRICS_FILE": str(self.metrics_file),
                "JOBSUB_ATTEMPT": str(self.status.status.attempt),
                "PYTHONUNBUFFERED": "1",
            }
        )
        for name, path in paths.items():
            env[f"JOBSUB_INPUT_{name.upper().replace('-', '_')}"] = path
        for name, value in self.spec.params.items():
            env[f"JOBSUB_PARAM_{name.upper().replace('-', '_')}"] = str(value)
        self.logs.say(f"running: {command}")
        proc = subprocess.Popen(
            ["bash", "-c", command],
            cwd=str(self.code_dir),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        pumps = [self.logs.pump(proc.stdout, "out"), self.logs.pump(proc.stderr, "err")]  # type: ignore[arg-type]
        deadline = time.monotonic() + parse_duration(self.spec.timeout) if self.spec.timeout else None
        last_cancel_check = 0.0
        while proc.poll() is None:
            if deadline and time.monotonic() > deadline and not self.stop_reason:
                self.stop_reason = "timeout"
                self.logs.say(f"timeout of {self.spec.timeout} reached; stopping the job")
            if not self.stop_reason and cost_limit_reached(
                self._rate, time.monotonic() - self._started, self._max_cost
            ):
                self.stop_reason = "cost"
                self.logs.say(f"{self._cost_reason()}; stopping the job")
            if time.monotonic() - last_cancel_check > 1.0:
                last_cancel_check = time.monotonic()
                try:
                    if not self.stop_reason and self.record.cancel_requested():
                        self._request_stop("cancel")
                except JobsubError:
                    pass
            if self.stop_reason:
                self._terminate(proc)
                break
            time.sleep(0.2)
        code = proc.wait()
        for pump in pumps:
            pump.join(timeout=5)
        return code

    def _cost_reason(self) -> str:
        elapsed = human_duration(time.monotonic() - self._started)
        return f"cost limit {money(self._max_cost, self._currency)} reached after {elapsed}"

    def _request_stop(self, reason: str) -> None:
        if not self.stop_reason:
            self.stop_reason = reason
            self.logs.say("cancel requested; stopping the job")

    def _terminate(self, proc: subprocess.Popen) -> None:
        """SIGTERM to the whole process group, SIGKILL after the grace period; returns when the group is gone."""
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=CANCEL_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            self.logs.say(f"still running after {CANCEL_GRACE_SECONDS:g}s; sending SIGKILL")
        _signal_group(proc.pid, signal.SIGKILL)  # also reaps children that outlived the leader
        proc.wait()

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

    def _periodic_outputs(self) -> None:
        if (
            self.status.status.state == State.RUNNING
            and time.monotonic() - self._last_output_sync > OUTPUT_SYNC_SECONDS
        ):
            self._last_output_sync = time.monotonic()
            self._upload_outputs()

    def _upload_outputs(self) -> None:
        if self.outputs_dir.is_dir() and any(p.is_file() for p in self.outputs_dir.rglob("*")):
            self._transfer.upload([self.outputs_dir], self.outputs_uri)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _exit_reason(code: int) -> str:
    if code == 127:
        return "command not found (exit code 127)"
    if code == 126:
        return "command not executable (exit code 126)"
    if code < 0 or code > 128:
        number = -code if code < 0 else code - 128
        try:
            return f"killed by {signal.Signals(number).name} (exit code {code})"
        except ValueError:
            pass
    return f"exit code {code}"
