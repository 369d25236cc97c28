"""Cost: estimates at submit, --max-cost refusing and stopping jobs, actual cost, `jobsub cost` (local + moto)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Env, code_folder

GIB = 1 << 30
PRICES = {
    "table": "test",
    "source": "tests/test_cost.py",
    "currency": "CNY",
    "cpu_core_hour": 0.5,
    "memory_gib_hour": 0.1,
    "gpu_hour": 10.0,
    "storage_gib_month": 0.12,
    "requests_per_1000": 0.01,
}


def set_prices(env: Env, **prices: object) -> None:
    from jobsub.config import load_config, resolve_profile, save_config

    env.apply()
    config = load_config()
    name, profile = resolve_profile(config=config)
    config.profiles[name] = profile.model_copy(update={"prices": type(profile.prices).model_validate(prices)})
    save_config(config)


def test_dry_run_estimate_uses_resources_timeout_and_upload_size(env: Env, tmp_path: Path) -> None:
    set_prices(env, **PRICES)
    data = tmp_path / "data.bin"
    data.write_bytes(b"x" * (3 << 20))
    result = env.run(
        "submit", "python-script", "--code", str(code_folder(tmp_path, "print(1)\n")), "--input", f"extra={data}",
        "--set", "resources.cpus=2", "--set", "resources.memory=4GiB", "--set", "timeout=2h", "--dry-run",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    estimate = json.loads(result.stdout)["estimate"]
    assert estimate["rate_per_hour"] == pytest.approx(2 * 0.5 + 4 * 0.1)
    assert estimate["compute_upper"] == pytest.approx(2.8)
    assert estimate["upload_bytes"] >= 3 << 20
    assert estimate["storage_month"] == pytest.approx(estimate["upload_bytes"] / GIB * 0.12)
    assert estimate["upper"] == pytest.approx(2.8 + estimate["storage_month"] + estimate["requests_cost"])
    assert estimate["currency"] == "CNY" and estimate["table"] == "test"
    # nothing was submitted by a dry run
    assert env.run_json("jobs") == []


def test_submit_prints_the_estimate_and_status_shows_the_actual_cost(env: Env, tmp_path: Path) -> None:
    set_prices(env, **PRICES)
    code = code_folder(
        tmp_path, "open(__import__('os').environ['JOBSUB_OUTPUT_DIR'] + '/out.bin', 'wb').write(b'y' * 5000)\n"
    )
    result = env.run("submit", "python-script", "--code", str(code), "--set", "timeout=1h", "--follow", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "estimate: at most" in result.stderr and "[test]" in result.stderr  # messages go to stderr
    job_id = result.stdout.splitlines()[0]
    info = env.run_json("status", job_id)
    cost = info["cost"]
    assert cost["rate_per_hour"] == pytest.approx(0.5)  # no cpus set: priced as one core
    assert cost["compute"] == pytest.approx(0.5 * info["duration_seconds"] / 3600, rel=1e-6)
    assert cost["stored_bytes"] >= 5000  # the output file, plus logs and records
    assert cost["storage_month"] == pytest.approx(cost["stored_bytes"] / GIB * 0.12)
    text = env.run("status", job_id).stdout
    assert "cost" in text and "CNY" in text and "[test]" in text
    assert "cost:" in env.run("results", job_id).stdout
    assert "COST" in env.run("jobs").stdout


def test_max_cost_refuses_at_submit_before_uploading_anything(env: Env, tmp_path: Path) -> None:
    set_prices(env, **PRICES)
    data = tmp_path / "big.bin"
    data.write_bytes(b"z" * 100_000)
    result = env.run(
        "submit", "python-script", "--code", str(code_folder(tmp_path, "print(1)\n")), "--input", f"extra={data}",
        "--set", "resources.gpus=1", "--set", "timeout=3h", "--max-cost", "5",
    )  # fmt: skip
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "exceeds --max-cost 5.00 CNY" in errors[0], result.stderr
    assert "estimate: at most 31.50 CNY" in result.stderr  # 3 h x (1 core x 0.5 + 1 GPU x 10)
    from jobsub.errors import BucketNotFoundError

    try:
        objects = list(env.store().iter_objects(env.bucket, ""))
    except BucketNotFoundError:
        objects = []
    assert objects == []  # no input, no code, no record


def test_max_cost_stops_a_running_job_like_a_timeout(env: Env, tmp_path: Path) -> None:
    # 3600 per core-hour = 1 CNY per second of a one-core job: a 6 CNY limit stops it after about 6 s
    # (staging counts too, so the limit leaves a loaded machine time to start the command)
    set_prices(env, **{**PRICES, "cpu_core_hour": 3600.0})
    spec = tmp_path / "job.yaml"  # no timeout: no upper bound at submit, so only the runtime can hold the limit
    spec.write_text(
        "name: spender\ncommand: python -c \"import time; print('started', flush=True); time.sleep(120)\"\n"
    )
    result = env.run("submit", "-f", str(spec), "--max-cost", "6", "--follow", timeout=120)
    assert result.returncode != 0 and result.stdout, result.stderr
    job_id = result.stdout.splitlines()[0]
    status = env.run_json("status", job_id)["status"]
    assert status["state"] == "FAILED"
    assert status["reason"].startswith("cost limit 6.00 CNY reached after"), status
    assert "started" in result.stdout


def test_estimate_uses_the_median_of_earlier_runs(env: Env, tmp_path: Path) -> None:
    set_prices(env, **PRICES)
    code = code_folder(tmp_path, "print('ok')\n")
    done = env.run("submit", "python-script", "--code", str(code), "--follow", timeout=120)
    assert done.returncode == 0, done.stderr
    estimate = env.run_json("submit", "python-script", "--code", str(code), "--dry-run")["estimate"]
    assert estimate["runs_seen"] == 1 and estimate["typical_seconds"] > 0
    assert estimate["compute_upper"] == pytest.approx(12.0)  # the template's 24h timeout is the upper bound
    # other resources are another population: no history
    other = env.run_json("submit", "python-script", "--code", str(code), "--set", "resources.cpus=2", "--dry-run")
    assert other["estimate"]["runs_seen"] == 0


def test_cost_adds_up_jobs_and_the_storage_of_a_prefix(env: Env, tmp_path: Path) -> None:
    set_prices(env, **PRICES)
    folder = tmp_path / "kept"
    sizes = [1000, 2500, 70_000]
    for i, size in enumerate(sizes):
        (folder / f"f{i}.bin").parent.mkdir(exist_ok=True)
        (folder / f"f{i}.bin").write_bytes(b"k" * size)
    env.run("upload", str(folder), env.uri("data/kept"), check=True)
    # a neighbour that shares the prefix string must not be counted
    (tmp_path / "n.bin").write_bytes(b"n" * 999)
    env.run("upload", str(tmp_path / "n.bin"), env.uri("data/kept2/n.bin"), check=True)
    bill = env.run_json("cost", "--prefix", env.uri("data/kept/"))
    assert bill["storage"]["bytes"] == sum(sizes) and bill["storage"]["objects"] == 3
    assert bill["storage"]["per_month"] == pytest.approx(sum(sizes) / GIB * 0.12)
    assert bill["table"] == "test" and bill["currency"] == "CNY"
    code = code_folder(tmp_path, "print('ok')\n")
    env.run("submit", "python-script", "--code", str(code), "--follow", check=True, timeout=120)
    bill = env.run_json("cost", "--since", "1d")
    assert len(bill["jobs"]) == 1 and bill["compute"] > 0
    text = env.run("cost").stdout
    assert "price table 'test'" in text and "per month" in text


def test_default_profile_prices_are_zero_and_say_so(env: Env, tmp_path: Path) -> None:
    text = env.run("cost", check=True).stdout
    assert "price table 'none'" in text and "no prices set" in text
    estimate = env.run_json("submit", "python-script", "--code", str(code_folder(tmp_path, "1\n")), "--dry-run")[
        "estimate"
    ]
    assert estimate["table"] == "none" and estimate["rate_per_hour"] == 0


def test_bad_price_table_and_unknown_flavor_are_clear_errors(env: Env, tmp_path: Path) -> None:
    from jobsub.config import config_file

    set_prices(env, **{**PRICES, "flavors": {"gpu.a100": 9.0}})
    result = env.run(
        "submit", "python-script", "--code", str(code_folder(tmp_path, "1\n")), "--set", "resources.flavor=gpu.h100"
    )
    assert result.returncode == 2 and "flavor 'gpu.h100' has no price" in result.stderr and "gpu.a100" in result.stderr
    path = config_file()
    path.write_text(path.read_text().replace("cpu_core_hour = 0.5", "cpu_core_hour = -1.0"))
    result = env.run("cost")
    assert result.returncode == 2 and "prices.cpu_core_hour" in result.stderr, result.stderr
