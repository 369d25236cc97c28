"""Shared pieces of the web view's tests: a real `jobsub ui` process on loopback and jobs made for it."""

from __future__ import annotations

import json
import re
import select
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import Env, code_folder, poll

URL_RE = re.compile(r"(http://\S+)")

#: a job that prints numbered lines, metric rows and a hostile line, and writes results like train_entry's
JOB_BODY = """\
import json, os, sys, time
n = int(os.environ.get("JOBSUB_PARAM_LINES", "{lines}"))
delay = float(os.environ.get("JOBSUB_PARAM_DELAY", "{delay}"))
gate = os.environ.get("JOBSUB_PARAM_GATE", "")
metrics = open(os.environ["JOBSUB_METRICS_FILE"], "a")
for i in range(n):
    if gate and i == n // 2:  # half way: wait until the test has seen the first half (whatever the load)
        deadline = time.time() + 300
        while not os.path.exists(gate) and time.time() < deadline:
            time.sleep(0.1)
    print(f"line {{i}}", flush=True)
    metrics.write(json.dumps({{"step": i, "loss": 1.0 / (i + 1), "eval_accuracy": 0.5 + i / (4 * n)}}) + "\\n")
    metrics.flush()
    time.sleep(delay)
print("<img src=x onerror=alert(1)><script>window.__xss = 1</script>", flush=True)
out = os.environ["JOBSUB_OUTPUT_DIR"]
per_class = {{"news_a": {{"precision": 0.9, "recall": 0.8, "f1": 0.85, "support": 10}},
             "<b>bold</b>": {{"precision": 0.5, "recall": 0.6, "f1": 0.55, "support": 5}}}}
json.dump({{"accuracy": 0.75, "macro_f1": 0.7, "per_class": per_class}}, open(os.path.join(out, "metrics.json"), "w"))
json.dump({{"labels": ["news_a", "<b>bold</b>"], "matrix": [[8, 2], [2, 3]]}},
          open(os.path.join(out, "confusion_matrix.json"), "w"))
open(os.path.join(out, "model.bin"), "wb").write(b"weights" * 100)
"""

SPEC = """\
name: {name}
command: python -m jobsub.runtime.pyscript "$JOBSUB_PARAM_SCRIPT" "$JOBSUB_PARAM_ARGS"
params:
  script: main.py
  args: ""
  lines: {lines}
  delay: {delay}
  gate: "{gate}"
headline:
  metric: eval_accuracy
  goal: max
timeout: 10m
"""


def submit_job(
    env: Env, tmp_path: Path, name: str = "webjob", lines: int = 5, delay: float = 0.0, gate: Path | None = None
) -> str:
    """Submit the job above (with a headline metric); its id. With `gate`, the job stops half way until that
    file exists, so a test sees it running however slow the machine is."""
    folder = tmp_path / f"job-{name}-{time.monotonic_ns()}"
    folder.mkdir()
    code = code_folder(folder, JOB_BODY.format(lines=lines, delay=delay))
    spec = folder / "job.yaml"
    spec.write_text(SPEC.format(name=name, lines=lines, delay=delay, gate=gate or ""))
    result = env.run("submit", "-f", str(spec), "--code", str(code), "--json")
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["job_id"])


def wait_final(env: Env, job_id: str, deadline_s: float = 120) -> dict:
    def final() -> dict | None:
        status = env.run_json("status", job_id)["status"]
        return status if status["state"] in ("SUCCEEDED", "FAILED", "CANCELLED", "LOST") else None

    return poll(final, deadline_s, 0.3, f"job {job_id} to finish")


@contextmanager
def ui_server(env: Env, *args: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """`jobsub ui ARGS` as the user runs it; the URL it printed (with its token, if any). Stopped by pid."""
    proc = env.popen("ui", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        url = None
        assert proc.stdout is not None
        while url is None and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                line = proc.stdout.readline()
                if not line:
                    break
                match = URL_RE.search(line)
                url = match.group(1) if match else None
        if url is None:
            proc.kill()
            raise AssertionError(f"jobsub ui printed no URL: {proc.stderr.read() if proc.stderr else ''}")
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def base(url: str) -> str:
    """The server's root without the token query."""
    return url.split("?", 1)[0].rstrip("/")
