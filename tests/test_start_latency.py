"""A job's start (issue 22, item 5): what the path from `submit` to the command's first line does, not how
long it takes (the seconds are measured in benchmarks/jobs.py, never asserted here).

- each process on the path (the submit, the runtime, `logs -f`) starts botocore's S3 client once;
- the runtime writes its first status, and starts a job without inputs, before it imports the transfer
  engine; botocore's start runs on a thread beside the runtime's own imports;
- the command's first line is shipped at once, not held back by the chunk of staging lines before it;
- when the threaded start fails, the store still opens; missing credentials are still one clear line.

Real components: moto in server mode, the local executor, real processes. What happens inside the
submitted processes is seen through a sitecustomize module put on their PYTHONPATH (it wraps botocore's
create_client and the runner's status write and writes one line per event to a file); that is the only
instrumentation, and it changes nothing they do.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from tests.conftest import Env, code_folder, make_env, poll, submit_script, use_env

_PROBE = textwrap.dedent(
    '''
    """Test probe (tests/test_start_latency.py): records S3 client starts and the runner's first status."""
    import importlib.abc, importlib.util, json, os, sys

    _OUT = os.environ.get("JOBSUB_TEST_PROBE_FILE")

    def _note(**event):
        event.update(pid=os.getpid(), argv=" ".join(sys.argv))
        with open(_OUT, "a") as handle:
            handle.write(json.dumps(event) + "\\n")

    def _patch_session(module):
        original = module.Session.create_client
        def create_client(self, service_name, *args, **kwargs):
            _note(event="client", service=service_name)
            return original(self, service_name, *args, **kwargs)
        module.Session.create_client = create_client

    def _patch_records(module):
        original = module.JobRecord.write_status
        def write_status(self, status):
            _note(event="status", state=status.state.value, transfer="jobsub.transfer" in sys.modules)
            return original(self, status)
        module.JobRecord.write_status = write_status

    def _patch_subprocess(module):
        original = module.Popen.__init__
        def init(self, args, *rest, **kwargs):
            if isinstance(args, list) and "bash" in args and "-c" in args:
                _note(event="command", transfer="jobsub.transfer" in sys.modules)
            return original(self, args, *rest, **kwargs)
        module.Popen.__init__ = init

    _PATCHES = {"botocore.session": _patch_session, "jobsub.jobs.records": _patch_records}

    class _Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name not in _PATCHES:
                return None
            sys.meta_path.remove(self)
            try:
                spec = importlib.util.find_spec(name)
            finally:
                sys.meta_path.insert(0, self)
            original_exec = spec.loader.exec_module
            def exec_module(module):
                original_exec(module)
                _PATCHES[name](module)
            spec.loader.exec_module = exec_module
            return spec

    if _OUT:
        import subprocess
        _patch_subprocess(subprocess)
        sys.meta_path.insert(0, _Finder())
    '''
)


@pytest.fixture
def probed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moto_url: str) -> tuple[Env, Path]:
    """A jobsub user on moto whose processes (and the runners they start) load the probe."""
    env = use_env(monkeypatch, make_env(tmp_path, "s3", moto=moto_url))
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    (probe_dir / "sitecustomize.py").write_text(_PROBE)
    events = tmp_path / "events.jsonl"
    env.vars["PYTHONPATH"] = f"{probe_dir}:{env.vars['PYTHONPATH']}"
    env.vars["JOBSUB_TEST_PROBE_FILE"] = str(events)
    return env, events


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _wait_final(env: Env, job_id: str) -> dict:
    return poll(
        lambda: (s := env.run_json("status", job_id)["status"])["state"] in ("SUCCEEDED", "FAILED", "LOST") and s,
        120,
        0.3,
        f"job {job_id} to end",
    )


def test_submit_runtime_and_follower_each_start_one_s3_client(probed: tuple[Env, Path], tmp_path: Path) -> None:
    env, events = probed
    code = code_folder(tmp_path, "print('hello from the job', flush=True)\n")
    job_id = submit_script(env, code)
    follow = env.run("logs", "-f", job_id, timeout=120)
    assert follow.returncode == 0, follow.stderr
    assert "hello from the job" in follow.stdout
    clients = [e for e in _events(events) if e["event"] == "client"]
    per_process: dict[int, list[dict]] = {}
    for event in clients:
        per_process.setdefault(event["pid"], []).append(event)
    roles = {pid: ("runtime" if "jobsub.runtime" in got[0]["argv"] or "--work-dir" in got[0]["argv"] else "cli")
             for pid, got in per_process.items()}  # fmt: skip
    assert sorted(roles.values()) == ["cli", "cli", "runtime"], clients  # submit, logs -f, the runner
    for pid, got in per_process.items():
        assert [e["service"] for e in got] == ["s3"], f"{roles[pid]} started {len(got)} clients: {got}"


def test_runtime_writes_its_first_status_and_starts_the_command_before_the_transfer_engine(
    probed: tuple[Env, Path], tmp_path: Path
) -> None:
    env, events = probed
    code = code_folder(tmp_path, "print('first line', flush=True)\n")
    job_id = submit_script(env, code)
    assert _wait_final(env, job_id)["state"] == "SUCCEEDED"
    seen = [e for e in _events(events) if e["event"] in ("status", "command")]
    runtime = [e for e in seen if "--work-dir" in e["argv"]]
    staging = next(e for e in runtime if e["event"] == "status" and e["state"] == "STAGING")
    command = next(e for e in runtime if e["event"] == "command")
    assert staging["transfer"] is False, "the runtime imported the transfer engine before its first status"
    assert command["transfer"] is False, "a job without inputs waited for the transfer engine to start"
    logs = env.run("logs", job_id, check=True).stdout
    assert "first line" in logs and "job succeeded" in logs


def test_outputs_of_an_earlier_run_are_still_restored(env_s3: Env, tmp_path: Path) -> None:
    """The cheap "anything to restore?" check in front of the transfer engine still restores checkpoints."""
    body = (
        "import os, pathlib\n"
        "out = pathlib.Path(os.environ['JOBSUB_OUTPUT_DIR'])\n"
        "ckpt = out / 'ckpt.txt'\n"
        "print('restored' if ckpt.exists() else 'fresh', flush=True)\n"
        "ckpt.write_text('step 1')\n"
    )
    code = code_folder(tmp_path, body)
    first = submit_script(env_s3, code, "--name", "resume", "--output", env_s3.uri("out/resume/"))
    assert _wait_final(env_s3, first)["state"] == "SUCCEEDED"
    second = submit_script(env_s3, code, "--name", "resume", "--output", env_s3.uri("out/resume/"))
    assert _wait_final(env_s3, second)["state"] == "SUCCEEDED"
    assert "fresh" in env_s3.run("logs", first, check=True).stdout
    logs = env_s3.run("logs", second, check=True).stdout
    assert "restored" in logs and "restored 1 files" in logs


@pytest.fixture
def env_s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moto_url: str) -> Env:
    return use_env(monkeypatch, make_env(tmp_path, "s3", moto=moto_url))


def test_first_line_after_the_staging_chunk_is_shipped_at_once(tmp_path: Path) -> None:
    """With a one-minute interval, the old shipper held the command's first line for that minute behind the
    chunk of staging lines; now the first lines after a quiet spell each go out at once (a busy stream is
    still paced: close() ships what waits)."""
    from jobsub.jobs.records import JobRecord
    from jobsub.runtime.logship import BURST, LogShipper
    from jobsub.storage.local import LocalStore
    from jobsub.uri import ObjectURI

    (tmp_path / "store" / "bucket").mkdir(parents=True)
    record = JobRecord(LocalStore(tmp_path / "store"), ObjectURI("bucket", "jobs/"), "j1")
    shipper = LogShipper(record, interval=60.0, writer="w").start()
    try:
        shipper.say("code abc (1 files, SHA-256 verified)")
        poll(lambda: len(record.chunks_after("")) == 1, 10, what="the staging chunk")
        for n in range(1, BURST):
            shipper.add("out", f"line {n}\n")
            poll(lambda n=n: len(record.chunks_after("")) == n + 1, 10, what=f"line {n} shipped on its own")
        shipper.add("out", "held\n")
    finally:
        shipper.close()
    texts = [[line.text for line in record.read_chunk(key)] for key in record.chunks_after("")]
    assert texts == [["[jobsub] code abc (1 files, SHA-256 verified)"], ["line 1"], ["line 2"], ["held"]]


def test_store_opens_when_the_threaded_start_failed(
    env_s3: Env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from jobsub.storage import s3_client

    monkeypatch.setattr(s3_client, "_loader", None)
    monkeypatch.setattr(s3_client, "_preparing", None)
    real = s3_client._make_loader
    calls = []

    def failing_once():  # the thread's attempt fails (as an unreadable data file would), the next one works
        calls.append(threading.current_thread().name)
        if len(calls) == 1:
            raise OSError("data file unreadable")
        return real()

    monkeypatch.setattr(s3_client, "_make_loader", failing_once)
    s3_client.prepare()
    store = env_s3.store()
    store.put(env_s3.bucket, "probe.txt", b"ok")
    assert store.get(env_s3.bucket, "probe.txt") == b"ok"
    assert calls == ["s3-client-start", "MainThread"]


def test_missing_credentials_are_one_line_from_submit_and_from_the_runtime(env_s3: Env, tmp_path: Path) -> None:
    code = code_folder(tmp_path, "print('never', flush=True)\n")
    job_id = submit_script(env_s3, code)
    assert _wait_final(env_s3, job_id)["state"] == "SUCCEEDED"
    without = {k: v for k, v in env_s3.vars.items() if not k.startswith("AWS_")}
    without.update(AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    without["AWS_EC2_METADATA_DISABLED"] = "true"
    submit = subprocess.run(
        [sys.executable, "-m", "jobsub", "submit", "python-script", "--code", str(code)],
        env=without, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert submit.returncode == 1, submit.stderr
    assert "no S3 credentials found" in submit.stderr and "Traceback" not in submit.stderr
    assert len(submit.stderr.strip().splitlines()) == 1, submit.stderr
    runtime = subprocess.run(
        [sys.executable, "-m", "jobsub.runtime", env_s3.uri(f"jobs/{job_id}/"), "--work-dir", str(tmp_path / "w")],
        env={**without, "JOBSUB_PROFILE_JSON": json.dumps({"storage": "s3", "endpoint_url": env_s3.endpoint,
                                                            "addressing_style": "path"})},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert runtime.returncode != 0
    assert "no S3 credentials found" in runtime.stderr and "Traceback" not in runtime.stderr, runtime.stderr
    bad_profile = subprocess.run(
        [sys.executable, "-m", "jobsub.runtime", env_s3.uri(f"jobs/{job_id}/"), "--work-dir", str(tmp_path / "w")],
        env={**env_s3.vars, "JOBSUB_PROFILE_JSON": json.dumps({"storage": "s3", "endpoint_url": env_s3.endpoint,
                                                               "aws_profile": "nosuchprofile"})},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad_profile.returncode != 0
    assert "AWS profile 'nosuchprofile' not found" in bad_profile.stderr, bad_profile.stderr
    assert "Traceback" not in bad_profile.stderr


def test_an_aws_profile_typo_in_the_environment_is_one_line(env_s3: Env) -> None:
    """AWS_PROFILE (not the jobsub profile) naming a profile ~/.aws lacks: one line naming it, exit 1."""
    result = env_s3.run("ls", env_s3.uri(""), extra_env={"AWS_PROFILE": "typo-profile"})
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "AWS profile 'typo-profile' (named by AWS_PROFILE in the environment) not found" in lines[0], lines[0]
    assert "unexpected" not in lines[0]


def test_a_bandwidth_knob_that_is_no_size_fails_the_job_before_its_command_runs(env_s3: Env, tmp_path: Path) -> None:
    """JOBSUB_OUTPUT_MAX_BANDWIDTH is read when the runner starts: a job must not run for hours and then
    fail with its outputs unsent because the knob was '50MBps'."""
    marker = tmp_path / "ran"
    code = code_folder(tmp_path, f"open({str(marker)!r}, 'w').write('x')\nprint('ran', flush=True)\n")
    job_id = submit_script(env_s3, code, extra_env={"JOBSUB_OUTPUT_MAX_BANDWIDTH": "50MBps"})
    final = _wait_final(env_s3, job_id)
    assert final["state"] == "FAILED", final
    reason = final.get("reason") or ""
    if "50MBps" not in reason:  # the runner stopped before it took the job: its log says why
        log = Path(reason.rsplit("see ", 1)[-1])
        assert "runner.log" in reason and "50MBps" in log.read_text(), reason
    assert not marker.exists(), "the command ran although the runner could not have uploaded its outputs"


def test_sessions_made_while_the_start_thread_is_being_published_do_not_fail() -> None:
    """`prepare()` from several threads at once (a web view or a notebook): every `new_session` works."""
    from jobsub.storage import s3_client

    errors: list[BaseException] = []

    def one() -> None:
        try:
            s3_client.prepare()
            s3_client.new_session()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors


def test_a_process_ending_while_the_client_start_runs_waits_for_it() -> None:
    """A submit refused at once (a bad --set) ends while `prepare()`'s thread still imports botocore. That
    thread must finish before the interpreter finalizes: a daemon thread stopped inside C code there can
    crash the exit with SIGSEGV on CPython < 3.14 (bpo-42969; CI once saw such a submit print its error and
    die with -11). atexit hooks run after the interpreter joined its non-daemon threads, so the hook sees
    the thread's work done; with a daemon thread it runs while botocore is still being imported."""
    child = textwrap.dedent(
        """
        import atexit, sys, threading
        from jobsub.storage import s3_client
        atexit.register(lambda: print("at exit:", "botocore.client" in sys.modules, flush=True))
        s3_client.prepare()
        sys.exit(2)
        """
    )
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stdout.strip() == "at exit: True", done.stdout + done.stderr
