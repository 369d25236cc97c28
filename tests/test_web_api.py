"""The web view's JSON API and its safety rules, against a real `jobsub ui` process and real jobs.

Local store and moto S3 for everything; Ceph once (under the heavy lock: `pytest -k ceph`).
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import requests

from tests.conftest import KEY_ID, SECRET, Env
from tests.web_helpers import base, submit_job, ui_server, wait_final

STATES = ["QUEUED", "STAGING", "RUNNING", "UPLOADING", "SUCCEEDED"]


@pytest.fixture(params=["local", "moto"])
def webenv(request, tmp_path: Path, monkeypatch) -> Env:
    """A jobsub user on the local store, then on moto."""
    from tests.conftest import _isolated_env, _server

    if request.param == "local":
        return _isolated_env(tmp_path, monkeypatch, "local", None)
    return _isolated_env(tmp_path, monkeypatch, "s3", _server(request, "moto"))


@pytest.fixture
def localenv(tmp_path: Path, monkeypatch) -> Env:
    """A jobsub user on the local store, for what does not depend on the store (CI time: no moto twin)."""
    from tests.conftest import _isolated_env

    return _isolated_env(tmp_path, monkeypatch, "local", None)


def _check_finished_job(root: str, job_id: str) -> None:
    """What a user sees of a finished job through the API: list row, timeline, log, curves, results, outputs."""
    page = requests.get(f"{root}/api/jobs", timeout=30).json()
    row = next(r for r in page["jobs"] if r["id"] == job_id)
    assert row["state"] == "SUCCEEDED" and row["executor"] == "local"
    assert row["headline"] == {"metric": "eval_accuracy", "goal": "max", "best": 0.7, "step": 4}

    job = requests.get(f"{root}/api/jobs/{job_id}", timeout=30).json()
    assert [t["state"] for t in job["status"]["transitions"]] == STATES
    assert job["params"]["lines"] == 5 and job["cost"]["table"]

    tail = requests.get(f"{root}/api/jobs/{job_id}/log", params={"tail": 3}, timeout=30).json()
    whole = requests.get(f"{root}/api/jobs/{job_id}/log", timeout=30).json()
    assert len(tail["lines"]) == 3 and tail["lines"] == whole["lines"][-3:]
    program = [line["l"] for line in whole["lines"] if line["l"].startswith("line ")]
    assert program == [f"line {i}" for i in range(5)]
    text = requests.get(f"{root}/api/jobs/{job_id}/log.txt", timeout=30)
    assert "attachment" in text.headers["content-disposition"] and "line 4\n" in text.text
    found = [
        json.loads(x)
        for x in requests.get(f"{root}/api/jobs/{job_id}/log/search?q=LINE 3", timeout=30).text.splitlines()
    ]
    assert found and found[0]["l"] == "line 3"

    metrics = requests.get(f"{root}/api/jobs/{job_id}/metrics", timeout=30).json()
    assert [r["step"] for r in metrics["rows"]] == list(range(5))
    assert requests.get(f"{root}/api/jobs/{job_id}/metrics?after=3", timeout=30).json()["rows"][0]["step"] == 3

    results = requests.get(f"{root}/api/jobs/{job_id}/results", timeout=30).json()
    assert results["metrics"]["accuracy"] == 0.75
    assert results["per_class"]["<b>bold</b>"]["support"] == 5
    assert results["confusion_matrix"] == {"labels": ["news_a", "<b>bold</b>"], "matrix": [[8, 2], [2, 3]]}
    sizes = {f["path"]: f["size"] for f in results["files"]}
    assert sizes["model.bin"] == 700
    model = requests.get(f"{root}/api/jobs/{job_id}/outputs/model.bin", timeout=30)
    assert model.content == b"weights" * 100
    assert model.headers["content-type"] == "application/octet-stream"
    assert model.headers["content-disposition"] == 'attachment; filename="model.bin"'


def test_api_shows_a_finished_job_whole(webenv: Env, tmp_path: Path) -> None:
    job_id = submit_job(webenv, tmp_path)
    assert wait_final(webenv, job_id)["state"] == "SUCCEEDED"
    with ui_server(webenv) as (url, _):
        _check_finished_job(base(url), job_id)


def test_api_on_ceph(cephenv: Env, tmp_path: Path) -> None:
    job_id = submit_job(cephenv, tmp_path)
    assert wait_final(cephenv, job_id)["state"] == "SUCCEEDED"
    with ui_server(cephenv) as (url, _):
        _check_finished_job(base(url), job_id)


def test_downloads_are_limited_to_the_jobs_own_outputs(webenv: Env, tmp_path: Path) -> None:
    job_id = submit_job(webenv, tmp_path, lines=1)
    wait_final(webenv, job_id)
    with ui_server(webenv) as (url, _):
        root = base(url)
        for path in ("..%2Fjob.json", "%2E%2E/status.json", "a/../../job.json", "missing.bin", "%2Fetc%2Fpasswd"):
            answer = requests.get(f"{root}/api/jobs/{job_id}/outputs/{path}", timeout=30)
            assert answer.status_code in (400, 404), (path, answer.status_code)
            assert "status.json" not in answer.text or "not an output" in answer.text
            assert '"state"' not in answer.text  # no record's content came back
        # an output is never served as a page, whatever its name says
        shown = requests.get(f"{root}/api/jobs/{job_id}/outputs/model.bin?inline=1", timeout=30)
        assert shown.headers["content-type"] == "application/octet-stream"


def test_bad_requests_get_one_clear_line(localenv: Env) -> None:
    with ui_server(localenv) as (url, _):
        root = base(url)
        unknown = requests.get(f"{root}/api/jobs/nope-20260101-000000-abcd", timeout=30)
        assert unknown.status_code == 404 and "no job" in unknown.json()["error"]
        bad_sort = requests.get(f"{root}/api/jobs?sort=__class__", timeout=30)
        assert bad_sort.status_code == 400 and bad_sort.json()["error"].startswith("sort must be one of")
        assert requests.get(f"{root}/api/jobs?limit=ten", timeout=30).status_code == 400
        assert requests.get(f"{root}/api/jobs/..%2F..%2Fx", timeout=30).status_code == 404
        assert requests.get(f"{root}/api/jobs", timeout=30).json() == {"total": 0, "offset": 0, "limit": 50, "jobs": []}


def test_every_answer_forbids_inline_script_and_hides_credentials(tmp_path: Path, monkeypatch, request) -> None:
    from tests.conftest import _isolated_env, _server

    env = _isolated_env(tmp_path, monkeypatch, "s3", _server(request, "moto"))
    job_id = submit_job(env, tmp_path, lines=2)
    wait_final(env, job_id)
    # a record another tool wrote, holding the credentials and an endpoint with userinfo: never shown as is
    from jobsub.config import resolve_profile
    from jobsub.jobs.models import LogLine
    from jobsub.jobs.records import JobRecord
    from jobsub.uri import ObjectURI

    record = JobRecord(env.store(), ObjectURI.parse(resolve_profile()[1].jobs_uri), job_id)
    leak = f"key {KEY_ID} secret {SECRET} endpoint http://admin:hunter22@10.0.0.1:9000/"
    record.write_chunk(99_999, [LogLine(time=1.0, stream="out", text=leak)], "intruder")
    with ui_server(env) as (url, _):
        root = base(url)
        shown = requests.get(f"{root}/api/jobs/{job_id}/log?tail=1", timeout=60).json()["lines"][0]["l"]
        assert shown == "key ...1234 secret *** endpoint http://***@10.0.0.1:9000/"
        paths = [
            "/",
            f"/job/{job_id}",
            "/compare",
            "/storage",
            "/api/jobs",
            f"/api/jobs/{job_id}",
            f"/api/jobs/{job_id}/status",
            f"/api/jobs/{job_id}/log?tail=100",
            f"/api/jobs/{job_id}/log.txt",
            f"/api/jobs/{job_id}/log/stream?tail=100",
            f"/api/jobs/{job_id}/metrics",
            f"/api/jobs/{job_id}/metrics/stream",
            f"/api/jobs/{job_id}/results",
            f"/api/compare?ids={job_id},{job_id}",
            "/api/storage",
            "/static/job.js",
        ]
        for path in paths:
            answer = requests.get(root + path, timeout=60)
            assert answer.status_code == 200, (path, answer.text)
            assert SECRET not in answer.text and KEY_ID not in answer.text and "hunter22" not in answer.text, path
            policy = answer.headers["content-security-policy"]
            assert "script-src 'self'" in policy and "unsafe-inline" not in policy, path
            assert answer.headers["x-content-type-options"] == "nosniff"
        for page in ("jobs", "job", "compare", "storage"):
            html = requests.get(f"{root}/static/{page}.html", timeout=30).text
            assert "<script>" not in html and "onclick" not in html  # every script is a file the CSP allows


def test_a_non_loopback_host_requires_the_printed_token(localenv: Env) -> None:
    with ui_server(localenv, "--host", "0.0.0.0") as (url, _):
        assert "?token=" in url
        port = url.split(":")[2].split("/")[0]
        root = f"http://127.0.0.1:{port}"
        token = url.split("?token=")[1]
        for path in ("/", "/api/jobs", "/static/common.js", "/api/storage"):
            refused = requests.get(root + path, timeout=30, allow_redirects=False)
            assert refused.status_code == 403, path
        assert requests.get(f"{root}/api/jobs?token=wrong", timeout=30).status_code == 403
        assert (
            requests.get(f"{root}/api/jobs", headers={"Cookie": "jobsub_ui_token=wrong"}, timeout=30).status_code == 403
        )
        entered = requests.get(f"{root}/?token={token}", timeout=30, allow_redirects=False)
        assert entered.status_code == 303 and entered.headers["location"] == "/"  # the token leaves the address bar
        assert "HttpOnly" in entered.headers["set-cookie"] and "SameSite=Strict" in entered.headers["set-cookie"]
        session = requests.Session()
        assert session.get(f"{root}/?token={token}", timeout=30).status_code == 200  # the cookie carries on
        assert session.get(f"{root}/api/jobs", timeout=30).status_code == 200
        bearer = requests.get(f"{root}/api/jobs", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert bearer.status_code == 200


def test_a_loopback_server_answers_only_to_its_own_address(localenv: Env) -> None:
    with ui_server(localenv) as (url, _):
        assert "token" not in url and url.startswith("http://127.0.0.1:")
        root = base(url)
        assert requests.get(root + "/api/jobs", timeout=30).status_code == 200
        rebound = requests.get(root + "/api/jobs", headers={"Host": "attacker.example:80"}, timeout=30)
        assert rebound.status_code == 403  # a DNS-rebinding page cannot read the jobs


def test_ui_on_a_taken_port_says_so_and_exits_2(localenv: Env) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        result = localenv.run("ui", "--port", str(taken.getsockname()[1]), timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: cannot listen on 127.0.0.1:") and "Traceback" not in result.stderr


def test_a_status_record_without_transitions_still_renders(localenv: Env, tmp_path: Path) -> None:
    job_id = submit_job(localenv, tmp_path, lines=1)
    wait_final(localenv, job_id)
    from jobsub.config import resolve_profile
    from jobsub.jobs.records import JobRecord
    from jobsub.uri import ObjectURI

    store = localenv.store()
    record = JobRecord(store, ObjectURI.parse(resolve_profile()[1].jobs_uri), job_id)
    old = record.get_json("status.json")
    del old["transitions"]
    record.put_json("status.json", old)
    with ui_server(localenv) as (url, _):
        status = requests.get(f"{base(url)}/api/jobs/{job_id}/status", timeout=30).json()
    assert status["state"] == "SUCCEEDED" and status["transitions"] == []


def test_the_package_ships_every_static_file_and_the_chart_licence() -> None:
    """pyproject's package-data for jobsub.web is `static/*`: the folder stays flat, so every file ships (no
    CDN, no build step: the page works offline), uPlot with its MIT licence."""
    import sys

    from tests.conftest import REPO

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "jobsub.web" in config["packages"] and config["package-data"]["jobsub.web"] == ["static/*"]
    static = REPO / "jobsub" / "web" / "static"
    assert not [p for p in static.iterdir() if p.is_dir()]
    assert {"uPlot.iife.min.js", "uPlot.min.css", "uPlot.LICENSE", "job.html", "job.js"} <= {
        p.name for p in static.iterdir()
    }
    assert "MIT" in (static / "uPlot.LICENSE").read_text()
    for page in static.glob("*.html"):
        assert "http" not in page.read_text(), page  # nothing fetched from elsewhere


def test_a_broken_record_in_the_bucket_does_not_break_the_list(webenv: Env, tmp_path: Path) -> None:
    """Records are data from others: a status that is not JSON, a job.json that is a list, a huge metrics
    file. The list still answers, with the good job and whatever of the others could be read."""
    good = submit_job(webenv, tmp_path, lines=1)
    wait_final(webenv, good)
    from jobsub.config import resolve_profile
    from jobsub.uri import ObjectURI

    store = webenv.store()
    jobs = ObjectURI.parse(resolve_profile()[1].jobs_uri).as_prefix()
    bad = "broken-20200101-000000-beef"
    store.put(jobs.bucket, f"{jobs.key}{bad}/status.json", b"{not json")
    odd = "odd-20200101-000001-cafe"
    store.put(jobs.bucket, f"{jobs.key}{odd}/status.json", b'{"state": "SUCCEEDED"}')
    store.put(jobs.bucket, f"{jobs.key}{odd}/job.json", b"[1, 2, 3]")
    with ui_server(webenv) as (url, _):
        page = requests.get(f"{base(url)}/api/jobs?sort=state", timeout=60)
        assert page.status_code == 200
        rows = {r["id"]: r for r in page.json()["jobs"]}
        assert rows[good]["state"] == "SUCCEEDED" and rows[odd]["state"] == "SUCCEEDED" and bad not in rows
        assert rows[odd]["cost"] is None and rows[odd]["headline"] is None
        assert requests.get(f"{base(url)}/api/jobs/{odd}", timeout=60).status_code == 404


def test_streams_resume_at_the_cursor_and_refuse_a_foreign_one(webenv: Env, tmp_path: Path) -> None:
    """A page that reconnects (Last-Event-ID) gets the lines after its last whole chunk, none twice; a cursor
    naming another job's chunk is refused; metric rows with NaN/inf still make JSON a browser parses."""
    job_id = submit_job(webenv, tmp_path, lines=3)
    other = submit_job(webenv, tmp_path, lines=1)
    wait_final(webenv, job_id)
    wait_final(webenv, other)
    from jobsub.config import resolve_profile
    from jobsub.jobs.models import LogLine
    from jobsub.jobs.records import JobRecord
    from jobsub.uri import ObjectURI

    record = JobRecord(webenv.store(), ObjectURI.parse(resolve_profile()[1].jobs_uri), job_id)
    record.store.put(
        record.bucket, record.key("metrics.jsonl"), b'{"step": 1, "loss": NaN}\n{"step": 2, "loss": Infinity}\n'
    )
    for number in (90_000, 90_001):  # more chunks than one, however fast the job shipped its lines
        record.write_chunk(number, [LogLine(time=1.0, stream="out", text=f"extra {number}")], "extra")
    with ui_server(webenv) as (url, _):
        root = base(url)
        whole = requests.get(f"{root}/api/jobs/{job_id}/log", params={"max_chunks": 1}, timeout=60).json()
        assert whole["more"] and whole["lines"]
        first_cursor = whole["cursor"]
        rest = requests.get(f"{root}/api/jobs/{job_id}/log", params={"after": first_cursor}, timeout=60).json()
        everything = requests.get(f"{root}/api/jobs/{job_id}/log", params={"max_chunks": 200}, timeout=60).json()
        assert whole["lines"] + rest["lines"] == everything["lines"]
        with requests.get(
            f"{root}/api/jobs/{job_id}/log/stream", headers={"Last-Event-ID": first_cursor}, stream=True, timeout=60
        ) as stream:
            events = []
            for raw in stream.iter_lines(chunk_size=1, decode_unicode=True):
                if raw.startswith("data: "):
                    events.append(json.loads(raw[6:]))
                if raw == "event: end":
                    break
        streamed = [line for e in events if isinstance(e, dict) and "lines" in e for line in e["lines"]]
        assert streamed == rest["lines"]  # nothing before the cursor again, nothing lost
        foreign = requests.get(f"{root}/api/jobs/{other}/log", params={"after": first_cursor}, timeout=60)
        assert foreign.status_code == 400 and "not a log chunk of this job" in foreign.json()["error"]
        rows = requests.get(f"{root}/api/jobs/{job_id}/metrics", timeout=60).json()["rows"]
        assert rows == [{"step": 1}, {"step": 2}]  # non-finite values dropped, the JSON stays strict
