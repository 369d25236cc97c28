"""A job's start, fourth pass (issue 22 item 5): what the path from `submit` to the command's first line
shown does, not how long it takes (benchmarks/jobs.py measures the seconds; nothing here asserts one).

- `logs -f` lists the job's log chunks every FIRST_OUTPUT_POLL seconds while it waits for the command's
  first line, for a bounded window, while its status pass (which asks the executor) keeps the ordinary
  poll; once the command has printed, the listing is back to the ordinary poll. Hostile side: a job that
  never prints keeps no fast listing beyond the windows (requests stay bounded).
- the runtime writes STAGING (and starts a job without inputs) before it imports what it does not need
  for that (PyYAML, statistics, the transfer engine; platformdirs on S3; urllib.request, only for
  Ray/ModelArts secret tickets, on the local store), and with the garbage collector (off while it
  imports) on again. The imports moved into functions still work where they are needed (a spec file is
  still read and its errors still name the line; a duplicate key is still refused).

Real components: the local store or moto in server mode, the local executor, real runner processes. The
follow is run in this process on a store wrapper that only records when each listing and status read happened (the one
instrumentation; it changes nothing it forwards). What happens inside the runner is seen through a
sitecustomize module on its PYTHONPATH, as in tests/test_start_latency.py.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import statistics
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from jobsub.jobs.models import LogLine
from jobsub.storage.base import ObjectStore
from tests.conftest import Env, code_folder, make_env, poll, submit_script, use_env

#: modules the runtime must not have imported when it writes STAGING, by store: botocore itself imports
#: urllib.request, and a local-store profile without a root finds its folder through platformdirs
SLOW_BEFORE_STAGING = {
    "s3": ["yaml", "platformdirs", "statistics", "jobsub.transfer"],
    "local": ["yaml", "urllib.request", "statistics", "jobsub.transfer"],
}


class _Timed:
    """Forwards everything to the real store; notes when the job's log listing and status.json are read."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store
        self.listings: list[float] = []
        self.status_reads: list[float] = []

    def iter_objects(self, bucket: str, prefix: str, *args: Any, **kwargs: Any) -> Any:
        if prefix.endswith("/logs/"):
            self.listings.append(time.monotonic())
        return self._store.iter_objects(bucket, prefix, *args, **kwargs)

    def get(self, bucket: str, key: str, *args: Any, **kwargs: Any) -> Any:
        if key.endswith("/status.json"):
            self.status_reads.append(time.monotonic())
        return self._store.get(bucket, key, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _follow(
    env: Env, job_id: str, polls: list[float] | None = None, tail: int | None = None
) -> tuple[_Timed, list[tuple[float, LogLine]]]:
    """Follow the job to its end in this process; each line with the moment it was yielded (the final
    status as the last item's line, text "<STATE>"). `polls` gets the moments the executor was asked."""
    from jobsub.api import Client

    env.apply()
    client = Client()
    timed = _Timed(client.store)
    client._store = timed  # type: ignore[assignment]
    service = client.service
    if polls is not None:
        executor = service.executor
        original = executor.poll

        def poll_noted(handle: Any) -> Any:
            polls.append(time.monotonic())
            return original(handle)

        executor.poll = poll_noted  # type: ignore[method-assign]
    shown: list[tuple[float, LogLine]] = []
    for item in service.follow(job_id, tail=tail):
        if isinstance(item, LogLine):
            shown.append((time.monotonic(), item))
        else:
            shown.append((time.monotonic(), LogLine(stream="status", text=item.state.value)))
    return timed, shown


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


@pytest.fixture
def local_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    return use_env(monkeypatch, make_env(tmp_path, "local"))


def test_follow_lists_fast_until_the_first_line_then_at_the_ordinary_poll(local_env: Env, tmp_path: Path) -> None:
    from jobsub.jobs import service

    code = code_folder(
        tmp_path,
        "import time\ntime.sleep(1.5)\nprint('first', flush=True)\ntime.sleep(2.5)\nprint('last', flush=True)\n",
    )
    job_id = submit_script(local_env, code)
    timed, shown = _follow(local_env, job_id)
    texts = [line.text for _, line in shown]
    assert "first" in texts and "last" in texts and texts.count("first") == 1
    first_at = next(at for at, line in shown if line.text == "first")
    before = [t for t in timed.listings if t < first_at]
    after = [t for t in timed.listings if first_at < t < first_at + 2.0]
    assert len(before) >= 5, f"only {len(before)} listings while the first line was awaited"
    assert statistics.median(_gaps(before)) < 0.2, _gaps(before)  # FIRST_OUTPUT_POLL, not the 0.3 s poll
    assert statistics.median(_gaps(after)) >= 0.25, _gaps(after)  # back to the ordinary poll
    # the status pass (status.json, then the executor) keeps the ordinary poll while the listing is fast
    status_before = [t for t in timed.status_reads if t < first_at][1:]  # [0]: the follow's opening check
    assert min(_gaps(status_before)) >= 0.25 * 0.95, _gaps(status_before)
    assert service.FIRST_OUTPUT_POLL < 0.3


def test_a_job_that_never_prints_keeps_no_fast_listing_past_the_windows(
    local_env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hostile: a silent job (a long training step before its first line) must not keep `logs -f` listing
    ten times a second: after the window (from the follow's start, and again from the runner's start)
    the listing is back to the ordinary poll, so the requests per minute stay what they were."""
    from jobsub.jobs import service

    monkeypatch.setattr(service, "FIRST_OUTPUT_WINDOW", 0.6)
    code = code_folder(tmp_path, "import time\ntime.sleep(4)\n")
    job_id = submit_script(local_env, code)
    started = time.monotonic()
    timed, shown = _follow(local_env, job_id)
    assert not [line for _, line in shown if line.stream not in ("jobsub", "status")]
    late = [t for t in timed.listings if t > started + 2.5]  # both windows are over by then
    assert len(late) >= 3, "the follow ended before the silent part was over"
    assert statistics.median(_gaps(late)) >= 0.25, _gaps(late)
    # at most two windows of fast listings plus the ordinary poll for the rest
    span = timed.listings[-1] - started
    bound = 2 * 0.6 / service.FIRST_OUTPUT_POLL + span / 0.3 + 5
    assert len(timed.listings) <= bound, (len(timed.listings), bound)


def test_a_follow_that_starts_after_the_first_line_lists_at_the_ordinary_poll(local_env: Env, tmp_path: Path) -> None:
    """`logs -f --tail N` on a job that has printed already: its output is there, so no fast listing."""
    code = code_folder(tmp_path, "import time\nprint('early', flush=True)\ntime.sleep(3)\nprint('late', flush=True)\n")
    job_id = submit_script(local_env, code)
    poll(lambda: "early" in local_env.run("logs", job_id).stdout, 60, 0.2, "the first line")
    timed, shown = _follow(local_env, job_id, tail=5)
    late_at = next(at for at, line in shown if line.text == "late")
    before = [t for t in timed.listings if t < late_at]
    assert len(before) >= 3 and statistics.median(_gaps(before)) >= 0.25, _gaps(before)


def test_the_first_line_is_not_held_by_the_jobsub_lines_before_it(local_env: Env, tmp_path: Path) -> None:
    """The runner's own lines ("code ... verified", "running: ...") arrive before the command's first line:
    they must not end the fast listing (the command's line is what the user waits for)."""
    code = code_folder(tmp_path, "import time\ntime.sleep(1.5)\nprint('program', flush=True)\n")
    job_id = submit_script(local_env, code)
    timed, shown = _follow(local_env, job_id)
    jobsub_at = next(at for at, line in shown if line.stream == "jobsub")
    program_at = next(at for at, line in shown if line.text == "program")
    between = [t for t in timed.listings if jobsub_at < t < program_at]
    assert len(between) >= 4 and statistics.median(_gaps(between)) < 0.2, _gaps(between)


def test_follow_asks_the_executor_after_its_first_second_and_still_sees_a_dead_runner(
    local_env: Env, tmp_path: Path
) -> None:
    """The follower started by `submit` leaves the executor (docker's SDK and inspect: CPU on the cores the
    runner starts on) alone for EXECUTOR_POLL_DELAY; hostile side: a runner killed before its command
    printed anything is still reported (LOST) by that follow, once the executor is asked."""
    from jobsub.jobs import service

    code = code_folder(tmp_path, "import time\ntime.sleep(600)\n")
    job_id = submit_script(local_env, code)
    status = poll(
        lambda: (s := local_env.run_json("status", job_id)["status"]).get("executor", {}).get("pgid") and s, 60, 0.1
    )
    runner_pid, command_group = status["executor"]["pid"], status["executor"]["pgid"]
    try:
        os.kill(runner_pid, signal.SIGKILL)
        polls: list[float] = []
        started = time.monotonic()
        _, shown = _follow(local_env, job_id, polls)
        assert shown[-1][1].text == "LOST"
        assert polls and polls[0] >= started + service.EXECUTOR_POLL_DELAY * 0.95, (polls[:1], started)
    finally:
        try:
            os.killpg(command_group, signal.SIGKILL)  # the runner's watchdog does this; a test leaves nothing
        except ProcessLookupError:
            pass


_PROBE = textwrap.dedent(
    '''
    """Test probe (tests/test_start_fast.py): which modules the runtime holds when it writes a status."""
    import gc, importlib.abc, importlib.util, json, os, sys

    _OUT = os.environ.get("JOBSUB_TEST_PROBE_FILE")
    _WATCH = json.loads(os.environ.get("JOBSUB_TEST_PROBE_WATCH", "[]"))

    def _patch_records(module):
        original = module.JobRecord.write_status
        def write_status(self, status):
            with open(_OUT, "a") as handle:
                loaded = [name for name in _WATCH if name in sys.modules]
                handle.write(json.dumps({"argv": " ".join(sys.argv), "state": status.state.value,
                                         "loaded": loaded, "gc": gc.isenabled()}) + "\\n")
            return original(self, status)
        module.JobRecord.write_status = write_status

    class _Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "jobsub.jobs.records":
                return None
            sys.meta_path.remove(self)
            try:
                spec = importlib.util.find_spec(name)
            finally:
                sys.meta_path.insert(0, self)
            original_exec = spec.loader.exec_module
            def exec_module(module):
                original_exec(module)
                _patch_records(module)
            spec.loader.exec_module = exec_module
            return spec

    if _OUT:
        sys.meta_path.insert(0, _Finder())
    '''
)


@pytest.mark.parametrize("kind", ["s3", "local"])
def test_runtime_writes_staging_before_the_imports_it_does_not_need(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, kind: str
) -> None:
    moto = request.getfixturevalue("moto_url") if kind == "s3" else None
    env = use_env(monkeypatch, make_env(tmp_path, kind, moto=moto))
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    (probe_dir / "sitecustomize.py").write_text(_PROBE)
    events = tmp_path / "events.jsonl"
    env.vars["PYTHONPATH"] = f"{probe_dir}:{env.vars['PYTHONPATH']}"
    env.vars["JOBSUB_TEST_PROBE_FILE"] = str(events)
    env.vars["JOBSUB_TEST_PROBE_WATCH"] = json.dumps(SLOW_BEFORE_STAGING[kind])
    code = code_folder(tmp_path, "print('ran', flush=True)\n")
    job_id = submit_script(env, code)
    final = poll(
        lambda: (s := env.run_json("status", job_id)["status"])["state"] in ("SUCCEEDED", "FAILED", "LOST") and s,
        120,
        0.3,
        f"job {job_id} to end",
    )
    assert final["state"] == "SUCCEEDED"
    seen = [json.loads(line) for line in events.read_text().splitlines()]
    staging = next(e for e in seen if "--work-dir" in e["argv"] and e["state"] == "STAGING")
    assert staging["loaded"] == [], f"the runtime imported {staging['loaded']} before writing STAGING"
    # the collector, off for the start-up's imports, is on again before the record is acted on
    assert all(e["gc"] for e in seen if "--work-dir" in e["argv"]), seen
    assert "ran" in env.run("logs", job_id, check=True).stdout


def test_spec_files_still_parse_and_name_the_line_after_the_lazy_yaml_import(tmp_path: Path) -> None:
    """PyYAML is imported where a spec is read now: a good spec loads, a duplicate key and bad YAML are
    still one line naming the file and line, and a spec nested too deep is still refused before the load."""
    from jobsub.errors import SpecError
    from jobsub.jobs.spec import load_spec

    good = tmp_path / "good.yaml"
    good.write_text("name: ok\ncommand: echo hi\n")
    assert load_spec(good).command == "echo hi"
    twice = tmp_path / "twice.yaml"
    twice.write_text("name: a\ncommand: echo hi\nname: b\n")
    with pytest.raises(SpecError, match=r"key 'name' is given twice \(lines 1 and 3\)"):
        load_spec(twice)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: a\ncommand: [echo\n")
    with pytest.raises(SpecError, match=r"bad\.yaml:\d+: not valid YAML"):
        load_spec(bad)
    deep = tmp_path / "deep.yaml"
    deep.write_text("name: a\ncommand: echo\nparams: " + "[" * 200 + "]" * 200 + "\n")
    with pytest.raises(SpecError, match="nested"):
        load_spec(deep)
