"""The web UI as a new user drives it, in headless Chromium: `locust -f locustfiles/chat.py` against the
built-in mock, the start form read and filled in, a run started, reset, stopped, and its report opened."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from playwright.sync_api import Browser, Page

from loadtest.webui_form import FORM_OPTIONS
from tests.browser import chromium, require_chromium
from tests.conftest import LOCUST, ROOT, TEST_KEY
from tests.test_webui import WebLocust, web_locust

FAST_MOCK = "--ttft uniform:20ms:40ms --itl uniform:1ms:5ms --chunks uniform:2:8"
THINK_TIME = "0.2-0.4"
USERS = 4


@contextmanager
def chat_locust(tmp_path: Path) -> Iterator[tuple[WebLocust, Path]]:
    """locustfiles/chat.py's web UI against the built-in mock, and the folder of its run output."""
    reports = tmp_path / "reports"
    cmd = [LOCUST, "-f", str(ROOT / "locustfiles" / "chat.py"), "--report-dir", str(reports)]
    with web_locust([*cmd, "--mock-options", FAST_MOCK], tmp_path) as locust:
        yield locust, reports


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require_chromium()
    with chromium() as b:
        yield b


def open_page(browser: Browser, url: str, errors: list[str]) -> Page:
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_load_state("networkidle")
    return page


def mock_turns(mock_url: str) -> int:
    turns: int = httpx.get(mock_url + "/_mock/stats", timeout=10).json()["turns_completed"]
    return turns


def check_the_form_is_readable(page: Page) -> None:
    """loadtest's fields in the order of its options, each label whole on its line, no doubled %."""
    page.get_by_text("Custom parameters").click()
    names = page.eval_on_selector_all("form [name]", "elements => elements.map(e => e.getAttribute('name'))")
    ours = [name for name in names if name in {o.label for o in FORM_OPTIONS}]
    assert ours == [o.label for o in FORM_OPTIONS]
    cut = page.eval_on_selector_all(
        "form label",
        "labels => labels.filter(l => l.scrollWidth > l.clientWidth + 1).map(l => l.textContent)",
    )
    assert cut == []
    text = page.inner_text("form")
    assert "NLX channel key (" in text and "Garbage collector (" in text
    assert "%%" not in text and "Nlx " not in text


def test_a_run_started_reset_and_stopped_from_the_web_ui_uses_the_forms_values(
    browser: Browser, tmp_path: Path
) -> None:
    errors: list[str] = []
    with chat_locust(tmp_path) as (locust, reports):
        page = open_page(browser, locust.url, errors)
        check_the_form_is_readable(page)
        mock_url = page.input_value("input[name=host]")

        page.fill("input[name=userCount]", str(USERS))
        page.fill("input[name=spawnRate]", str(USERS))
        page.fill("input[name='Think time']", THINK_TIME)
        page.select_option("select[name=History]", "last")
        page.get_by_role("button", name="Start").click()
        page.get_by_text("Exact latency (HDR)").click()
        locust.until(lambda: locust.ttft_count() >= 20, "20 turns")
        # The report's percentile plots of TTFT and turn latency, drawn above the table.
        page.wait_for_function("document.querySelectorAll('#loadtest-charts canvas').length === 2")
        captions = page.inner_text("#loadtest-charts")
        assert "TTFT percentiles" in captions and "Turn latency percentiles" in captions

        # RESET drops what came before: the tab's figures start again, and so do the summary's.
        before = locust.ttft_count()
        served_before = mock_turns(mock_url)
        with page.expect_response("**/stats/reset"):
            page.get_by_role("button", name="Reset").click()
        served_at_reset = mock_turns(mock_url)
        locust.until(lambda: locust.ttft_count() < before, "the tab's figures reset")
        locust.until(lambda: mock_turns(mock_url) >= served_at_reset + 20, "20 turns after the reset")

        page.get_by_role("button", name="Stop").click()
        link = page.wait_for_selector("#loadtest-report a", timeout=60_000)
        assert link is not None
        report = httpx.get(str(link.get_attribute("href")), timeout=10)
        assert report.status_code == 200
        assert report.content == (reports / "latest" / "report.html").read_bytes()
        served = mock_turns(mock_url)

        run_dir = (reports / "latest").resolve()
        assert f"in {run_dir}" in page.inner_text("#loadtest-panel")

        # Locust's LOGS tab polls only while a test runs: the line that ends the run shows after a reload.
        page.reload()
        page.get_by_text("Logs", exact=True).click()
        page.get_by_text(f"loadtest: run output in {run_dir}").wait_for()
        logs = page.inner_text("body")
        assert "ERROR" not in logs and "Traceback" not in logs, logs

        # "New" offers the last run's values, as it does users and spawn rate.
        page.get_by_role("button", name="New").click()
        page.get_by_text("Custom parameters").click()
        assert page.input_value("input[name='Think time']") == THINK_TIME
        page_text = page.content()

    assert errors == []
    assert "Traceback" not in locust.stderr, locust.stderr[-3000:]
    assert TEST_KEY not in page_text
    summary: dict[str, Any] = orjson.loads((reports / "latest" / "summary.json").read_bytes())
    run = summary["run"]
    assert run["settings"]["think_time"] == THINK_TIME and run["settings"]["history"] == "last"
    assert run["history"] == "last" and run["stopped_by"] == "ui" and "reset_at" in run
    # Only the turns after the reset: those the mock served since, give or take one per user in flight.
    turns = summary["counts"]["turns_ok"]
    assert served - served_at_reset - USERS <= turns <= served - served_before + USERS, (
        served_before, served_at_reset, served, turns,
    )  # fmt: skip
    assert served_before > 3 * USERS  # so a summary that kept them would be past that bound
    assert any(point["users"] == USERS for point in summary["timeline"]["points"])
    assert summary["verdict"] == "pass", json.dumps(summary["reasons"])
