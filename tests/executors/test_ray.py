"""Ray executor behaviour beyond the conformance suite, on the real one-node cluster of harness_ray.py.

Errors a user meets (unreachable address, no Jobs API, rejected credentials) are one line and exit 2,
before anything is uploaded; credentials never reach a job record; the cluster's Python lacks jobsub
and the jobsub shipped with each job is what runs; Ray's queue is visible as the job's reason.
"""

from __future__ import annotations

import http.server
import io
import json
import os
import subprocess
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import KEY_ID, SECRET, Env, code_folder, free_port, make_env, poll, use_env
from tests.executors.harness import ExecutorHarness, configure
from tests.executors.harness_ray import AUTH_VAR, RayCluster


def _ray_env(env: Env, harness: ExecutorHarness, **ray: object) -> Env:
    """`env` with its current profile on the Ray cluster, with some ray settings changed."""
    settings = {**harness.profile_settings, "ray": {**harness.profile_settings["ray"], **ray}}
    configure(env, ExecutorHarness(kind="ray", profile_settings=settings, cli_env=harness.cli_env))
    return env


def _submit(env: Env, code: Path, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return env.run("submit", "python-script", "--code", str(code), *extra, timeout=timeout)


def _one_line_exit_2(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("estimate:")]
    assert len(lines) == 1, result.stderr  # the cost estimate line of submit aside, one line
    return lines[0]


@pytest.fixture
def env(tmp_path: Path, monkeypatch) -> Env:
    """A jobsub user on the local store (the Ray cluster shares this machine's filesystem)."""
    result = make_env(tmp_path, "local")
    use_env(monkeypatch, result)
    return result


def _no_jobs(env: Env) -> None:
    assert env.run_json("jobs") == [], "a failed check must leave no job record"


# -- errors a user meets: one line, exit 2, nothing uploaded -------------------------------------------------
def test_unreachable_address_is_one_line_and_leaves_no_record(
    env: Env, ray_harness: ExecutorHarness, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens there
    _ray_env(env, ray_harness, address=f"127.0.0.1:{port}")
    line = _one_line_exit_2(_submit(env, code_folder(tmp_path, "print('x')\n")))
    assert f"cannot reach the Ray dashboard at http://127.0.0.1:{port}" in line
    _no_jobs(env)


class _NotRay(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(404)
        self.end_headers()
        self.wfile.write(b"404: Not Found")

    do_POST = do_PUT = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def not_ray() -> Iterator[str]:
    """An HTTP server that answers 404 everywhere, as a Ray dashboard without the Jobs API does.

    A stand-in, said so: Ray versions without the Jobs API (before 1.9) do not install on Python 3.11, and
    the answer jobsub sees from them is exactly this one (404 on /api/version)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotRay)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_address_without_the_jobs_api_is_one_line(
    env: Env, ray_harness: ExecutorHarness, not_ray: str, tmp_path: Path
) -> None:
    _ray_env(env, ray_harness, address=not_ray)
    line = _one_line_exit_2(_submit(env, code_folder(tmp_path, "print('x')\n")))
    assert f"{not_ray} has no Ray Jobs API (HTTP 404 on /api/version)" in line
    _no_jobs(env)


def test_rejected_or_missing_credentials_name_the_variable(
    env: Env, ray_harness: ExecutorHarness, ray_cluster: RayCluster, tmp_path: Path
) -> None:
    code = code_folder(tmp_path, "print('x')\n")
    _ray_env(env, ray_harness)
    wrong = env.run("submit", "python-script", "--code", str(code), extra_env={AUTH_VAR: "Bearer wrong-token"})
    line = _one_line_exit_2(wrong)
    assert "refused jobsub (HTTP 403)" in line and f"${AUTH_VAR}" in line and "wrong-token" not in line

    unset = env.run("submit", "python-script", "--code", str(code), extra_env={AUTH_VAR: ""})
    assert f"comes from ${AUTH_VAR}, which is not set" in _one_line_exit_2(unset)

    _ray_env(env, ray_harness, headers_env={})
    missing = _one_line_exit_2(_submit(env, code))
    assert "refused jobsub (HTTP 401)" in missing and "ray.headers_env" in missing
    _no_jobs(env)


def test_profile_add_takes_a_ray_address_and_refuses_a_ray_client_address(env: Env) -> None:
    added = env.run("profile", "add", "rc", "--storage", "local", "--executor", "ray", "--ray-address", "head:8265")
    assert added.returncode == 0, added.stderr
    shown = env.run_json("profile", "show", "rc")
    assert shown["executor"] == "ray" and shown["ray"]["address"] == "http://head:8265"
    client = env.run(
        "profile", "add", "rc2", "--storage", "local", "--executor", "ray", "--ray-address", "ray://h:10001"
    )
    line = _one_line_exit_2(client)
    assert "Ray Client address" in line and "http://HEAD:8265" in line


# -- credentials ---------------------------------------------------------------------------------------------
def test_credentials_reach_the_runner_but_no_record(
    s3env: Env, ray_harness: ExecutorHarness, ray_cluster: RayCluster, tmp_path: Path
) -> None:
    """The job reads its S3 credentials (it runs on the s3 store) and prints them redacted; nothing jobsub
    stores holds them, nor Ray's job info (the key travels as a one-time secret: test_ray_secrets.py)."""
    env = _ray_env(s3env, ray_harness)
    code = code_folder(tmp_path, "import os\nprint('key is', os.environ['AWS_SECRET_ACCESS_KEY'], flush=True)\n")
    result = env.run("--debug", "submit", "python-script", "--code", str(code), "--follow", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "key is ***" in result.stdout
    job_id = result.stdout.splitlines()[0]
    client = env.boto()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=env.bucket, Prefix=f"jobs/{job_id}/")["Contents"]]
    assert any(k.endswith("executor.json") for k in keys) and any(k.endswith("job.json") for k in keys)
    for key in keys:
        body = client.get_object(Bucket=env.bucket, Key=key)["Body"].read()
        assert SECRET.encode() not in body and KEY_ID.encode() not in body, key
    status = env.run("--debug", "status", job_id, "--json")
    assert SECRET not in status.stdout + status.stderr and KEY_ID not in status.stdout + status.stderr
    assert SECRET not in result.stderr and KEY_ID not in result.stderr
    handle = json.loads(client.get_object(Bucket=env.bucket, Key=f"jobs/{job_id}/executor.json")["Body"].read())
    info = requests.get(f"{ray_cluster.url}/api/jobs/{handle['submission_id']}", headers=ray_cluster.headers)
    assert info.status_code == 404 or SECRET not in info.text  # deleted once final; never held the key anyway


# -- shipping jobsub -----------------------------------------------------------------------------------------
def test_the_cluster_python_lacks_jobsub_and_the_shipped_one_runs(
    env: Env, ray_harness: ExecutorHarness, ray_cluster: RayCluster, tmp_path: Path
) -> None:
    # the cluster's interpreter, and a bare Ray job on it, cannot import jobsub
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    bare = subprocess.run(
        [str(ray_cluster.cluster_python), "-c", "import jobsub"],
        capture_output=True,
        text=True,
        env=clean,
        cwd=tmp_path,
    )
    assert bare.returncode != 0 and "No module named 'jobsub'" in bare.stderr
    sid = f"bare-{tmp_path.name}"
    requests.post(
        f"{ray_cluster.url}/api/jobs/",
        json={"entrypoint": "python -c 'import jobsub'", "submission_id": sid},
        headers=ray_cluster.headers,
        timeout=30,
    ).raise_for_status()

    def bare_status():
        info = requests.get(f"{ray_cluster.url}/api/jobs/{sid}", headers=ray_cluster.headers, timeout=10).json()
        return info if info["status"] in ("SUCCEEDED", "FAILED", "STOPPED") else None

    assert poll(bare_status, 120, 0.5, "the bare Ray job to end")["status"] == "FAILED"

    # a jobsub job runs the jobsub it shipped: unpacked by Ray from the uploaded package
    _ray_env(env, ray_harness)
    code = code_folder(tmp_path, "import jobsub\nprint('jobsub from', jobsub.__file__, flush=True)\n")
    result = _submit(env, code, "--follow")
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("jobsub from"))
    assert "/runtime_resources/py_modules_files/" in line and str(ray_cluster.root) in line, line

    # without shipping, the job fails, and says why in one line
    _ray_env(env, ray_harness, ship_jobsub=False)
    unshipped = _submit(env, code, "--follow")
    assert unshipped.returncode != 0
    job_id = unshipped.stdout.splitlines()[0]
    status = env.run_json("status", job_id)["status"]
    assert status["state"] == "FAILED" and "No module named 'jobsub'" in status["reason"], status
    assert "\n" not in status["reason"]


def test_the_shipped_package_is_reproducible_and_holds_the_runtime() -> None:
    from jobsub.executors import ray_package

    name, data = ray_package.jobsub_package()
    ray_package.jobsub_package.cache_clear()
    again_name, again = ray_package.jobsub_package()
    assert (name, data) == (again_name, again)
    assert name.startswith("_ray_pkg_jobsub_") and name.endswith(".zip")
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert "jobsub/runtime/__main__.py" in names and "jobsub/executors/ray.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or "demo_data" in n]


def test_profile_pip_requirements_are_installed_for_the_runner(
    env: Env, ray_harness: ExecutorHarness, ray_cluster: RayCluster, tmp_path: Path
) -> None:
    """ray.pip goes to runtime_env.pip: Ray installs it (from the node's package index) for this job only."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    probe = subprocess.run(
        [str(ray_cluster.cluster_python), "-c", "import tabulate"], capture_output=True, env=clean, cwd=tmp_path
    )
    if probe.returncode == 0:
        pytest.skip("tabulate is already on the cluster's Python; the test needs a package it lacks")
    _ray_env(env, ray_harness, pip=["tabulate"])
    code = code_folder(tmp_path, "import tabulate\nprint(tabulate.tabulate([[1, 2]]), flush=True)\n")
    result = _submit(env, code, "--follow", timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "-  -\n1  2\n-  -" in result.stdout


# -- Ray's queue, visible ------------------------------------------------------------------------------------
def test_a_job_waiting_for_resources_shows_why_in_status_and_jobs(
    env: Env, ray_harness: ExecutorHarness, tmp_path: Path
) -> None:
    """The cluster has no GPU, so a job asking for one stays PENDING on Ray: `status` and `jobs` say so
    (jobs asks Ray once for both). Cancelled, Ray stops it if it is ever scheduled (see docs)."""
    _ray_env(env, ray_harness)
    code = code_folder(tmp_path, "print('ran')\n")
    ids = [env.run_json("submit", "python-script", "--code", str(code), "--set", "resources.gpus=1")["job_id"]]
    ids.append(env.run_json("submit", "python-script", "--code", str(code), "--set", "resources.gpus=1")["job_id"])
    try:
        status = poll(
            lambda: (s := env.run_json("status", ids[0])["status"])["reason"] and s, 60, 0.5, "a queue reason"
        )
        assert status["state"] == "QUEUED" and status["reason"] == "queued: waiting for resources (Ray PENDING)"
        described = env.run_json("status", ids[0])["executor"]
        assert described.startswith(f"ray submission jobsub-{ids[0]} at http://127.0.0.1:")
        rows = {row["id"]: row for row in env.run_json("jobs")}
        for job_id in ids:
            assert rows[job_id]["state"] == "QUEUED" and "waiting for resources" in rows[job_id]["reason"]
    finally:
        for job_id in ids:
            env.run("cancel", job_id, "--no-wait")
