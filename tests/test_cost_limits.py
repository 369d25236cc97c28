"""Cost limits hold (issue 17): --max-cost counts every second the resources are held — staging and the
output upload too, not only the command — and stops the job within seconds of the limit; a flavor says what
it holds and a spec cannot ask for more; `cpus: 0` is refused; `jobsub cost` says "no prices set" only when
every price is zero. Local store, local executor (the runner is the same on every executor)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import Env, code_folder, make_env, poll, use_env, write_random
from tests.test_cost import set_prices

#: 36 per core-hour = 0.01 a second for the default one core: --max-cost 0.04 is reached after 4 s
FAST_PRICES = {"table": "test", "currency": "CNY", "cpu_core_hour": 36.0}


@pytest.fixture
def user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    result = make_env(tmp_path)
    use_env(monkeypatch, result)
    return result


def _final(user: Env, job_id: str, deadline: float = 90) -> dict:
    return poll(
        lambda: (
            (s := user.run_json("status", job_id)["status"])["state"] in ("SUCCEEDED", "FAILED", "CANCELLED", "LOST")
            and s
        ),
        deadline,
        0.3,
        f"job {job_id} to end",
    )


def _submit(user: Env, tmp_path: Path, script: str, *extra: str, extra_env: dict[str, str] | None = None) -> str:
    """A job with no timeout (so --max-cost is not refused at submit: no upper bound) running `script`."""
    (tmp_path / "main.py").write_text(script)
    spec = tmp_path / "job.yaml"
    spec.write_text(f"name: spender\ncommand: python {tmp_path / 'main.py'}\n")
    result = user.run("submit", "-f", str(spec), *extra, "--json", extra_env=extra_env)
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["job_id"])


@pytest.mark.timing
def test_slow_staging_past_max_cost_is_stopped_and_the_reason_names_the_limit(user: Env, tmp_path: Path) -> None:
    set_prices(user, **FAST_PRICES)
    for n in range(24):  # 24 files: the bandwidth cap paces whole parts, so many small ones
        write_random(tmp_path / "in" / f"part{n:02d}.bin", 256 << 10, seed=n)
    user.run("upload", str(tmp_path / "in"), user.uri("in/"), check=True)
    marker = tmp_path / "ran"
    started = time.monotonic()
    job_id = _submit(
        user,
        tmp_path,
        f"open({str(marker)!r}, 'w').write('x')\n",
        "--input",
        f"data={user.uri('in/')}",
        "--max-cost",
        "0.04",
        extra_env={"JOBSUB_STAGING_MAX_BANDWIDTH": "256KiB"},  # 24 s of staging at this rate
    )
    status = _final(user, job_id)
    elapsed = time.monotonic() - started
    assert status["state"] == "FAILED", status
    assert status["reason"].startswith("cost limit 0.04 CNY reached after ") and "while staging" in status["reason"]
    assert elapsed < 20, f"stopped {elapsed:.1f}s after submit; staging alone takes 24 s"
    assert not marker.exists()
    assert "cost limit 0.04 CNY reached" in user.run("logs", job_id).stdout


@pytest.mark.timing
def test_a_slow_output_upload_counts_and_is_stopped(user: Env, tmp_path: Path) -> None:
    set_prices(user, **FAST_PRICES)
    started = time.monotonic()
    job_id = _submit(
        user,
        tmp_path,
        "import os\nfor n in range(32):\n"
        "    open(os.environ['JOBSUB_OUTPUT_DIR'] + f'/part{n:02d}.bin', 'wb').write(os.urandom(256 << 10))\n",
        "--max-cost",
        "0.08",
        extra_env={"JOBSUB_OUTPUT_MAX_BANDWIDTH": "256KiB"},  # 32 s of upload at this rate
    )
    status = _final(user, job_id)
    elapsed = time.monotonic() - started
    assert status["state"] == "FAILED" and status["exit_code"] == 0, status
    assert status["reason"].startswith("cost limit 0.08 CNY reached after "), status
    assert "while uploading outputs" in status["reason"], status
    assert elapsed < 28, f"stopped {elapsed:.1f}s after submit; the upload alone takes 32 s"


def test_a_job_under_its_limit_succeeds(user: Env, tmp_path: Path) -> None:
    set_prices(user, **FAST_PRICES)
    job_id = _submit(user, tmp_path, "print('fine')\n", "--max-cost", "5")
    status = _final(user, job_id)
    assert status["state"] == "SUCCEEDED", status


FLAVORED = {
    **FAST_PRICES,
    "flavors": {
        "cpu.small": {"price": 0.5, "cpus": 4, "memory": "16GiB"},
        "gpu.big": {"price": 30.0, "cpus": 32, "memory": "256GiB", "gpus": 8},
        "legacy": 1.25,
    },
}


def _dry_run(user: Env, tmp_path: Path, *sets: str):
    args = ["submit", "python-script", "--code", str(code_folder(tmp_path, "1\n")), "--dry-run", "--json"]
    for assignment in sets:
        args += ["--set", assignment]
    return user.run(*args)


@pytest.mark.parametrize(
    ("sets", "problem"),
    [
        (["resources.flavor=cpu.small", "resources.gpus=8"], "resources ask for gpus 8, more than flavor 'cpu.small'"),
        (["resources.flavor=cpu.small", "resources.cpus=16"], "cpus 16, more than flavor 'cpu.small' holds (4 CPUs"),
        (["resources.flavor=cpu.small", "resources.memory=64GiB"], "memory 64.0 GiB, more than flavor 'cpu.small'"),
        (
            ["resources.flavor=legacy", "resources.gpus=1"],
            "flavor 'legacy' in price table 'test' states only its price",
        ),
        (["resources.cpus=0"], "cpus: 0 would run without a CPU limit"),
    ],
)
def test_a_spec_asking_for_more_than_its_flavor_holds_is_refused(
    user: Env, tmp_path: Path, sets: list[str], problem: str
) -> None:
    set_prices(user, **FLAVORED)
    result = _dry_run(user, tmp_path, *sets)
    assert result.returncode == 2 and problem in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("sets", "rate"),
    [
        (["resources.flavor=cpu.small", "resources.cpus=4", "resources.memory=8GiB"], 0.5),
        (["resources.flavor=gpu.big", "resources.gpus=8"], 30.0),
        (["resources.flavor=legacy"], 1.25),
        (["resources.cpus=0.5"], 18.0),
    ],
)
def test_a_spec_that_fits_its_flavor_is_priced_as_the_flavor(
    user: Env, tmp_path: Path, sets: list[str], rate: float
) -> None:
    import json

    set_prices(user, **FLAVORED)
    result = _dry_run(user, tmp_path, *sets)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["estimate"]["rate_per_hour"] == pytest.approx(rate)


def test_cost_says_no_prices_set_by_the_prices_not_the_name(user: Env) -> None:
    set_prices(user, **{**FAST_PRICES, "table": "none"})
    text = user.run("cost", check=True).stdout
    assert "price table 'none'" in text and "no prices set" not in text
    set_prices(user, table="mine", currency="EUR")
    text = user.run("cost", check=True).stdout
    assert "price table 'mine'" in text and "no prices set" in text
