"""The Slurm executor beyond the conformance suite, on the real one-node cluster of harness_slurm.py:
queue reasons a user sees, sbatch's own errors, credentials kept off disk, one squeue for many jobs."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.backends import backend_unavailable
from tests.conftest import KEY_ID, SECRET, Env, code_folder, make_env, poll, submit_script, use_env
from tests.executors.harness import ExecutorHarness, configure
from tests.executors.slurm_cluster import ClusterError, SlurmCluster


def _slurm_env(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: str = "local", **slurm: Any
) -> tuple[Env, ExecutorHarness]:
    harness: ExecutorHarness = request.getfixturevalue("slurm_harness")
    moto = request.getfixturevalue("moto_url") if store == "s3" else None
    env = make_env(tmp_path, store, moto)
    settings = {**harness.profile_settings, "slurm": {**harness.profile_settings["slurm"], **slurm}}
    configure(env, ExecutorHarness(kind="slurm", profile_settings=settings, cli_env=harness.cli_env))
    use_env(monkeypatch, env)
    return env, harness


@pytest.fixture
def senv(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    return _slurm_env(request, tmp_path, monkeypatch)[0]


def _handle(env: Env, job_id: str) -> dict[str, Any]:
    from jobsub.config import resolve_profile
    from jobsub.jobs.records import JobRecord
    from jobsub.uri import ObjectURI

    store = env.store()
    return dict(
        JobRecord(store, ObjectURI.parse(resolve_profile()[1].jobs_uri).as_prefix(), job_id).get_json("executor.json")
    )


def _scontrol(cluster: SlurmCluster, slurm_id: str) -> dict[str, str]:
    out = cluster.run("scontrol", "show", "job", "--oneliner", slurm_id).stdout
    return dict(part.split("=", 1) for part in out.split() if "=" in part)


def _errors(result: subprocess.CompletedProcess) -> list[str]:
    """stderr lines other than submit's cost estimate (printed before the executor is asked)."""
    return [line for line in result.stderr.splitlines() if not line.startswith("estimate:")]


def _held_job(senv: Env, tmp_path: Path, *extra: str) -> str:
    return submit_script(senv, code_folder(tmp_path, "print('ran')\n"), "--set", "timeout=10m", *extra)


def test_queued_job_shows_the_queue_reason_in_status_follow_and_jobs_then_runs(
    senv: Env, slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    """The node has 2 CPUs: a 2-CPU job holds it, and a second one waits with Slurm's reason 'Resources'."""
    busy = submit_script(
        senv,
        code_folder(tmp_path, "import time\nprint('busy', flush=True)\ntime.sleep(600)\n"),
        "--set",
        "resources.cpus=2",
    )
    poll(lambda: "busy" in senv.run("logs", busy).stdout, 120, 0.3, "the first job running")
    (tmp_path / "second").mkdir()
    waiting = submit_script(
        senv, code_folder(tmp_path / "second", "print('second ran', flush=True)\n"), "--set", "resources.cpus=2"
    )
    status = poll(
        lambda: (s := senv.run_json("status", waiting))["status"]["reason"] == "queued: Resources" and s,
        30,
        0.3,
        "the queue reason in status",
    )
    assert status["status"]["state"] == "QUEUED"
    assert re.match(r"slurm job \d+, partition debug", status["executor"]), status["executor"]
    rows = {row["id"]: row for row in senv.run_json("jobs")}
    assert rows[waiting]["reason"] == "queued: Resources" and rows[busy]["state"] == "RUNNING"
    follower = senv.popen("logs", "-f", waiting, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert follower.stderr is not None
        line = follower.stderr.readline()
        assert line.strip() == "[jobsub] waiting to start: queued: Resources"
        cancelled = senv.run("cancel", busy, timeout=120)
        assert cancelled.returncode == 0 and "CANCELLED" in cancelled.stdout, cancelled.stderr
        out, _ = follower.communicate(timeout=120)
    finally:
        follower.kill()
    assert follower.returncode == 0 and "second ran" in out
    assert senv.run_json("status", waiting)["status"]["state"] == "SUCCEEDED"


def test_spec_maps_to_sbatch_and_a_held_job_cancels_to_cancelled(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slurm_cluster: SlurmCluster
) -> None:
    env, _ = _slurm_env(request, tmp_path, monkeypatch, sbatch_args=["--hold", "--comment=from-profile"])
    job_id = _held_job(env, tmp_path, "--set", "resources.cpus=1.5", "--set", "resources.memory=300MiB")
    handle = _handle(env, job_id)
    job = _scontrol(slurm_cluster, handle["job_id"])
    assert job["JobName"] == job_id and job["Partition"] == "debug" and job["Comment"] == "from-profile"
    assert job["CPUs/Task"] == "2" and job["MinMemoryNode"] == "300M"
    assert job["TimeLimit"] == "00:15:00"  # 10 min + a 5 min backstop margin: the runtime's own timeout acts first
    assert job["JobState"] == "PENDING" and job["Reason"] == "JobHeldUser"
    assert env.run_json("status", job_id)["status"]["reason"] == "queued: JobHeldUser"
    done = env.run("cancel", job_id, timeout=60)
    assert done.returncode == 0 and "CANCELLED" in done.stdout, done.stdout + done.stderr
    status = env.run_json("status", job_id)["status"]
    assert status["state"] == "CANCELLED" and status["reason"] == "cancelled by request before it started"
    assert _scontrol(slurm_cluster, handle["job_id"])["JobState"] == "CANCELLED"


def test_jobs_asks_squeue_once_for_many_jobs(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slurm_cluster: SlurmCluster
) -> None:
    """A real squeue behind a shim on PATH that counts its calls."""
    env, _ = _slurm_env(request, tmp_path, monkeypatch, sbatch_args=["--hold"])
    shim, calls = tmp_path / "shim", tmp_path / "squeue-calls"
    shim.mkdir()
    real = subprocess.run(["which", "squeue"], capture_output=True, text=True, check=True).stdout.strip()
    (shim / "squeue").write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec {real} "$@"\n')
    (shim / "squeue").chmod(0o755)
    ids = [_held_job(env, tmp_path, "--name", f"many{i}") for i in range(4)]
    try:
        rows = json.loads(
            env.run("jobs", "--json", extra_env={"PATH": f"{shim}:{os.environ['PATH']}"}, check=True).stdout
        )
        assert {r["id"]: r["reason"] for r in rows if r["id"] in ids} == dict.fromkeys(ids, "queued: JobHeldUser")
        assert len(calls.read_text().splitlines()) == 1, calls.read_text()
    finally:
        for job_id in ids:
            env.run("cancel", job_id, "--no-wait")


def test_a_partition_that_does_not_exist_fails_before_any_upload_with_sbatch_reason(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, _ = _slurm_env(request, tmp_path, monkeypatch, partition="nope")
    result = env.run("submit", "python-script", "--code", str(code_folder(tmp_path, "print(1)\n")))
    assert result.returncode == 2
    assert len(_errors(result)) == 1 and "invalid partition" in result.stderr.lower(), result.stderr
    assert env.run_json("jobs") == []  # no record, nothing uploaded


def test_missing_slurm_commands_and_a_silent_controller_are_one_line_errors(
    senv: Env, slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    code = code_folder(tmp_path, "print(1)\n")
    empty = tmp_path / "bin"
    empty.mkdir()
    result = senv.run("submit", "python-script", "--code", str(code), extra_env={"PATH": str(empty)})
    assert result.returncode == 2 and len(_errors(result)) == 1, result.stderr
    assert "sbatch not found on PATH" in result.stderr and "login node" in result.stderr
    dead = tmp_path / "dead.conf"
    text = slurm_cluster.conf.read_text()
    text = re.sub(r"SlurmctldPort=\d+", "SlurmctldPort=1", text).replace("MessageTimeout=10", "MessageTimeout=2")
    dead.write_text(text)
    started = time.monotonic()
    result = senv.run("submit", "python-script", "--code", str(code), extra_env={"SLURM_CONF": str(dead)})
    assert result.returncode == 2 and len(_errors(result)) == 1, result.stderr
    assert "Unable to contact slurm controller" in result.stderr and "is slurmctld up?" in result.stderr
    assert time.monotonic() - started < 60
    assert senv.run_json("jobs") == []


def test_credentials_reach_the_job_but_no_file_on_disk_outside_the_controller_state(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slurm_cluster: SlurmCluster
) -> None:
    """On the S3 store the runner needs the resolved credentials: the job succeeding proves they arrived."""
    env, harness = _slurm_env(request, tmp_path, monkeypatch, store="s3")
    code = code_folder(
        tmp_path,
        "import os, hashlib\n"
        "print('key id sha', hashlib.sha256(os.environ['AWS_ACCESS_KEY_ID'].encode()).hexdigest()[:12])\n"
        "print('secret sha', hashlib.sha256(os.environ['AWS_SECRET_ACCESS_KEY'].encode()).hexdigest()[:12])\n",
    )
    job_id = submit_script(env, code)
    done = env.run("logs", "-f", job_id, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"key id sha {hashlib.sha256(KEY_ID.encode()).hexdigest()[:12]}" in done.stdout
    assert f"secret sha {hashlib.sha256(SECRET.encode()).hexdigest()[:12]}" in done.stdout
    handle = _handle(env, job_id)
    script = Path(handle["run_dir"]) / "job.sbatch"
    assert script.stat().st_mode & 0o077 == 0 and Path(handle["run_dir"]).stat().st_mode & 0o077 == 0
    assert "exec " in script.read_text() and "AWS_" not in script.read_text()
    work_root = Path(harness.profile_settings["slurm"]["work_root"])
    holders = []
    for root in (work_root, slurm_cluster.root, env.root):
        for path in root.rglob("*"):
            if path.is_file() and SECRET.encode() in path.read_bytes():
                holders.append(path)
    state = slurm_cluster.root / "state"
    assert holders, "the controller keeps the job's environment: this check must see it"
    for path in holders:  # only the controller's private job state (where Slurm keeps every job's environment)
        assert state in path.parents and path.stat().st_mode & 0o077 == 0, path
    shown = slurm_cluster.run("scontrol", "show", "job", "-dd", handle["job_id"]).stdout
    assert SECRET not in shown and SECRET not in env.run("status", job_id).stdout


def test_setup_lines_run_first_and_a_work_root_with_shell_metacharacters_stays_a_plain_path(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    odd = tmp_path / "runs dir" / "a b;$(touch PWNED)'q'"
    setup = ["export GREETING='hello from setup'", "cd /"]
    env, _ = _slurm_env(request, tmp_path, monkeypatch, work_root=str(odd), setup=setup)
    code = code_folder(tmp_path, "import os\nprint('greeting:', os.environ['GREETING'], flush=True)\n")
    job_id = submit_script(env, code)
    done = env.run("logs", "-f", job_id, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "greeting: hello from setup" in done.stdout
    handle = _handle(env, job_id)
    assert Path(handle["run_dir"]) == odd / job_id and (odd / job_id / "job.sbatch").is_file()
    assert Path(handle["output"]).is_file()  # the runner's own stderr (slurm-<id>.out) is where the handle says
    assert not list(tmp_path.rglob("PWNED")) and not Path("/PWNED").exists()


@pytest.fixture(scope="module")
def two_nodes(slurm_cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A second throwaway cluster of two Slurm nodes (two slurmd on this machine, without cgroups)."""
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm2"), cgroups=False, nodes=2)
    try:
        cluster.start()
    except (ClusterError, OSError) as exc:
        cluster.stop()
        backend_unavailable(f"a two-node Slurm cluster did not start: {exc}")
    yield cluster
    cluster.stop()


@pytest.mark.parametrize("failing_rank", [None, 1])
def test_a_two_node_allocation_runs_the_command_once_per_node_with_its_rank(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    two_nodes: SlurmCluster,
    failing_rank: int | None,
) -> None:
    """The runtime runs once (node 0) and srun starts the command on each node; one failing node fails it."""
    env, _ = _slurm_env(request, tmp_path, monkeypatch)
    env.vars.update(two_nodes.env)
    # Both "nodes" are this machine, so a folder here is shared: the failing rank exits only once every rank
    # has printed (srun kills the other ranks as soon as one fails; their line must already be out).
    printed = tmp_path / "printed"
    printed.mkdir()
    code = code_folder(
        tmp_path,
        "import os, sys, time\n"
        "rank = int(os.environ['JOBSUB_NODE_RANK'])\n"
        "nodes, here = os.environ['JOBSUB_NNODES'], os.environ['SLURMD_NODENAME']\n"
        "print(f'rank {rank} of {nodes} on {here}, master {os.environ[\"MASTER_ADDR\"]}', flush=True)\n"
        f"open(os.path.join({str(printed)!r}, str(rank)), 'w').close()\n"
        f"if rank == {failing_rank}:\n"
        "    deadline = time.time() + 120\n"
        f"    while len(os.listdir({str(printed)!r})) < int(nodes) and time.time() < deadline:\n"
        "        time.sleep(0.05)\n"
        "    sys.exit(3)\n"
        f"time.sleep({0 if failing_rank is None else 600})\n",
    )
    job_id = submit_script(env, code, "--set", "resources.nodes=2")
    done = env.run("logs", "-f", job_id, timeout=180)
    ranks = sorted(line for line in done.stdout.splitlines() if line.startswith("rank "))
    first = two_nodes.node_names[0]
    assert ranks == [f"rank {i} of 2 on {name}, master {first}" for i, name in enumerate(two_nodes.node_names)], (
        done.stdout
    )
    status = env.run_json("status", job_id)["status"]
    if failing_rank is None:
        assert done.returncode == 0 and status["state"] == "SUCCEEDED", done.stdout + done.stderr
    else:
        assert done.returncode != 0 and status["state"] == "FAILED", status
    slurm_id = _handle(env, job_id)["job_id"]
    poll(lambda: _scontrol(two_nodes, slurm_id).get("JobState") not in ("RUNNING", "COMPLETING"), 60, 0.3, "job end")


def test_a_machine_without_slurm_commands_follows_a_job_from_its_record(senv: Env, tmp_path: Path) -> None:
    """Another machine with only the profile (no squeue there): status and logs -f work from the record."""
    go = tmp_path / "go"  # the node is this machine: the job waits for the test to say go
    code = code_folder(
        tmp_path,
        "import os, time\nprint('first', flush=True)\n"
        f"deadline = time.time() + 120\nwhile not os.path.exists({str(go)!r}) and time.time() < deadline:\n"
        "    time.sleep(0.1)\nprint('last', flush=True)\n",
    )
    job_id = submit_script(senv, code)
    laptop = {"PATH": str(tmp_path / "no-slurm-here")}
    poll(lambda: "first" in senv.run("logs", job_id, extra_env=laptop).stdout, 120, 0.3, "the first line")
    status = senv.run("status", job_id, "--json", extra_env=laptop)
    assert status.returncode == 0 and json.loads(status.stdout)["status"]["state"] == "RUNNING", status.stderr
    assert json.loads(status.stdout)["status"]["reason"] is None
    go.touch()
    done = senv.run("logs", "-f", job_id, extra_env=laptop, timeout=120)
    assert done.returncode == 0 and done.stdout.index("first") < done.stdout.index("last"), done.stderr


def test_a_node_without_the_runtime_fails_the_job_with_the_scripts_exit_code_and_where_to_look(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong `python` (or a failing setup line) ends the batch job before the runner exists: not LOST."""
    env, _ = _slurm_env(request, tmp_path, monkeypatch, python=str(tmp_path / "no" / "python3"))
    job_id = submit_script(env, code_folder(tmp_path, "print('never')\n"))
    status = poll(
        lambda: (s := env.run_json("status", job_id)["status"])["state"] in ("FAILED", "LOST") and s, 120, 0.5, "end"
    )
    output = _handle(env, job_id)["output"]
    assert status["state"] == "FAILED" and status["exit_code"] == 127, status
    assert status["reason"] == f"the batch script exited with 127 before the runner wrote a final state (see {output})"
    assert "No such file or directory" in Path(output).read_text()


def test_profile_add_keeps_slurm_settings_and_refuses_them_for_another_executor(tmp_path: Path) -> None:
    """No cluster needed: the settings a login-node user types once."""
    env = make_env(tmp_path)
    added = env.run(
        "profile", "add", "hpc", "--storage", "local", "--executor", "slurm", "--partition", "gpu",
        "--account", "proj1", "--qos", "high", "--sbatch-arg=--constraint=a100", "--sbatch-arg=--exclusive",
        "--setup", "module load cuda/12", "--setup", "source ~/venv/bin/activate; echo 'quoted $HOME'",
        "--container", "apptainer exec --nv img.sif", "--python", "python3.11",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    slurm = env.run_json("profile", "show", "hpc")["slurm"]
    assert slurm["partition"] == "gpu" and slurm["account"] == "proj1" and slurm["qos"] == "high"
    assert slurm["sbatch_args"] == ["--constraint=a100", "--exclusive"]
    assert slurm["setup"] == ["module load cuda/12", "source ~/venv/bin/activate; echo 'quoted $HOME'"]
    assert slurm["container"] == "apptainer exec --nv img.sif" and slurm["python"] == "python3.11"
    wrong = env.run("profile", "add", "x", "--storage", "local", "--partition", "gpu", "--setup", "true")
    assert wrong.returncode == 2 and wrong.stderr.strip().endswith(
        "--partition, --setup only apply to --executor slurm (this profile uses local)"
    ), wrong.stderr


def test_container_prefix_runs_the_runtime_inside_it_with_the_jobs_image(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in for `apptainer exec IMAGE` (not installable here): it records its arguments, then execs."""
    seen = tmp_path / "container-args"
    fake = tmp_path / "fake-apptainer"
    fake.write_text(f'#!/bin/bash\nprintf "%s\\n" "$@" > {seen}\nshift 3\nexec "$@"\n')
    fake.chmod(0o755)
    env, _ = _slurm_env(request, tmp_path, monkeypatch, container=f"{fake} exec --nv {{image}}")
    code = code_folder(tmp_path, "print('inside', flush=True)\n")
    missing = env.run("submit", "python-script", "--code", str(code))
    assert missing.returncode == 2 and "needs the job's image" in _errors(missing)[0], missing.stderr
    hostile = env.run("submit", "python-script", "--code", str(code), "--set", "image=x'; touch /tmp/pwned; '")
    assert hostile.returncode == 2 and "is not an image" in _errors(hostile)[0], hostile.stderr
    job_id = submit_script(env, code, "--set", "image=docker://org/train:1")
    done = env.run("logs", "-f", job_id, timeout=180)
    assert done.returncode == 0 and "inside" in done.stdout, done.stdout + done.stderr
    args = seen.read_text().splitlines()
    assert args[:3] == ["exec", "--nv", "docker://org/train:1"] and args[4:6] == ["-m", "jobsub.runtime"], args
