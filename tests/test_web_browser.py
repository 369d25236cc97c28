"""The web view in a real browser: Chromium from Debian's packages driven by Selenium (.ci/install-chromium.sh).

The pages are read the way a user reads them, from the DOM: a running job's log lines appear in order while it
runs, its curve gains points, its state turns final; compare shows two jobs; a hostile log line stays text.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.backends import backend_unavailable
from tests.conftest import REPO, Env, poll
from tests.web_helpers import base, submit_job, ui_server, wait_final

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SCREENSHOT = REPO / "docs" / "img" / "ui-job.png"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the session (started by chromedriver, stopped by it at the end)."""
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        backend_unavailable("chromium and chromedriver are not installed: sudo bash .ci/install-chromium.sh")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.page_load_strategy = "eager"  # get() returns at DOMContentLoaded; the tests poll the DOM themselves
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1800",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def localenv(tmp_path: Path, monkeypatch) -> Env:
    from tests.conftest import _isolated_env

    return _isolated_env(tmp_path, monkeypatch, "local", None)


@pytest.fixture(params=["local", "moto"])
def webenv(request, tmp_path: Path, monkeypatch) -> Env:
    from tests.conftest import _isolated_env, _server

    if request.param == "local":
        return _isolated_env(tmp_path, monkeypatch, "local", None)
    return _isolated_env(tmp_path, monkeypatch, "s3", _server(request, "moto"))


def _texts(driver: Any, css: str) -> list[str]:
    return list(driver.execute_script(f"return [...document.querySelectorAll({css!r})].map(e => e.textContent)"))


def _no_script_ran(driver: Any) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        alert = driver.switch_to.alert
        text = alert.text
        alert.dismiss()
        raise AssertionError(f"a log line ran script: alert({text})")
    except NoAlertPresentException:
        pass
    assert driver.execute_script("return window.__xss === undefined")
    assert not driver.execute_script("return document.querySelector('#log img, #log script, #results b')")


def test_job_page_follows_a_running_job_to_its_end(browser: Any, webenv: Env, tmp_path: Path) -> None:
    gate = tmp_path / "go"
    job_id = submit_job(webenv, tmp_path, lines=16, delay=0.2, gate=gate)
    with ui_server(webenv) as (url, _):
        browser.get(f"{base(url)}/job/{job_id}")

        def shown() -> tuple[str, list[str], int]:
            state, lines, points = browser.execute_script(
                "return [document.querySelector('#state')?.dataset.state || '',"
                " [...document.querySelectorAll('#log .line')].map(e => e.textContent),"
                " Number(document.querySelector('#curve-points')?.textContent || 0)]"
            )
            return state, [t for t in lines if t.startswith("line ")], points

        # the first half, while the job runs (it waits at the gate): lines in order, the curve has points
        first = poll(lambda: (s := shown())[0] == "RUNNING" and len(s[1]) == 8 and s[2] == 8 and s, 120, 0.2)
        assert first[1] == [f"line {i}" for i in range(8)]
        gate.touch()
        # the second half arrives on the same page: more points, then the final state
        seen_points = {8}

        def final() -> bool:
            state, _, points = shown()
            seen_points.add(points)
            return state in ("SUCCEEDED", "FAILED", "CANCELLED", "LOST")

        poll(final, 120, 0.2, f"job {job_id} to turn final on the page")
        assert shown()[0] == "SUCCEEDED"
        poll(lambda: shown()[2] == 16, 20, 0.2, "the curve's last points")
        assert max(seen_points | {shown()[2]}) == 16
        poll(lambda: len(shown()[1]) == 16, 20, 0.2, "the last lines")
        program = [t for t in _texts(browser, "#log .line") if t.startswith("line ")]
        assert program == [f"line {i}" for i in range(16)]  # every line once, in order
        hostile = "<img src=x onerror=alert(1)><script>window.__xss = 1</script>"
        assert hostile in _texts(browser, "#log .line")  # shown as text ...
        _no_script_ran(browser)  # ... and nothing of it ran
        timeline = _texts(browser, "#timeline li b")
        assert timeline == ["QUEUED", "STAGING", "RUNNING", "UPLOADING", "SUCCEEDED"]
        poll(lambda: _texts(browser, "#per-class tbody th, #per-class tbody td")[:1], 20, 0.2, "the per-class table")
        assert "<b>bold</b>" in _texts(browser, "#per-class td") and "<b>bold</b>" in _texts(browser, "#confusion th")
        assert "model.bin" in _texts(browser, "#outputs-table a")
        assert browser.execute_script("return document.querySelectorAll('#curves .uplot').length") >= 1
        # UPDATE_SCREENSHOTS=1 refreshes the README's picture (not JOBSUB_*: the env fixture drops those)
        if webenv.kind == "local" and os.environ.get("UPDATE_SCREENSHOTS") == "1":
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(SCREENSHOT))
        shot = tmp_path / "ui-job.png"
        assert browser.save_screenshot(str(shot)) and shot.read_bytes()[:4] == b"\x89PNG"


def test_jobs_page_picks_two_jobs_and_compare_shows_them(browser: Any, webenv: Env, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    first = submit_job(webenv, tmp_path, name="cmp", lines=3)
    second = submit_job(webenv, tmp_path, name="cmp", lines=5)
    wait_final(webenv, first)
    wait_final(webenv, second)
    with ui_server(webenv) as (url, _):
        browser.get(base(url) + "/")
        poll(lambda: {first, second} <= set(_texts(browser, "#jobs-body a")), 30, 0.2, "both jobs in the list")
        assert _texts(browser, "#summary") == ["1–2 of 2 jobs"]
        best = _texts(browser, f'tr[data-job="{second}"] td')[-1]
        assert best.startswith("eval_accuracy 0.7")  # the best value of the headline metric, not the last
        for job_id in (first, second):
            browser.find_element(By.CSS_SELECTOR, f'tr[data-job="{job_id}"] input[type=checkbox]').click()
        browser.find_element(By.ID, "compare-selected").click()
        poll(lambda: "/compare" in browser.current_url and _texts(browser, "#compare-table thead a"), 30, 0.2)
        assert sorted(_texts(browser, "#compare-table thead a")) == sorted([first, second])
        rows = browser.execute_script(
            "return [...document.querySelectorAll('#compare-table tbody tr')].map(r => [r.dataset.row, r.className])"
        )
        kinds = dict(rows)
        assert kinds["params.lines"] == "differs" and kinds["params.script"] == "same"
        browser.find_element(By.ID, "only-differences").click()
        visible = browser.execute_script(
            "return [...document.querySelectorAll('#compare-table tbody tr')]"
            ".filter(r => r.offsetParent !== null).map(r => r.dataset.row)"
        )
        assert "params.lines" in visible and "params.script" not in visible
        poll(lambda: browser.execute_script("return document.querySelectorAll('#compare-chart .uplot').length"), 10)


def test_storage_page_lists_an_interrupted_upload(browser: Any, tmp_path: Path, monkeypatch, request) -> None:
    from tests.conftest import _isolated_env, _server

    env = _isolated_env(tmp_path, monkeypatch, "s3", _server(request, "moto"))
    env.boto().create_multipart_upload(Bucket=env.bucket, Key="models/half.ckpt")
    with ui_server(env) as (url, _):
        browser.get(base(url) + "/storage")
        poll(lambda: _texts(browser, "#uploads td"), 30, 0.2, "the uploads table")
        assert f"s3://{env.bucket}/models/half.ckpt" in _texts(browser, "#uploads td")


def test_a_token_url_opens_the_page_and_a_bare_one_is_refused(browser: Any, localenv: Env) -> None:
    with ui_server(localenv, "--token") as (url, _):
        browser.delete_all_cookies()
        browser.get(base(url) + "/")
        assert "forbidden" in browser.find_element("tag name", "body").text
        browser.get(url)  # the printed URL: the token becomes a cookie and leaves the address bar
        poll(lambda: _texts(browser, "#summary") == ["0 jobs"], 30, 0.2, "the jobs page")
        assert "token" not in browser.current_url
        browser.delete_all_cookies()


def test_chromium_install_script_is_idempotent_when_installed() -> None:
    if not shutil.which("chromium"):
        backend_unavailable("chromium is not installed: sudo bash .ci/install-chromium.sh")
    import subprocess

    started = time.monotonic()
    subprocess.run(["bash", str(REPO / ".ci" / "install-chromium.sh")], check=True, timeout=60)
    assert time.monotonic() - started < 5  # installed already: nothing fetched
