"""`jobsub cancel` of a LOST docker job: the executor that owns the job says what is left of it.

On an S3 store the runner runs in the container and records the container's hostname as where it ran; the
service used to answer with "run `jobsub cancel` there" (a host that is a container id). DockerExecutor's
own kill_leftovers stops the container and says so. Real dockerd (the suite's engine) and moto on
loopback; run under the heavy lock.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import code_folder, make_env, poll, use_env
from tests.executors.harness import ExecutorHarness, configure
from tests.executors.test_conformance import _handle, _status, _submit_args, _wait_for_line


def test_cancel_of_a_lost_container_job_stops_its_container_and_says_so(
    docker_harness: ExecutorHarness, moto_url: str, tmp_path: Path, monkeypatch
) -> None:
    env = make_env(tmp_path, "s3", moto_url)
    configure(env, docker_harness)
    use_env(monkeypatch, env)
    code = code_folder(tmp_path, "import time\nprint('ready', flush=True)\ntime.sleep(600)\n")
    job_id = env.run_json(*_submit_args(docker_harness, code))["job_id"]
    _wait_for_line(env, job_id, r"(?m)^ready$")
    handle = _handle(env, job_id)
    try:
        assert docker_harness.kill_runner is not None
        docker_harness.kill_runner(handle)
        poll(lambda: _status(env, job_id)["state"] == "LOST", 60, 0.3, "state LOST")
        result = env.run("cancel", job_id)
        assert result.returncode == 0, result.stderr
        said = result.stdout.strip().splitlines()[-1]
        assert f"its container {handle['container_id'][:12]} on " in said, said
        assert "nothing of it is left running" in said and "run `jobsub cancel" not in said, said
        poll(lambda: docker_harness.nothing_running(handle), 20, 0.2, "nothing of the job still running")
    finally:
        docker_harness.reap(handle)
