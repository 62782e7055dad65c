"""The web UI as a new user drives it, in headless Chromium: `locust -f locustfiles/chat.py` against the
built-in mock, the start form read, posted with bad values and filled in, a run started, reset, stopped,
and its report opened; no page or answer of the web UI holds the API key.

One run carries every check of a run started from the web UI: each such run costs a `locust` process
and seconds of waiting."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from playwright.sync_api import Browser, Page

from loadtest.webui_form import FORM_OPTIONS
from tests.browser import chromium, require_chromium
from tests.conftest import LOCUST, ROOT, TEST_KEY, Finish, background
from tests.test_webui import WebLocust, start_web_locust, stopping
from tests.test_webui_form import form_body

FAST_MOCK = "--ttft uniform:20ms:40ms --itl uniform:1ms:5ms --chunks uniform:2:8"
THINK_TIME = "0.2-0.4"
USERS = 4
# locustfiles/chat.py's order_status scenario: four turns, so three think times in each conversation.
THREE_THINKS = ("Conversation", "scenario order_status")

# Every page, answer and download of the web UI a browser or a script can fetch.
WEB_UI_PATHS = (
    "/",
    "/loadtest/stats",
    "/loadtest/report.html",
    "/stats/requests",
    "/stats/requests/csv",
    "/stats/requests_full_history/csv",
    "/stats/failures/csv",
    "/exceptions",
    "/exceptions/csv",
    "/tasks",
    "/logs",
    "/stats/report",
    "/stats/report?download=1",
)
# One of each kind: a number, a choice, a threshold, a conversations file that does not exist.
BAD_FIELDS = (
    ({"Read timeout": "soon"}, "--read-timeout 'soon' must be a number of seconds > 0"),
    ({"History": "sometimes"}, "--history 'sometimes' is not known: use --history full or --history last"),
    ({"Thresholds": "ttft.p95<fast"}, "ttft.p95<fast"),
    ({"Conversations file": "missing.yaml"}, "missing.yaml: conversations file not found"),
)


@background
def chat_web_ui(folder: Path) -> Finish:
    """locustfiles/chat.py's web UI against the built-in mock, with --think-time 0 at start-up and no
    --web-host: up, waiting for the test that drives it (its start takes no test's time); and the folder
    of its run output."""
    reports = folder / "reports"
    cmd = [LOCUST, "-f", str(ROOT / "locustfiles" / "chat.py"), "--report-dir", str(reports)]
    cmd += ["--think-time", "0", "--mock-options", FAST_MOCK]
    locust = start_web_locust(cmd, folder, web_host=None)

    def finish() -> tuple[WebLocust, Path]:
        locust.until(locust.up, "web UI")
        return locust, reports

    return finish


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


def start_form(locust: WebLocust) -> dict[str, str]:
    """The body the start form posts as it opens, for 2 users, on the host it offers."""
    page = locust.get("/").text
    found = re.search(r"window\.templateArgs = (.*)$", page, re.MULTILINE)
    assert found, page[-2000:]
    template_args = json.loads(found.group(1))
    fields = form_body(template_args["extra_options"])
    return {"user_count": "2", "spawn_rate": "2", "host": template_args["host"], **fields}


def check_bad_fields_are_refused(locust: WebLocust) -> None:
    """The form, posted as a script would, offers the start-up options; a bad value is refused with its
    one line and starts nothing."""
    body = start_form(locust)
    assert body["Think time"] == "0" and body["First byte timeout"] == ""
    for fields, message in BAD_FIELDS:
        answer = httpx.post(locust.url + "/swarm", data={**body, **fields}, timeout=10).json()
        assert answer["success"] is False and message in answer["message"], answer
        assert "\n" not in answer["message"]
    assert locust.get("/stats/requests").json()["state"] == "ready"


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
    browser: Browser, chat_web_ui: tuple[WebLocust, Path]
) -> None:
    locust, reports = chat_web_ui
    errors: list[str] = []
    with stopping(locust):
        check_bad_fields_are_refused(locust)
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
        # The form's think time, not the start-up's 0, is what the users wait between turns.
        locust.until(lambda: locust.rows().get(THREE_THINKS, {"count": 0})["count"] >= 1, "a conversation")
        assert locust.rows()[THREE_THINKS]["p50"] >= 3 * 200.0

        page.get_by_role("button", name="Stop").click()
        link = page.wait_for_selector("#loadtest-report a", timeout=60_000)
        assert link is not None
        report = httpx.get(str(link.get_attribute("href")), timeout=10)
        assert report.status_code == 200
        assert report.content == (reports / "latest" / "report.html").read_bytes()
        served = mock_turns(mock_url)

        run_dir = (reports / "latest").resolve()
        assert f"in {run_dir}" in page.inner_text("#loadtest-panel")
        for path in WEB_UI_PATHS:
            assert TEST_KEY not in locust.get(path).text, path

        # Locust's LOGS tab polls only while a test runs: the line that ends the run shows after a reload.
        page.reload()
        page.get_by_text("Logs", exact=True).click()
        page.get_by_text(f"loadtest: run output in {run_dir}").wait_for()
        logs = page.inner_text("body")
        # The errors logged are the refused starts' lines, one each: the run itself logged none.
        refused = logs.count("ERROR/loadtest: loadtest: the test did not start: ")
        assert logs.count("ERROR") == refused == len(BAD_FIELDS) and "Traceback" not in logs, logs

        # "New" offers the last run's values, as it does users and spawn rate.
        page.get_by_role("button", name="New").click()
        page.get_by_text("Custom parameters").click()
        assert page.input_value("input[name='Think time']") == THINK_TIME
        page_text = page.content()

    assert errors == []
    assert "Traceback" not in locust.stderr, locust.stderr[-3000:]
    # Without --web-host, on loopback only, and nothing to warn about.
    port = locust.url.rsplit(":", 1)[1]
    assert f"Starting web interface at http://127.0.0.1:{port}" in locust.stderr
    assert "--web-login" not in locust.stderr
    assert TEST_KEY not in page_text
    summary: dict[str, Any] = orjson.loads((reports / "latest" / "summary.json").read_bytes())
    run = summary["run"]
    assert run["settings"]["think_time"] == THINK_TIME and run["settings"]["history"] == "last"
    assert run["history"] == "last" and run["stopped_by"] == "ui" and "reset_at" in run
    assert run["users"] == USERS
    # Only the turns after the reset: those the mock served since, give or take one per user in flight.
    turns = summary["counts"]["turns_ok"]
    assert served - served_at_reset - USERS <= turns <= served - served_before + USERS, (
        served_before, served_at_reset, served, turns,
    )  # fmt: skip
    assert served_before > 3 * USERS  # so a summary that kept them would be past that bound
    assert any(point["users"] == USERS for point in summary["timeline"]["points"])
    assert summary["verdict"] == "pass", json.dumps(summary["reasons"])
