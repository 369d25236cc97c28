"""Nothing leaks (issue 17, the executor-independent part): which JOBSUB_* variables travel to a job, which
spec `env` names and values are refused at submit because they would store a secret in the job record.

All on the local store with `submit --dry-run` (the same checks as a real submit, nothing runs), plus the
LaunchRequest every executor receives, built by the real JobService."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Env, code_folder, make_env


@pytest.fixture
def user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    for key in ("JOBSUB_PROFILE", "JOBSUB_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    return make_env(tmp_path)


def _dry_run(user: Env, tmp_path: Path, *sets: str, extra_env: dict[str, str] | None = None):
    code = code_folder(tmp_path, "print('hi')\n")
    args = ["submit", "python-script", "--code", str(code), "--dry-run"]
    for assignment in sets:
        args += ["--set", assignment]
    return user.run(*args, extra_env=extra_env)


# -- 1. only documented JOBSUB_* tunables go to the runner --------------------------------------------------
def test_only_documented_runtime_knobs_reach_the_launch_request(
    user: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobsub.config import resolve_profile
    from jobsub.jobs.service import JobService
    from jobsub.jobs.spec import JobSpec
    from jobsub.runtime.launch_env import RUNTIME_TUNABLES
    from jobsub.storage import open_store

    user.apply()
    monkeypatch.setenv("JOBSUB_CANCEL_GRACE_SECONDS", "3")
    monkeypatch.setenv("JOBSUB_OUTPUT_SYNC_SECONDS", "7")
    monkeypatch.setenv("JOBSUB_DB_URL", "postgres://me:hunter22@db/prod")  # the user's own, not jobsub's
    monkeypatch.setenv("JOBSUB_PROFILE_JSON", '{"storage": "s3"}')
    monkeypatch.setenv("JOBSUB_TEST_SWITCH", "1")
    name, profile = resolve_profile()
    service = JobService(profile, open_store(profile), name)
    plan = service.plan(JobSpec(name="t", command="true"))
    env = dict(service.launch_request(plan).env)
    assert env == {"JOBSUB_CANCEL_GRACE_SECONDS": "3", "JOBSUB_OUTPUT_SYNC_SECONDS": "7"}
    assert set(env) <= set(RUNTIME_TUNABLES)


def test_every_documented_knob_is_in_the_readme() -> None:
    from jobsub.runtime.launch_env import RUNTIME_TUNABLES

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert [name for name in RUNTIME_TUNABLES if name not in readme] == []


# -- 2. secret names and values in spec env ------------------------------------------------------------------
@pytest.mark.parametrize(
    "name", ["GPG_PASSPHRASE", "BASIC_AUTH", "OAUTH_CLIENT", "HTTP_AUTHORIZATION", "SENTRY_DSN", "DB_PASSWORD"]
)
def test_common_secret_names_are_secret(name: str) -> None:
    from jobsub.redact import is_secret_env

    assert is_secret_env(name)


@pytest.mark.parametrize("name", ["AUTHOR", "AUTHORS_FILE", "TOKENIZERS_PARALLELISM", "KEYWORDS", "DSNX_MODE", "PATH"])
def test_ordinary_names_are_not_secret(name: str) -> None:
    from jobsub.redact import is_secret_env

    assert not is_secret_env(name)


def test_a_secret_looking_name_is_refused_at_submit(user: Env, tmp_path: Path) -> None:
    result = _dry_run(user, tmp_path, "env.SENTRY_DSN=https://abc@o1.ingest.sentry.io/2")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "SENTRY_DSN looks like a secret" in result.stderr and "--secret-env SENTRY_DSN" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "value",
    ["postgres://me:hunter22@db.internal:5432/prod", "https://x-access-token:ghp_abcdef@github.com/org/r.git"],
)
def test_a_url_with_a_password_is_refused_and_not_echoed(user: Env, tmp_path: Path, value: str) -> None:
    result = _dry_run(user, tmp_path, f"env.DATABASE_URL={value}")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "DATABASE_URL holds a URL with user:password@" in result.stderr
    assert "hunter22" not in result.stderr and "ghp_abcdef" not in result.stderr


def test_a_value_containing_my_credential_is_refused(user: Env, tmp_path: Path) -> None:
    secret = user.vars["AWS_SECRET_ACCESS_KEY"]
    for value in (secret, f"--aws-secret={secret}", f"Bearer {secret} trailing"):
        result = _dry_run(user, tmp_path, f"env.EXTRA_ARGS={value}")
        assert result.returncode == 2, (value, result.stdout, result.stderr)
        assert "env.EXTRA_ARGS holds one of your credentials" in result.stderr
        assert secret not in result.stderr + result.stdout


def test_ordinary_env_values_pass(user: Env, tmp_path: Path) -> None:
    """The happy side: URLs without a password, a user name alone, short words that happen to occur in a key."""
    sets = [
        "env.MIRROR=https://pypi.example.com/simple",
        "env.REPO=ssh://git@example.com/org/repo.git",
        "env.MODE=fast",
    ]
    result = _dry_run(user, tmp_path, *sets)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["dry_run"] is True and "fast" in result.stdout


def test_has_url_userinfo_and_holds_credential() -> None:
    from jobsub.redact import has_url_userinfo, holds_credential

    assert has_url_userinfo("redis://:pw@cache:6379/0")
    assert has_url_userinfo("run --db amqp://u:p@mq/")
    assert not has_url_userinfo("https://example.com/a:b@c")  # '@' after the path is not userinfo
    assert not has_url_userinfo("me@example.com")
    known = {"AKIAEXAMPLEKEY12", "abc1"}
    assert holds_credential("x=AKIAEXAMPLEKEY12;", known)
    assert holds_credential("abc1", known)  # equality counts for any length
    assert not holds_credential("xabc1x", known)  # a 4-character credential is not looked for inside words
    assert not holds_credential("", known)
