"""Docker-specific behaviour beyond the conformance suite: clear errors with nothing half-submitted, secrets
handed to the runtime (never in the container config), files owned by the submitting user, containers
removed once final.

All against the real dockerd of tests/executors/harness_docker.py (except the missing-engine case, which
needs no engine: it points the profile at a socket where none listens).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import SECRET, Env, code_folder, make_env, poll
from tests.executors.harness import ExecutorHarness, configure

pytest.importorskip("docker", reason="the docker SDK is not installed (pip install 'jobsub[docker]')")


def _env(request, tmp_path: Path, monkeypatch, harness: ExecutorHarness, store: str) -> Env:
    moto = request.getfixturevalue("moto_url") if store == "s3" else None
    for key in list(os.environ):
        if key.startswith(("XDG_", "JOBSUB_", "AWS_", "DOCKER_")):
            monkeypatch.delenv(key)
    env = make_env(tmp_path, store, moto)
    configure(env, harness)
    for key, value in env.vars.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture(params=["local", "s3"])
def denv(request, tmp_path: Path, monkeypatch, docker_harness: ExecutorHarness) -> Env:
    return _env(request, tmp_path, monkeypatch, docker_harness, request.param)


def _errors(stderr: str) -> list[str]:
    """The error lines (submit also prints its cost estimate on stderr); never a traceback."""
    assert "Traceback" not in stderr
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _nothing_recorded(env: Env) -> None:
    assert env.run_json("jobs") == []
    root = Path(env.vars["XDG_DATA_HOME"]) / "jobsub" / "store"
    if env.kind == "local":  # no code or input was uploaded either
        assert not root.exists() or not [p for p in root.rglob("*") if p.is_file() and "/_code/" in str(p)]


def test_no_engine_is_one_line_with_exit_2_and_nothing_submitted(request, tmp_path: Path, monkeypatch) -> None:
    sock = tmp_path / "no-engine.sock"
    harness = ExecutorHarness(kind="docker", profile_settings={"executor": "docker", "docker": {}})
    env = _env(request, tmp_path, monkeypatch, harness, "local")
    env.vars["DOCKER_HOST"] = f"unix://{sock}"
    code = code_folder(tmp_path, "print('never')\n")
    result = env.run("submit", "python-script", "--code", str(code), "--input", f"data={code}")
    assert result.returncode == 2, result.stderr
    assert _errors(result.stderr) == [
        f"error: no Docker engine at unix://{sock}: start dockerd or set DOCKER_HOST (or `docker.host` in the profile)"
    ]
    _nothing_recorded(env)


def test_missing_image_and_gpus_without_nvidia_runtime_are_one_line_errors(denv: Env, tmp_path: Path) -> None:
    code = code_folder(tmp_path, "print('never')\n")
    result = denv.run("submit", "python-script", "--code", str(code), "--set", "image=jobsub-nope:1")
    assert result.returncode == 2 and len(_errors(result.stderr)) == 1, result.stderr
    assert "image jobsub-nope:1 is not on the engine" in result.stderr and "jobsub image build" in result.stderr
    result = denv.run("submit", "python-script", "--code", str(code), "--set", "resources.gpus=1")
    assert result.returncode == 2 and len(_errors(result.stderr)) == 1, result.stderr
    assert "resources.gpus=1" in result.stderr and "no NVIDIA runtime" in result.stderr
    _nothing_recorded(denv)


def _handle(env: Env, job_id: str) -> dict:
    from jobsub.config import resolve_profile
    from jobsub.jobs.records import JobRecord
    from jobsub.uri import ObjectURI

    store = env.store()
    profile = resolve_profile()[1]
    return dict(JobRecord(store, ObjectURI.parse(profile.jobs_uri).as_prefix(), job_id).get_json("executor.json"))


def test_secrets_reach_the_job_but_not_the_container_config(
    request, tmp_path: Path, monkeypatch, docker_harness: ExecutorHarness, docker_engine
) -> None:
    _, client = docker_engine
    env = _env(request, tmp_path, monkeypatch, docker_harness, "s3")
    code = code_folder(
        tmp_path,
        "import os, time\n"
        "print('secret length', len(os.environ.get('AWS_SECRET_ACCESS_KEY', '')), flush=True)\n"
        "time.sleep(600)\n",
    )
    job_id = env.run_json("submit", "python-script", "--code", str(code))["job_id"]
    poll(lambda: "secret length" in env.run("logs", job_id).stdout, 120, 0.3, "the job to start")
    assert f"secret length {len(SECRET)}" in env.run("logs", job_id).stdout
    handle = _handle(env, job_id)
    attrs = client.api.inspect_container(handle["container_id"])
    assert SECRET not in json.dumps(attrs["Config"]["Labels"]) and SECRET not in json.dumps(handle)
    assert SECRET not in json.dumps(client.images.get(attrs["Config"]["Image"]).attrs)
    assert SECRET not in json.dumps(attrs)  # handed over on stdin (executors/secret_handoff.py), not in Env
    status = env.run("--debug", "status", job_id)
    assert f"docker container {handle['container_id'][:12]}" in status.stdout and SECRET not in status.stdout
    assert SECRET not in status.stderr
    env.run("cancel", job_id, check=True, timeout=120)
    boto = env.boto()
    for obj in boto.list_objects_v2(Bucket=env.bucket, Prefix=f"jobs/{job_id}/").get("Contents", []):
        body = boto.get_object(Bucket=env.bucket, Key=obj["Key"])["Body"].read()
        assert SECRET.encode() not in body, obj["Key"]


def test_local_store_files_are_owned_by_the_user_and_the_container_is_removed(
    request, tmp_path: Path, monkeypatch, docker_harness: ExecutorHarness, docker_engine
) -> None:
    _, client = docker_engine
    env = _env(request, tmp_path, monkeypatch, docker_harness, "local")
    code = code_folder(
        tmp_path,
        "import os\nopen(os.path.join(os.environ['JOBSUB_OUTPUT_DIR'], 'out.txt'), 'w').write('x')\n"
        "print('uid', os.getuid(), flush=True)\n",
    )
    result = env.run("submit", "python-script", "--code", str(code), "--follow", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    # the submitter's uid, never the image's user (1000); never root: a uid of this job alone for root
    assert f"uid {os.getuid()}" in result.stdout if os.getuid() else "uid 2" in result.stdout
    job_id = result.stdout.splitlines()[0]
    store = Path(env.vars["XDG_DATA_HOME"]) / "jobsub" / "store"
    written = [p for p in store.rglob("*") if job_id in str(p)]
    assert any(p.name == "out.txt" for p in written)
    assert {(p.stat().st_uid, p.stat().st_gid) for p in written} == {(os.getuid(), os.getgid())}
    labelled = {"label": f"jobsub.job-id={job_id}"}
    poll(lambda: not client.api.containers(all=True, filters=labelled), 30, 0.2, "the job's container removed")


def test_keep_leaves_the_finished_container_for_debugging(
    request, tmp_path: Path, monkeypatch, docker_harness: ExecutorHarness, docker_engine
) -> None:
    _, client = docker_engine
    env = _env(request, tmp_path, monkeypatch, docker_harness, "local")
    env.run("profile", "add", "box", "--storage", "local", "--jobs-uri", f"s3://{env.bucket}/jobs/",
            "--executor", "docker", "--docker-host", docker_harness.cli_env["DOCKER_HOST"],
            "--docker-image", docker_harness.profile_settings["docker"]["image"], "--docker-keep", "--use",
            check=True)  # fmt: skip
    shown = env.run("profile", "show", check=True).stdout
    assert "executor: docker" in shown and "'keep': True" in shown
    code = code_folder(tmp_path, "print('done')\n")
    result = env.run("submit", "python-script", "--code", str(code), "--follow", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    job_id = result.stdout.splitlines()[0]
    kept = client.api.containers(all=True, filters={"label": f"jobsub.job-id={job_id}"})
    try:
        assert len(kept) == 1
        state = client.api.inspect_container(kept[0]["Id"])["State"]
        assert state["Status"] == "exited" and state["ExitCode"] == 0
    finally:
        for container in kept:
            client.api.remove_container(container["Id"], force=True)


def test_docker_options_are_refused_for_another_executor(env: Env) -> None:
    result = env.run("profile", "add", "x", "--storage", "local", "--docker-host", "unix:///x.sock")
    assert result.returncode == 2 and "--docker-host only apply to --executor docker" in result.stderr
    result = env.run("profile", "add", "x", "--storage", "local", "--executor", "docker", "--docker-host", "x.sock")
    assert result.returncode == 2 and "--docker-host: use unix:///" in result.stderr
