"""One answer to "is this retryable": the class attribute, as errors.py's tree documents it, is what the
transfer retries; 403 and 404 injected by the fault proxy fail at once, 5xx and resets are ridden over."""

from __future__ import annotations

import inspect
import re
import subprocess
import time
from pathlib import Path

import pytest

import jobsub.errors as errors
from jobsub.transfer.common import TransferOptions, with_retries
from tests.conftest import Env, _isolated_env, _server, write_random
from tests.faultproxy import FaultProxy, Rule

MiB = 1 << 20
PART = r"[?&]partNumber="


def _documented() -> dict[str, bool]:
    """Class name -> retried, from the [retried] / [final] marks in errors.py's tree (unmarked: inherited)."""
    marks: dict[str, bool] = {}
    for line in (errors.__doc__ or "").splitlines():
        match = re.search(r"([A-Z]\w+)\b.*\[(retried|final)\]\s*$", line)
        if match:
            marks[match.group(1)] = match.group(2) == "retried"
    return marks


def _classes() -> list[type[errors.JobsubError]]:
    return [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.JobsubError)]


def test_the_tree_documents_every_retry_answer_the_classes_give() -> None:
    marks = _documented()
    assert {"StorageError", "CredentialsError", "EndpointTimeoutError", "SourceChangedError"} <= set(marks)
    for cls in _classes():
        documented = next(marks[c.__name__] for c in cls.__mro__ if c.__name__ in marks)
        assert cls.retryable is documented, f"{cls.__name__}: the tree says retried={documented}"
    assert errors.EndpointError.retryable and not errors.EndpointTimeoutError.retryable  # no longer both
    assert "transient" not in vars(errors.JobsubError), "a second answer came back"


@pytest.mark.parametrize("cls", _classes(), ids=lambda c: c.__name__)
def test_with_retries_attempts_what_the_class_says(cls: type[errors.JobsubError]) -> None:
    attempts = []
    options = TransferOptions(part_attempts=3, retry_backoff=0)

    def action(progress) -> None:
        attempts.append(1)
        progress(10)
        raise cls("injected")

    moved: list[int] = []
    with pytest.raises(cls):
        with_retries(action, moved.append, options, lambda: False)
    assert len(attempts) == (3 if cls.retryable else 1)
    assert sum(moved) == 0, "a failed attempt's progress was not rewound"


def test_retry_backoff_comes_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("JOBSUB_RETRY_BACKOFF", "0")
    assert TransferOptions().retry_backoff == 0.0
    monkeypatch.delenv("JOBSUB_RETRY_BACKOFF")
    assert TransferOptions().retry_backoff == 0.5
    for bad in ("soon", "-1", "nan", "1e9"):
        monkeypatch.setenv("JOBSUB_RETRY_BACKOFF", bad)
        with pytest.raises(errors.UsageError, match="JOBSUB_RETRY_BACKOFF"):
            TransferOptions()


def test_a_bad_retry_backoff_is_one_line_exit_2(moto_server, tmp_path: Path, monkeypatch) -> None:
    env = _isolated_env(tmp_path, monkeypatch, "s3", moto_server)
    src = write_random(tmp_path / "f.bin", 1000, seed=1)
    result = env.run("upload", str(src), env.uri("f.bin"), extra_env={"JOBSUB_RETRY_BACKOFF": "soon"})
    assert result.returncode == 2 and "JOBSUB_RETRY_BACKOFF" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def motoenv(request, tmp_path: Path, monkeypatch) -> Env:
    return _isolated_env(tmp_path, monkeypatch, "s3", _server(request, "moto"))


def _upload_through(
    proxy: FaultProxy, env: Env, src: Path, *flags: str, backoff: str = "0", **extra_env: str
) -> subprocess.CompletedProcess[str]:
    """`jobsub upload SRC s3://.../f.bin --part-size 5MiB FLAGS` with every request through the fault proxy
    (closed afterwards), the retry backoff set to ``backoff`` seconds, and ``extra_env``."""
    try:
        return env.run(
            "upload",
            str(src),
            env.uri("f.bin"),
            "--part-size",
            "5MiB",
            *flags,
            extra_env={"JOBSUB_ENDPOINT_URL": proxy.url, "JOBSUB_RETRY_BACKOFF": backoff, **extra_env},
        )
    finally:
        proxy.close()


@pytest.mark.parametrize(("action", "says"), [("403", "rejected the credentials"), ("404", "no longer exists")])
def test_403_and_404_on_a_part_are_final(motoenv: Env, tmp_path: Path, action: str, says: str) -> None:
    env = motoenv
    src = write_random(tmp_path / "f.bin", 15 * MiB, seed=21)
    proxy = FaultProxy(env.endpoint or "", [Rule("PUT", PART + r"2(&|$)", action)])
    started = time.monotonic()
    result = _upload_through(proxy, env, src, backoff="2")
    assert result.returncode == 1 and says in result.stderr and "Traceback" not in result.stderr
    assert proxy.rules[0].seen == 1, f"a final {action} was sent again ({proxy.rules[0].seen} times)"
    assert time.monotonic() - started < 30, "a final error waited out the retry backoff"
    assert env.store().head(env.bucket, "f.bin") is None


def test_5xx_and_resets_are_retried(motoenv: Env, tmp_path: Path) -> None:
    env = motoenv
    src = write_random(tmp_path / "f.bin", 15 * MiB, seed=22)
    rules = [Rule("PUT", PART + r"1(&|$)", "503", {1, 2}), Rule("PUT", PART + r"3(&|$)", "reset", {1})]
    proxy = FaultProxy(env.endpoint or "", rules)
    result = _upload_through(proxy, env, src, "-q")
    assert result.returncode == 0, result.stderr
    assert proxy.rules[0].seen == 3 and proxy.rules[0].hits == 2
    assert proxy.rules[1].seen == 2 and proxy.rules[1].hits == 1
    out = tmp_path / "out.bin"
    env.run("download", env.uri("f.bin"), str(out), "-q", check=True)
    assert out.read_bytes() == src.read_bytes()


@pytest.mark.parametrize("attempts", [1, 2])
def test_aws_max_attempts_sets_botocore_s_attempts_per_request(motoenv: Env, tmp_path: Path, attempts: int) -> None:
    """AWS_MAX_ATTEMPTS, as the AWS CLI reads it: a part that always answers 500 is sent that many times per
    jobsub part attempt (4), no more (before, botocore's 5 were fixed whatever the environment said)."""
    env = motoenv
    src = write_random(tmp_path / "f.bin", 10 * MiB, seed=23)
    proxy = FaultProxy(env.endpoint or "", [Rule("PUT", PART + r"2(&|$)", "500")])
    result = _upload_through(proxy, env, src, AWS_MAX_ATTEMPTS=str(attempts))
    assert result.returncode == 1 and "InternalError" in result.stderr and "Traceback" not in result.stderr
    assert proxy.rules[0].seen == 4 * attempts
    assert env.store().head(env.bucket, "f.bin") is None


@pytest.mark.parametrize("bad", ["0", "many", "21"])
def test_a_bad_aws_max_attempts_is_one_line_exit_2(motoenv: Env, tmp_path: Path, bad: str) -> None:
    env = motoenv
    src = write_random(tmp_path / "f.bin", 1000, seed=1)
    result = env.run("upload", str(src), env.uri("f.bin"), extra_env={"AWS_MAX_ATTEMPTS": bad})
    assert result.returncode == 2 and "AWS_MAX_ATTEMPTS" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
