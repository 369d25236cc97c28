"""The ModelArts executor against the stand-in (tests/modelarts_standin.py): what the conformance suite does
not cover — the errors before anything is uploaded, signatures, request bodies checked against the SDK's own
models, the queue reason, the one-time credentials object and the exported log."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import requests

from tests.conftest import SECRET, Env, code_folder, make_env, poll
from tests.executors.harness import ExecutorHarness, configure
from tests.executors.harness_modelarts import BUSY_FLAVOR, FLAVOR, FLAVORS, harness_for
from tests.modelarts_standin import ModelArtsStandIn, unknown_fields

pytest.importorskip("huaweicloudsdkmodelarts", reason="pip install -e '.[test]' installs the ModelArts SDK")


@pytest.fixture
def maenv(
    tmp_path: Path, monkeypatch, moto_url: str, modelarts_standin: ModelArtsStandIn
) -> tuple[Env, ExecutorHarness]:
    for key in list(os.environ):
        if key.startswith(("XDG_", "JOBSUB_", "AWS_", "HUAWEICLOUD_")):
            monkeypatch.delenv(key)
    env = make_env(tmp_path, "s3", moto_url)
    harness = harness_for(modelarts_standin)
    configure(env, harness)
    for key, value in env.vars.items():
        monkeypatch.setenv(key, value)
    return env, harness


def _submit(env: Env, code: Path, *extra: str, extra_env: dict[str, str] | None = None):
    return env.run("submit", "python-script", "--code", str(code), *extra, extra_env=extra_env, timeout=180)


def _bucket_keys(env: Env) -> list[str]:
    return [o["Key"] for o in env.boto().list_objects_v2(Bucket=env.bucket).get("Contents", [])]


def _profile_with(env: Env, section: str = "modelarts", **values: object) -> None:
    from jobsub.config import config_file, load_config, resolve_profile, save_config

    env.apply()
    config = load_config()
    name, profile = resolve_profile(config=config)
    data = profile.model_dump()
    data[section].update(values)
    config.profiles[name] = type(profile).model_validate(data)
    save_config(config, config_file())


@pytest.mark.parametrize(
    "case",
    [
        "no credentials",
        "wrong secret key",
        "unknown project",
        "unknown region",
        "unknown flavor",
        "local image",
        "image of another region",
        "no project id",
    ],
)
def test_errors_before_anything_is_uploaded_are_one_line_and_exit_2(
    maenv: tuple[Env, ExecutorHarness], tmp_path: Path, case: str
) -> None:
    env, harness = maenv
    code = code_folder(tmp_path, "print('never runs')\n")
    extra_env: dict[str, str] = {}
    args: list[str] = []
    expected = ""
    if case == "no credentials":
        extra_env = {"HUAWEICLOUD_SDK_AK": "", "HUAWEICLOUD_SDK_SK": "", "HOME": str(tmp_path)}
        expected = "no Huawei Cloud credentials: set HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK"
    elif case == "wrong secret key":
        extra_env = {"HUAWEICLOUD_SDK_SK": "0" * 40}
        expected = "ModelArts refused the credentials (HTTP 401 APIGW.0301"
    elif case == "unknown project":
        _profile_with(env, project_id="f" * 32)
        expected = f"ModelArts refused project {'f' * 32}"
    elif case == "unknown region":
        _profile_with(env, endpoint=None, region="mars-north-1")
        expected = "unknown ModelArts region 'mars-north-1'; known: "
    elif case == "unknown flavor":
        prices = {"flavors": {f: 0.0 for f in [*FLAVORS, "modelarts.vm.gpu.imaginary"]}}
        _profile_with(env, "prices", **prices)
        args = ["--set", "resources.flavor=modelarts.vm.gpu.imaginary"]
        offered = ", ".join(sorted(FLAVORS))
        expected = f"unknown ModelArts flavor 'modelarts.vm.gpu.imaginary'; this project offers: {offered}"
    elif case == "local image":
        args = ["--set", "image=jobsub-train:latest"]
        expected = "image 'jobsub-train:latest' is a local name; ModelArts pulls custom images from SWR"
    elif case == "image of another region":
        args = ["--set", "image=swr.ap-southeast-1.myhuaweicloud.com/me/jobsub-train:1"]
        expected = "ModelArts in cn-north-4 pulls only from swr.cn-north-4.myhuaweicloud.com"
    elif case == "no project id":
        _profile_with(env, project_id=None)
        expected = "no ModelArts project id: set modelarts.project_id"
    result = _submit(env, code, *args, extra_env=extra_env)
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and expected in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert _bucket_keys(env) == []  # nothing uploaded, no record written
    sk = harness.cli_env["HUAWEICLOUD_SDK_SK"]
    assert sk not in result.stdout + result.stderr


def test_missing_sdk_is_one_line_exit_2(maenv: tuple[Env, ExecutorHarness], tmp_path: Path) -> None:
    env, _ = maenv
    shadow = tmp_path / "shadow" / "huaweicloudsdkmodelarts"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('not installed here')\n")
    code = code_folder(tmp_path, "print('never runs')\n")
    pythonpath = f"{tmp_path / 'shadow'}{os.pathsep}{env.vars['PYTHONPATH']}"
    result = _submit(env, code, extra_env={"PYTHONPATH": pythonpath})
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert errors == ["error: the modelarts executor needs Huawei Cloud's SDK: pip install 'jobsub[modelarts]'"]
    assert _bucket_keys(env) == []


def test_unsigned_and_wrongly_signed_requests_are_refused(modelarts_standin: ModelArtsStandIn) -> None:
    url = f"{modelarts_standin.url}/v2/{modelarts_standin.project_id}/training-job-flavors"
    unsigned = requests.get(url, timeout=10)
    assert unsigned.status_code == 401 and unsigned.json()["error_code"] == "APIGW.0301"
    ((ak, _),) = modelarts_standin.keys.items()
    forged = requests.get(
        url,
        headers={
            "X-Sdk-Date": "20261129T000000Z",
            "Authorization": f"SDK-HMAC-SHA256 Access={ak}, SignedHeaders=host;x-sdk-date, Signature={'0' * 64}",
        },
        timeout=10,
    )
    assert forged.status_code == 401


def test_the_create_body_uses_only_fields_the_sdk_models_define(
    maenv: tuple[Env, ExecutorHarness], tmp_path: Path, modelarts_standin: ModelArtsStandIn
) -> None:
    env, _ = maenv
    from jobsub.config import resolve_profile
    from jobsub.executors import LaunchRequest
    from jobsub.executors.modelarts import ModelArtsExecutor
    from jobsub.executors.modelarts_settings import ModelArtsSettings

    profile = resolve_profile()[1]
    settings = profile.section("modelarts", ModelArtsSettings)
    update = {"log_export_path": f"obs://{env.bucket}/ma-logs/", "pool_id": "pool-1"}
    profile = profile.with_section("modelarts", settings.model_copy(update=update))
    request = LaunchRequest(
        job_id="j1", job_uri=f"s3://{env.bucket}/jobs/j1/", profile=profile, timeout_seconds=7200, flavor=FLAVOR
    )
    body = ModelArtsExecutor(profile).job_body(request, {"A": "1"})
    assert unknown_fields("Job", body) == []
    assert body["spec"]["auto_stop"] == {"time_unit": "HOURS", "duration": 3}
    # the check has teeth: a field the API does not know is found, and the stand-in refuses it
    body["spec"]["resource"]["gpu_count"] = 1
    assert unknown_fields("Job", body) == ["spec.resource.gpu_count"]
    status, answer = modelarts_standin.create(body)
    assert status == 400 and "spec.resource.gpu_count" in answer["error_msg"]


def test_queued_job_shows_the_modelarts_phase_and_cancel_while_queued_deletes_its_credentials(
    maenv: tuple[Env, ExecutorHarness], tmp_path: Path, modelarts_standin: ModelArtsStandIn
) -> None:
    env, _ = maenv
    code = code_folder(tmp_path, "print('never runs')\n")
    result = _submit(env, code, "--set", f"resources.flavor={BUSY_FLAVOR}", "--json")
    assert result.returncode == 0, result.stderr
    job_id = json.loads(result.stdout)["job_id"]
    status = poll(
        lambda: (s := env.run_json("status", job_id)["status"])["reason"] == "queued: ModelArts Pending: queuing" and s,
        60,
        0.5,
        "the queue reason",
    )
    assert status["state"] == "QUEUED"
    assert "modelarts training job jobsub-" in env.run_json("status", job_id)["executor"]
    # the job definition ModelArts keeps (and shows on its console) holds no storage secret
    body = json.dumps(modelarts_standin.create_bodies[-1])
    assert SECRET not in body and "AWS_SECRET_ACCESS_KEY" not in body
    secrets_objects = [k for k in _bucket_keys(env) if "/_secrets/" in k]
    assert len(secrets_objects) == 1
    # `jobsub jobs` asks ModelArts once (a search) for all of its live jobs, not once per job
    second = json.loads(_submit(env, code, "--set", f"resources.flavor={BUSY_FLAVOR}", "--json").stdout)["job_id"]
    before = len(modelarts_standin.requests)
    rows = {row["id"]: row for row in env.run_json("jobs")}
    asked = [(m, p) for m, p, _ in modelarts_standin.requests[before:]]
    assert [p for _, p in asked if "training-job" in p] == [f"/v2/{modelarts_standin.project_id}/training-job-searches"]
    assert rows[job_id]["reason"] == rows[second]["reason"] == "queued: ModelArts Pending: queuing"
    assert env.run("cancel", second, timeout=120).returncode == 0
    cancelled = env.run("cancel", job_id, timeout=120)
    assert cancelled.returncode == 0, cancelled.stderr
    final = poll(
        lambda: (s := env.run_json("status", job_id)["status"])["state"] == "CANCELLED" and s, 60, 0.5, "CANCELLED"
    )
    assert final["reason"] == "cancelled by request before it started"
    poll(lambda: env.run_json("status", second)["status"]["state"] == "CANCELLED", 60, 0.5, "the second CANCELLED")
    poll(lambda: not [k for k in _bucket_keys(env) if "/_secrets/" in k], 30, 0.5, "the credentials object deleted")


def test_credentials_are_read_once_and_the_log_is_exported_to_obs(
    maenv: tuple[Env, ExecutorHarness], tmp_path: Path, modelarts_standin: ModelArtsStandIn
) -> None:
    env, _ = maenv
    _profile_with(env, log_export_path=f"obs://{env.bucket}/ma-logs/")
    code = code_folder(
        tmp_path,
        "import os\nprint('key id set:', bool(os.environ.get('AWS_ACCESS_KEY_ID')))\n"
        "print('token ok:', os.environ.get('MY_API_TOKEN') == 'tok-' + 'x' * 20)\n",
    )
    token = "tok-" + "x" * 20
    result = _submit(env, code, "--secret-env", "MY_API_TOKEN", "--follow", extra_env={"MY_API_TOKEN": token})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "key id set: True" in result.stdout and "token ok: True" in result.stdout
    assert token not in json.dumps(modelarts_standin.create_bodies[-1])  # --secret-env goes the same one-time way
    job_id = result.stdout.splitlines()[0]
    assert not [k for k in _bucket_keys(env) if "/_secrets/" in k]  # read and deleted by the job itself
    job = next(j for j in modelarts_standin.jobs.values() if j.body["metadata"]["name"] == f"jobsub-{job_id}")
    ticket = json.loads(job.body["algorithm"]["environments"]["JOBSUB_SECRET_FETCH"])
    assert SECRET not in json.dumps(job.body) and ticket["url"].startswith("http")
    again = requests.get(ticket["url"], timeout=10)  # copied off the console: worthless now
    assert again.status_code == 404
    exported = f"ma-logs/modelarts-job-{job.id}-worker-0.log"
    log = (
        poll(lambda: exported in _bucket_keys(env), 30, 0.3, "the exported log")
        and env.boto().get_object(Bucket=env.bucket, Key=exported)["Body"].read().decode()
    )
    assert SECRET not in log


def test_profile_add_takes_the_modelarts_settings_and_refuses_them_for_another_executor(tmp_path: Path) -> None:
    env = make_env(tmp_path, "local")
    added = env.run(
        "profile", "add", "ma", "--storage", "s3", "--endpoint-url", "https://obs.cn-north-4.myhuaweicloud.com",
        "--executor", "modelarts", "--modelarts-region", "cn-north-4", "--modelarts-project-id", "p" * 32,
        "--modelarts-flavor", FLAVOR, "--modelarts-image", "swr.cn-north-4.myhuaweicloud.com/me/jobsub-train:1",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    shown = json.loads(env.run("profile", "list", "--json", check=True).stdout)["profiles"]["ma"]["modelarts"]
    assert shown["region"] == "cn-north-4" and shown["flavor"] == FLAVOR and shown["project_id"] == "p" * 32
    wrong = env.run("profile", "add", "x", "--storage", "local", "--modelarts-region", "cn-north-4")
    assert wrong.returncode == 2
    assert "--modelarts-region only apply to --executor modelarts" in wrong.stderr


def test_a_create_the_service_refuses_fails_the_job_with_its_reason_and_leaves_no_credentials(
    maenv: tuple[Env, ExecutorHarness], tmp_path: Path
) -> None:
    env, _ = maenv
    code = code_folder(tmp_path, "print('never runs')\n")
    missing = "swr.cn-north-4.myhuaweicloud.com/jobsub/not-pushed:1"  # well formed, not in the registry
    result = _submit(env, code, "--set", f"image={missing}", "--json")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "ModelArts.2796" in errors[0] and missing in errors[0], result.stderr
    assert not [k for k in _bucket_keys(env) if "/_secrets/" in k]
    jobs = env.run_json("jobs")
    assert jobs and jobs[0]["state"] == "FAILED" and "modelarts launch failed" in jobs[0]["reason"]


def test_a_job_that_cannot_read_its_credentials_fails_with_the_reason_in_the_exported_log(
    maenv: tuple[Env, ExecutorHarness], tmp_path: Path, modelarts_standin: ModelArtsStandIn
) -> None:
    """Hostile: the one-time object was taken (a console reader, an earlier start) before the job started."""
    env, _ = maenv
    _profile_with(env, log_export_path=f"obs://{env.bucket}/ma-logs/")
    code = code_folder(tmp_path, "print('never runs')\n")
    result = _submit(env, code, "--set", f"resources.flavor={BUSY_FLAVOR}", "--json")
    assert result.returncode == 0, result.stderr
    job_id = json.loads(result.stdout)["job_id"]
    (taken,) = [k for k in _bucket_keys(env) if "/_secrets/" in k]
    env.boto().delete_object(Bucket=env.bucket, Key=taken)
    busy = modelarts_standin.flavors[BUSY_FLAVOR]
    busy.capacity = 1
    try:
        status = poll(
            lambda: (s := env.run_json("status", job_id)["status"])["state"] == "FAILED" and s, 90, 0.5, "FAILED"
        )
    finally:
        busy.capacity = 0
    assert "ModelArts job Failed (exit code 1)" in status["reason"]
    assert f"exported to obs://{env.bucket}/ma-logs/" in status["reason"]
    job = next(j for j in modelarts_standin.jobs.values() if j.body["metadata"]["name"] == f"jobsub-{job_id}")
    exported = f"ma-logs/modelarts-job-{job.id}-worker-0.log"
    poll(lambda: exported in _bucket_keys(env), 30, 0.3, "the exported log")
    log = env.boto().get_object(Bucket=env.bucket, Key=exported)["Body"].read().decode()
    assert "the job's one-time secret could not be fetched (HTTP 404)" in log


def _job_record(env: Env, job_id: str):
    from jobsub.jobs.records import JobRecord
    from jobsub.storage import open_store
    from jobsub.uri import ObjectURI

    env.apply()
    from jobsub.config import resolve_profile

    _, profile = resolve_profile()
    return JobRecord(open_store(profile), ObjectURI.parse(profile.jobs_uri), job_id)


def test_a_rewritten_record_naming_another_training_job_neither_stops_nor_follows_it(
    maenv: tuple[Env, ExecutorHarness], tmp_path: Path, modelarts_standin: ModelArtsStandIn
) -> None:
    """Whoever can write the jobs prefix can point job A's executor.json at job B's training job id (same
    project, same endpoint): `cancel A` must not stop B, and `status A` must not report B's phase. A handle
    naming another jobsub job outright is refused with one line."""
    env, _ = maenv
    code = code_folder(tmp_path, "print('never runs')\n")
    ids = [
        json.loads(_submit(env, code, "--set", f"resources.flavor={BUSY_FLAVOR}", "--json").stdout)["job_id"]
        for _ in range(2)
    ]
    victim, attacker = ids
    real = {i: dict(_job_record(env, i).get_json("executor.json")) for i in ids}
    record = _job_record(env, attacker)
    record.put_json("executor.json", {**real[attacker], "training_job_id": real[victim]["training_job_id"]})
    stops_before = [p for m, p, _ in modelarts_standin.requests if m == "POST" and p.endswith("/actions")]
    assert env.run("cancel", attacker, "--no-wait", timeout=120).returncode == 0
    stops = [p for m, p, _ in modelarts_standin.requests if m == "POST" and p.endswith("/actions")][len(stops_before) :]
    assert not [p for p in stops if real[victim]["training_job_id"] in p], stops
    victim_status = env.run_json("status", victim)["status"]
    assert victim_status["state"] == "QUEUED", victim_status
    # the whole handle of another job: refused by its job id before any request, one line, exit 1
    record.put_json("executor.json", real[victim])
    refused = env.run("status", attacker)
    assert refused.returncode == 1 and "not acting on it" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    # the happy path: the true handle back, both jobs cancel
    record.put_json("executor.json", real[attacker])
    for job_id in ids:
        assert env.run("cancel", job_id, timeout=120).returncode == 0
    for job_id in ids:
        poll(lambda j=job_id: env.run_json("status", j)["status"]["state"] == "CANCELLED", 60, 0.5, "CANCELLED")
