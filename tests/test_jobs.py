"""Jobs end to end: real `jobsub` subprocesses, real detached runners, on the local store and on moto S3."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import SECRET, Env, code_folder, poll, submit_script
from tests.faultproxy import FaultProxy, Rule

JOB_PATTERN = re.compile(r"^[a-z0-9-]+-\d{8}-\d{6}-[0-9a-f]{4}$")


def _submit(env: Env, code: Path, *extra: str, extra_env: dict[str, str] | None = None) -> str:
    job_id = submit_script(env, code, *extra, extra_env=extra_env)
    assert JOB_PATTERN.match(job_id), job_id
    return job_id


def _status(env: Env, job_id: str) -> dict:
    return env.run_json("status", job_id)["status"]


def _program_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("line ")]


def test_follow_shows_every_line_once_in_order_and_exits_with_the_job_code(env: Env, tmp_path: Path) -> None:
    code = code_folder(
        tmp_path,
        "import sys, time\n"
        "for i in range(200):\n"
        "    print(f'line {i}', flush=True)\n"
        "    time.sleep(0.005)\n"
        "sys.exit(7)\n",
    )
    result = env.run("submit", "python-script", "--code", str(code), "--follow", timeout=120)
    assert result.returncode == 7, result.stderr
    assert _program_lines(result.stdout) == [f"line {i}" for i in range(200)]
    job_id = result.stdout.splitlines()[0]
    status = _status(env, job_id)
    assert status["state"] == "FAILED" and status["exit_code"] == 7
    # `logs -f` of a finished job replays the same lines and exits with the same code
    again = env.run("logs", "-f", job_id)
    assert again.returncode == 7
    assert _program_lines(again.stdout) == [f"line {i}" for i in range(200)]
    followed_tail = env.run("logs", "-f", job_id, "--tail", "2")
    assert followed_tail.returncode == 7 and followed_tail.stdout.splitlines() == [
        "line 199",
        "[jobsub] job failed: exit code 7",
    ]
    assert env.run("logs", "-f", job_id, "--tail", "0").stdout == ""
    tail = env.run("logs", job_id, "--tail", "3", check=True).stdout.splitlines()
    assert tail[:2] == ["line 198", "line 199"] and "job failed" in tail[-1]


def test_cancel_stops_the_whole_process_group_within_the_grace_period(env: Env, tmp_path: Path) -> None:
    code = code_folder(
        tmp_path,
        "import os, signal, subprocess, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only SIGKILL after the grace period stops it\n"
        "child = subprocess.Popen(['sleep', '600'])\n"
        "print(f'ready pgid={os.getpgid(0)} child={child.pid}', flush=True)\n"
        "time.sleep(600)\n",
    )
    job_id = _submit(env, code, extra_env={"JOBSUB_CANCEL_GRACE_SECONDS": "2"})
    ready = poll(lambda: re.search(r"ready pgid=(\d+)", env.run("logs", job_id).stdout), 60, 0.2, "the job to start")
    pgid = int(ready.group(1))
    os.killpg(pgid, 0)  # the group exists now
    started = time.monotonic()
    result = env.run("cancel", job_id, check=True)
    assert "CANCELLED" in result.stdout
    assert time.monotonic() - started < 2 + 15

    def group_gone() -> bool:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        return False

    poll(group_gone, 10, 0.1, "the job's process group to disappear")
    status = _status(env, job_id)
    assert status["state"] == "CANCELLED" and status["reason"] == "cancelled by request"
    assert "SIGKILL" in env.run("logs", job_id).stdout


def test_killed_runner_shows_as_lost(env: Env, tmp_path: Path) -> None:
    code = code_folder(tmp_path, "import os, time\nprint(f'ready pgid={os.getpgid(0)}', flush=True)\ntime.sleep(600)\n")
    job_id = _submit(env, code)
    ready = poll(lambda: re.search(r"ready pgid=(\d+)", env.run("logs", job_id).stdout), 60, 0.2, "the job to start")
    runner_pid = env.run_json("status", job_id)["status"]["executor"]["pid"]
    try:
        os.kill(runner_pid, signal.SIGKILL)
        status = poll(lambda: (s := _status(env, job_id))["state"] == "LOST" and s, 20, 0.2, "state LOST")
        assert "runner" in status["reason"]
        assert env.run("logs", "-f", job_id).returncode == 1
    finally:
        try:
            os.killpg(int(ready.group(1)), signal.SIGKILL)  # the orphaned program itself
        except ProcessLookupError:
            pass


def test_same_name_and_idempotency_key_give_one_job(env: Env, tmp_path: Path) -> None:
    code = code_folder(tmp_path, "print('hello')\n")
    args = ("--name", "nightly", "--idempotency-key", "2026-11-25")
    first = env.run_json("submit", "python-script", "--code", str(code), *args)
    second = env.run_json("submit", "python-script", "--code", str(code), *args)
    assert first["created"] is True and second["created"] is False
    assert first["job_id"] == second["job_id"] and first["job_id"].startswith("nightly-")
    assert [j["id"] for j in env.run_json("jobs")] == [first["job_id"]]
    other = env.run_json("submit", "python-script", "--code", str(code), "--name", "nightly", "--idempotency-key", "x")
    assert other["job_id"] != first["job_id"]


def test_bad_specs_and_options_give_one_line_errors_with_exit_2(env: Env, tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text("name: demo\ncommand: echo hi\nparams:\n  epochs: 3\nretries: 2\n")
    result = env.run("submit", "-f", str(spec))
    assert result.returncode == 2
    assert f"{spec}:5: retries: Extra inputs are not permitted" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr

    spec.write_text("name: demo\ncommand: echo hi\nparams:\n  epochs: [unclosed\n")
    result = env.run("submit", "-f", str(spec))
    assert result.returncode == 2 and f"{spec}:" in result.stderr and "not valid YAML" in result.stderr

    result = env.run("submit", "bert-finetune", "--set", "params.epoch=3")
    assert result.returncode == 2
    assert "unknown key" in result.stderr and "params.epochs" in result.stderr

    result = env.run("submit", "bert-finetune", "--set", "params.epochs=three")
    assert result.returncode == 2 and "params.epochs expects int" in result.stderr

    result = env.run("submit", "bert-finetune", "--input", "model=s3://x/y/")
    assert result.returncode == 2 and "input 'data' is required" in result.stderr

    result = env.run("submit", "bert-finetune", "--input", "data=./no-such-folder", "--input", "model=s3://x/y/")
    assert result.returncode == 2 and "no such file or folder: ./no-such-folder" in result.stderr

    spec.write_text("name: demo\ncommand: python ${{inputs.data}}\n")
    result = env.run("submit", "-f", str(spec))
    assert result.returncode == 2 and "no inputs named 'data'" in result.stderr
    assert env.run_json("jobs") == []  # nothing was started by any of these


def test_missing_command_fails_with_the_reason_in_status_and_logs(env: Env, tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text("name: broken\ncommand: no-such-command-jobsub --flag\n")
    result = env.run("submit", "-f", str(spec), "--follow")
    assert result.returncode == 127
    job_id = result.stdout.splitlines()[0]
    status = _status(env, job_id)
    assert status["state"] == "FAILED" and status["reason"] == "command not found (exit code 127)"
    logs = env.run("logs", job_id).stdout
    assert "no-such-command-jobsub: command not found" in logs and "job failed: command not found" in logs


def test_local_inputs_are_uploaded_once_staged_and_outputs_collected(env: Env, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.json").write_text('{"sentence": "x"}\n')
    code = code_folder(
        tmp_path,
        "import json, os\n"
        "src = os.environ['JOBSUB_INPUT_DATA']\n"
        "print('input has', sorted(os.listdir(src)), flush=True)\n"
        "out = os.environ['JOBSUB_OUTPUT_DIR']\n"
        "json.dump({'accuracy': 0.75, 'macro_f1': 0.5}, open(os.path.join(out, 'metrics.json'), 'w'))\n"
        "open(os.path.join(out, 'curve.png'), 'wb').write(b'png')\n"
        "with open(os.environ['JOBSUB_METRICS_FILE'], 'a') as f:\n"
        "    f.write(json.dumps({'step': 1, 'loss': 2.5}) + '\\n')\n",
    )
    dry = env.run_json("submit", "python-script", "--code", str(code), "--input", f"data={data}", "--dry-run")
    assert dry["dry_run"] and dry["uploads"][0]["source"] == str(data)
    assert env.run_json("jobs") == []
    first = env.run("submit", "python-script", "--code", str(code), "--input", f"data={data}", "--follow")
    assert first.returncode == 0, first.stderr
    assert "input has ['train.json']" in first.stdout
    second = env.run("submit", "python-script", "--code", str(code), "--input", f"data={data}", "--follow")
    assert second.returncode == 0 and "code" in second.stderr and "already uploaded" in second.stderr
    job_id = second.stdout.splitlines()[0]
    results = env.run_json("results", job_id)
    assert results["metrics"] == {"accuracy": 0.75, "macro_f1": 0.5}
    assert results["plots"] == [results["outputs"] + "curve.png"]
    text = env.run("results", job_id, check=True).stdout
    assert "accuracy" in text and "0.7500" in text and "curve.png" in text
    target = tmp_path / "fetched"
    env.run("download", job_id, str(target), "-q", check=True)
    assert json.loads((target / "metrics.json").read_text())["accuracy"] == 0.75


def test_logs_follow_rides_over_storage_errors_without_loss_or_repeats(s3env: Env, tmp_path: Path) -> None:
    code = code_folder(
        tmp_path,
        "import time\nfor i in range(60):\n    print(f'line {i}', flush=True)\n    time.sleep(0.05)\n",
    )
    job_id = _submit(s3env, code)
    chunk = rf"/jobs/{job_id}/logs/0000000[1-3]-[0-9a-f]{{8}}\.jsonl"
    proxy = FaultProxy(
        s3env.endpoint or "",
        [
            Rule("GET", chunk, "500", {1, 2, 3, 4, 5, 6, 7}),  # outlasts botocore's own retries once
            Rule("GET", r"list-type=2", "reset", {3, 4, 5, 6, 7, 8}),
        ],
    )
    try:
        result = s3env.run("logs", "-f", job_id, extra_env={"JOBSUB_ENDPOINT_URL": proxy.url})
    finally:
        proxy.close()
    assert result.returncode == 0, result.stderr
    assert _program_lines(result.stdout) == [f"line {i}" for i in range(60)]
    assert sum(rule.hits for rule in proxy.rules) >= 8
    assert "retrying" in result.stderr


def test_no_secret_in_records_logs_or_state(env: Env, tmp_path: Path) -> None:
    code = code_folder(tmp_path, "import os\nprint('key is', os.environ['AWS_SECRET_ACCESS_KEY'], flush=True)\n")
    result = env.run("--debug", "submit", "python-script", "--code", str(code), "--follow")
    assert result.returncode == 0
    assert "key is" in result.stdout and SECRET not in result.stdout + result.stderr
    store = env.store()
    for info in store.iter_objects(env.bucket, ""):
        assert SECRET.encode() not in store.get(env.bucket, info.key), info.key
    for path in env.root.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("spec_env", ["AWS_SECRET_ACCESS_KEY", "MY_API_TOKEN"])
def test_secret_env_in_a_spec_is_refused(env: Env, tmp_path: Path, spec_env: str) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(f"name: leak\ncommand: echo hi\nenv:\n  {spec_env}: abc\n")
    result = env.run("submit", "-f", str(spec))
    assert result.returncode == 2 and "looks like a secret" in result.stderr


def test_a_retried_or_resubmitted_job_continues_from_its_outputs(env: Env, tmp_path: Path) -> None:
    code = code_folder(
        tmp_path,
        "import os, sys\n"
        "ckpt = os.path.join(os.environ['JOBSUB_OUTPUT_DIR'], 'checkpoint.txt')\n"
        "if os.path.exists(ckpt):\n"
        "    print('resumed from', open(ckpt).read(), flush=True)\n"
        "    sys.exit(0)\n"
        "open(ckpt, 'w').write('step-100')\n"
        "print('crashing after a checkpoint', flush=True)\n"
        "sys.exit(3)\n",
    )
    result = env.run("submit", "python-script", "--code", str(code), "--set", "max_retries=1", "--follow")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "attempt 1 failed (exit code 3); retrying" in result.stdout and "resumed from step-100" in result.stdout
    job_id = result.stdout.splitlines()[0]
    assert _status(env, job_id)["attempt"] == 2

    shared = env.uri("runs/nightly/")
    first = env.run("submit", "python-script", "--code", str(code), "--output", shared, "--follow")
    assert first.returncode == 3 and "crashing after a checkpoint" in first.stdout
    again = env.run("submit", "python-script", "--code", str(code), "--output", shared, "--follow")
    assert again.returncode == 0
    assert "restored 1 files" in again.stdout and "resumed from step-100" in again.stdout


def test_timeout_stops_the_job_and_says_so(env: Env, tmp_path: Path) -> None:
    code = code_folder(tmp_path, "import time\nprint('working', flush=True)\ntime.sleep(600)\n")
    result = env.run("submit", "python-script", "--code", str(code), "--set", "timeout=2s", "--follow",
                     extra_env={"JOBSUB_CANCEL_GRACE_SECONDS": "2"})  # fmt: skip
    assert result.returncode != 0
    job_id = result.stdout.splitlines()[0]
    status = _status(env, job_id)
    assert status["state"] == "FAILED" and status["reason"] == "timed out after 2s"
    assert "timeout of 2s reached" in result.stdout


@pytest.mark.parametrize("command", ["logs", "status", "results", "cancel"])
def test_unknown_or_malformed_job_ids_give_one_line_errors(env: Env, command: str) -> None:
    for job_id, message in (("nope-20261125-000000-abcd", "no job 'nope-20261125-000000-abcd'"),
                            ("../x", "'../x' is not a job id")):  # fmt: skip
        result = env.run(command, job_id)
        assert result.returncode == 1 and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
