"""The "Exact latency (HDR)" web UI tab: its rows, its Flask wiring, Locust's own web UI in-process, and one
real Locust master with a worker. A run started from the web UI's form, in a browser and by a script, is
in tests/test_webui_browser.py."""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Blueprint, Flask, Response, jsonify
from locust.env import Environment
from locust.event import Events

from loadtest import catalog, webui
from loadtest.metrics import Metrics
from loadtest.report import charts
from tests.conftest import (
    FAST,
    LOCUST,
    TEST_KEY,
    Finish,
    Mock,
    background,
    free_port,
    locust_env,
    start_background_mock,
    stop_at_session_end,
)

MS = 1_000_000  # ns

# --- rows_from_metrics ------------------------------------------------------------------------------


def filled_metrics() -> Metrics:
    m = Metrics()
    for i in range(1, 101):  # TTFT 1 … 100 ms, all turn 1 of "booking"
        m.record_scoped("ttft", i * MS, ("turn=1", "scenario=booking"))
        m.record_scoped("turn", 10 * i * MS, ("turn=1", "scenario=booking"))
    m.record_scoped("ttft", 12_345_000, ("turn=3", "scenario=faq"))
    m.itl.record_ns(2 * MS)
    # Turn 2 only ever failed: it has counts but no latency samples.
    m.count_scoped("turns_failed", ("turn=2", "scenario=booking"))
    return m


def test_rows_cover_each_metric_overall_and_by_the_turns_and_scenarios_it_is_kept_for() -> None:
    rows = webui.rows_from_metrics(filled_metrics())
    scopes = ["all", "turn 1", "turn 2", "turn 3", "scenario booking", "scenario faq"]
    assert [(r["metric"], r["scope"]) for r in rows] == [
        *(("TTFT", s) for s in scopes),
        *(("Turn latency", s) for s in scopes),
        ("Inter-chunk gap", "all"),
        ("Conversation", "all"),
        ("Conversation", "scenario booking"),
        ("Conversation", "scenario faq"),
        # Every turn with headers has one; the optional metrics (TLS, tokens...) have no samples here.
        ("Time to response headers", "all"),
    ]
    assert all(
        set(r) == {"metric", "scope", "count", "p50", "p90", "p95", "p99", "p999", "max"} for r in rows
    )


def test_row_values_are_exact_hdr_percentiles_in_ms_to_a_tenth() -> None:
    metrics = filled_metrics()
    rows = {(r["metric"], r["scope"]): r for r in webui.rows_from_metrics(metrics)}
    turn1 = rows["TTFT", "turn 1"]
    assert turn1 == {
        "metric": "TTFT",
        "scope": "turn 1",
        "count": 100,
        "p50": 50.0,
        "p90": 90.0,
        "p95": 95.0,
        "p99": 99.0,
        "p999": 100.0,
        "max": 100.0,
    }
    # 12 345 µs lies in an HDR bucket of 8 µs whose top is 12 351 µs.
    assert rows["TTFT", "turn 3"]["p50"] == rows["TTFT", "turn 3"]["max"] == 12.4
    assert rows["TTFT", "all"]["count"] == 101
    assert rows["Inter-chunk gap", "all"]["p99"] == 2.0
    # The same figures as summary.json, to its 0.1 ms.
    for (name, scope), row in (
        (("ttft", None), rows["TTFT", "all"]),
        (("turn", "scenario=booking"), rows["Turn latency", "scenario booking"]),
    ):
        stats = metrics.hist(name if scope is None else f"{name}{{{scope}}}").stats_ms()
        assert row["count"] == stats["count"]
        assert all(row[k] == round(stats[k], 1) for k in ("p50", "p90", "p95", "p99", "p999", "max"))


def test_scopes_and_metrics_without_samples_show_dashes_and_reading_adds_nothing() -> None:
    metrics = filled_metrics()
    before = set(metrics.histograms)
    rows = {(r["metric"], r["scope"]): r for r in webui.rows_from_metrics(metrics)}
    for key in (("TTFT", "turn 2"), ("Turn latency", "turn 2"), ("Turn latency", "scenario faq")):
        assert rows[key]["count"] == 0
        assert {rows[key][k] for k in ("p50", "p90", "p95", "p99", "p999", "max")} == {"-"}
    assert rows["Conversation", "all"]["count"] == 0 and rows["Conversation", "all"]["max"] == "-"
    assert set(metrics.histograms) == before


def test_each_table_metric_has_its_rows_and_each_table_statistic_its_column() -> None:
    metrics = Metrics()
    for i, metric in enumerate(catalog.TABLE_METRICS):
        scopes = tuple(f"{s}={'1' if s == catalog.TURN else 's'}" for s in metric.scopes)
        metrics.record_scoped(metric.key, (i + 1) * MS, scopes)
    rows = {(r["metric"], r["scope"]): r for r in webui.rows_from_metrics(metrics)}
    expected = {
        (webui.metric_label(m), scope)
        for m in catalog.TABLE_METRICS
        for scope in ("all", *(f"{s} {'1' if s == catalog.TURN else 's'}" for s in m.scopes))
    }
    assert set(rows) == expected
    for i, metric in enumerate(catalog.TABLE_METRICS):
        row = rows[webui.metric_label(metric), "all"]
        assert row["count"] == 1 and all(row[s.key] == i + 1 for s in catalog.TABLE_STATS)
    assert [key for key, _ in webui.COLUMNS[3:]] == [s.key for s in catalog.TABLE_STATS]
    assert [title for _, title in webui.COLUMNS[3:]] == [s.label for s in catalog.TABLE_STATS]


def test_empty_metrics_give_the_overall_rows_of_the_metrics_every_run_has() -> None:
    rows = webui.rows_from_metrics(Metrics())
    assert [(r["metric"], r["scope"], r["count"], r["p50"]) for r in rows] == [
        ("TTFT", "all", 0, "-"),
        ("Turn latency", "all", 0, "-"),
        ("Inter-chunk gap", "all", 0, "-"),
        ("Conversation", "all", 0, "-"),
        ("Time to response headers", "all", 0, "-"),
    ]
    assert [m for m in catalog.TABLE_METRICS if not m.optional] == [
        catalog.TTFT,
        catalog.TURN_LATENCY,
        catalog.ITL,
        catalog.CONVERSATION,
        catalog.TTFB,
    ]


def test_an_optional_metric_gets_its_row_with_samples_and_its_unit_beside_it() -> None:
    metrics = Metrics()
    metrics.hist(catalog.OUTPUT_TPS.key).record_us(42_500)  # 42.5 tokens/s
    metrics.hist(catalog.TLS.key).record_ns(7 * MS)
    rows = webui.rows_from_metrics(metrics)
    shown = {r["metric"]: r for r in webui.tab_rows(rows)}
    assert shown["Output tokens per second (tokens/s)"]["p50"] == "42.5"
    assert shown["TLS handshake (new connections) (ms)"]["max"] == "7.0"
    assert not any(r["metric"].startswith(("DNS", "Time per output token")) for r in rows)


# --- the tab's display -------------------------------------------------------------------------------


def test_the_tab_shows_one_decimal_the_unit_beside_the_metric_and_conversations_in_seconds() -> None:
    rows = [
        {"metric": "Turn latency", "scope": "turn 1", "count": 12345,
         "p50": 5.0, "p90": 812.25, "p95": 999.96, "p99": 1000.0, "p999": 1234.5, "max": 20000.0},
        {"metric": "Conversation", "scope": "scenario booking", "count": 3,
         "p50": 6500.0, "p90": 6549.0, "p95": 6551.0, "p99": 1234567.8, "p999": 1234567.8, "max": 1234567.8},
        {"metric": "TTFT", "scope": "turn 2", "count": 0, **{k: "-" for k, _ in webui.ROW_PERCENTILES}},
    ]  # fmt: skip
    assert webui.tab_rows(rows) == [
        {"metric": "Turn latency (ms)", "scope": "turn 1", "count": "12,345", "p50": "5.0",
         "p90": "812.2", "p95": "1,000.0", "p99": "1,000.0", "p999": "1,234.5", "max": "20,000.0"},
        {"metric": "Conversation (s)", "scope": "scenario booking", "count": "3",
         "p50": "6.5", "p90": "6.5", "p95": "6.6", "p99": "1,234.6", "p999": "1,234.6", "max": "1,234.6"},
        {"metric": "TTFT (ms)", "scope": "turn 2", "count": "0",
         **{k: "-" for k, _ in webui.ROW_PERCENTILES}},
    ]  # fmt: skip


def test_the_tab_has_the_rows_of_the_json_endpoint_in_its_order() -> None:
    metrics = filled_metrics()
    metrics.record_scoped("conversation", 6_500 * MS, ("scenario=booking",))
    rows = webui.rows_from_metrics(metrics)
    shown = webui.tab_rows(rows)
    assert [(r["metric"], r["scope"]) for r in shown] == [
        (f"{r['metric']} ({'s' if r['metric'] == 'Conversation' else 'ms'})", r["scope"]) for r in rows
    ]
    assert [r["metric"] for r in rows].count("Time to response headers") == 1
    conversation = next(r for r in rows if r["metric"] == "Conversation")
    assert shown[rows.index(conversation)]["max"] == f"{conversation['max'] / 1000:,.1f}"


def test_the_plots_are_the_reports_percentile_distributions_of_the_data_so_far() -> None:
    assert webui.charts_from_metrics(Metrics()) == []
    metrics = filled_metrics()
    figures = webui.charts_from_metrics(metrics)
    assert [(f["title"], f["detail"]) for f in figures] == [("TTFT", "n = 101"), ("Turn latency", "n = 100")]
    ttft = figures[0]["spec"]
    hist = metrics.hist("ttft")
    report = charts.distribution_spec(
        "loadtest-dist-ttft", "ms", [("TTFT", catalog.TTFT.color, charts.percentile_curve(hist.encode()))]
    )
    assert report is not None
    assert {k: v for k, v in ttft.items() if k != "marks"} == report
    row = {(r["metric"], r["scope"]): r for r in webui.rows_from_metrics(metrics)}["TTFT", "all"]
    # Labelled where the curve reaches them (101 samples: not as far as p99.9), with the tab's values.
    marks = {m["label"]: round(m["y"], 1) for m in ttft["marks"]}
    assert marks == {"p50": row["p50"], "p90": row["p90"], "p99": row["p99"], "max": row["max"]}


@pytest.mark.parametrize(
    ("web_host", "login", "warned"),
    [
        ("127.0.0.1", False, False),
        ("::1", False, False),
        ("[::1]", False, False),
        ("localhost", False, False),
        ("", False, True),  # Locust's own default: every interface
        ("*", False, True),
        ("0.0.0.0", False, True),
        ("192.168.1.20", False, True),
        ("0.0.0.0", True, False),
    ],
)
def test_a_web_ui_beyond_loopback_without_a_login_is_warned_about(
    web_host: str, login: bool, warned: bool
) -> None:
    options = argparse.Namespace(web_host=web_host, web_port=8089, web_login=login)
    warning = webui.exposure_warning(options)
    assert (warning is not None) == warned
    if warning is not None:
        assert "port 8089" in warning and "without --web-login" in warning and "API key" in warning
        assert "every interface" in warning if web_host in ("", "*") else web_host in warning


# --- install(), on a stand-in for Locust's WebUI ------------------------------------------------------


def full_row(label: str, count: int) -> dict[str, Any]:
    return {
        "metric": label,
        "scope": "all",
        "count": count,
        **{k: float(count) for k, _ in webui.ROW_PERCENTILES},
    }


class FakeWebUI:
    """What install() uses of Locust's WebUI: a Flask app whose blueprint "locust" serves its page and
    /stats/requests (one memoized response object, as Locust hands out), template_args,
    auth_required_if_enabled, and the environment's events and parsed options."""

    def __init__(self, base_path: str | None = None, report_dir: Path | None = None) -> None:
        self.app = Flask("fake_locust")
        self.template_args: dict[str, Any] = {"extended_tabs": [{"key": "other", "title": "Other"}]}
        self.environment = Environment(events=Events())
        self.environment.parsed_options = argparse.Namespace(report_dir=str(report_dir or "reports"))
        self.stats_calls = 0
        cached: list[Response] = []
        blueprint = Blueprint("locust", __name__, url_prefix=base_path)

        @blueprint.route("/")
        def index() -> str:
            return "<html><head><title>Locust</title></head><body></body></html>"

        @blueprint.route("/stats/requests")
        def request_stats() -> Response:
            self.stats_calls += 1
            if not cached:
                cached.append(jsonify(state="running", extended_stats=[{"key": "other", "data": [1]}]))
            return cached[0]

        self.app.register_blueprint(blueprint)

    def auth_required_if_enabled(self, view: Callable[..., Any]) -> Callable[..., Any]:
        return view


class CountingProvider:
    def __init__(self, label: str = "TTFT") -> None:
        self.label = label
        self.calls = 0

    def __call__(self) -> list[dict[str, Any]]:
        self.calls += 1
        return [full_row(self.label, self.calls)]


def extended(stats: dict[str, Any]) -> dict[str, Any]:
    return {e["key"]: e["data"] for e in stats["extended_stats"]}


def test_install_declares_the_tab_and_its_columns_beside_other_extensions() -> None:
    ui = FakeWebUI()
    webui.install(ui, CountingProvider())
    assert ui.template_args["extended_tabs"] == [
        {"key": "other", "title": "Other"},
        {"key": webui.TAB_KEY, "title": "Exact latency (HDR)"},
    ]
    [table] = ui.template_args["extended_tables"]
    assert table["key"] == webui.TAB_KEY
    assert [c["key"] for c in table["structure"]] == [
        "metric", "scope", "count", "p50", "p90", "p95", "p99", "p999", "max",
    ]  # fmt: skip
    assert "p99.9" in [c["title"] for c in table["structure"]]


def test_rows_go_to_the_json_endpoint_and_into_locusts_stats_poll_once_per_cache_period() -> None:
    ui = FakeWebUI()
    provider = CountingProvider()
    webui.install(ui, provider, cache_seconds=3600)
    client = ui.app.test_client()
    first = client.get("/loadtest/stats")
    assert first.status_code == 200
    assert first.get_json() == {"rows": [full_row("TTFT", 1)], "report": None, "goodput": None}
    for _ in range(3):  # the same memoized response object each time: our entry is replaced, not added
        stats = client.get("/stats/requests").get_json()
        assert [e["key"] for e in stats["extended_stats"]] == ["other", webui.TAB_KEY]
        assert extended(stats) == {"other": [1], webui.TAB_KEY: webui.tab_rows([full_row("TTFT", 1)])}
    assert provider.calls == 1 and ui.stats_calls == 3
    assert "extended_stats" not in client.get("/loadtest/stats").get_json()


def test_rows_are_recomputed_once_the_cache_period_is_over() -> None:
    ui = FakeWebUI()
    provider = CountingProvider()
    webui.install(ui, provider, cache_seconds=0)
    client = ui.app.test_client()
    counts = [client.get("/loadtest/stats").get_json()["rows"][0]["count"] for _ in range(3)]
    assert counts == [1, 2, 3]


def test_installing_twice_on_one_web_ui_replaces_the_provider_and_adds_nothing() -> None:
    ui = FakeWebUI()
    webui.install(ui, CountingProvider("first"))
    webui.install(ui, CountingProvider("second"))
    assert [t["key"] for t in ui.template_args["extended_tabs"]] == ["other", webui.TAB_KEY]
    assert len(ui.template_args["extended_tables"]) == 1
    client = ui.app.test_client()
    assert client.get("/loadtest/stats").get_json()["rows"][0]["metric"] == "second"
    assert extended(client.get("/stats/requests").get_json())[webui.TAB_KEY][0]["metric"] == "second (ms)"
    other = FakeWebUI()  # another web UI gets its own tab
    webui.install(other, CountingProvider("third"))
    assert other.app.test_client().get("/loadtest/stats").get_json()["rows"][0]["metric"] == "third"


def test_the_json_endpoint_follows_the_web_base_path() -> None:
    ui = FakeWebUI(base_path="/locust")
    webui.install(ui, CountingProvider())
    client = ui.app.test_client()
    assert client.get("/locust/loadtest/stats").status_code == 200
    assert client.get("/loadtest/stats").status_code == 404
    assert webui.TAB_KEY in extended(client.get("/locust/stats/requests").get_json())


def test_the_page_loads_the_tabs_script_and_style_sheet_and_nothing_else_of_the_disk() -> None:
    ui = FakeWebUI(base_path="/locust")
    webui.install(ui, CountingProvider())
    client = ui.app.test_client()
    page = client.get("/locust/").get_data(as_text=True)
    assert page.count("/locust/loadtest/assets/webui.js") == 1 and "/locust/loadtest/assets/webui.css" in page
    assert page.index("webui.css") < page.index("</head>")
    for name in ("webui.js", "webui.css", "report.js", "uPlot.iife.min.js", "uPlot.min.css"):
        answer = client.get(f"/locust/loadtest/assets/{name}")
        assert answer.status_code == 200 and answer.data == webui.ASSETS[name].read_bytes()
    for name in ("report.css", "..%2Fsummary.py", "../../options.py", "webui.py", "uPlot.LICENSE"):
        assert client.get(f"/locust/loadtest/assets/{name}").status_code == 404
    assert "webui.js" not in client.get("/locust/stats/requests").get_data(as_text=True)


def test_the_plots_are_served_to_the_page_and_reused_for_a_few_seconds() -> None:
    ui = FakeWebUI()
    calls: list[int] = []

    def figures() -> list[dict[str, Any]]:
        calls.append(1)
        return [{"title": "TTFT", "detail": "n = 1", "spec": {"id": "loadtest-dist-ttft"}}]

    webui.install(ui, CountingProvider())
    client = ui.app.test_client()
    assert client.get("/loadtest/charts").get_json() == {"charts": []}  # no plots given
    webui.install(ui, CountingProvider(), charts=figures)
    for _ in range(3):
        assert client.get("/loadtest/charts").get_json()["charts"][0]["spec"]["id"] == "loadtest-dist-ttft"
    assert len(calls) == 1
    webui.install(ui, CountingProvider())  # installing again without plots keeps them
    assert client.get("/loadtest/charts").get_json()["charts"] != []


def test_the_latest_report_is_served_once_a_run_wrote_it_and_the_log_names_its_folder(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reports = tmp_path / "reports"
    ui = FakeWebUI(report_dir=reports)
    webui.install(ui, CountingProvider())
    client = ui.app.test_client()
    assert client.get("/loadtest/report.html").status_code == 404
    assert client.get("/loadtest/stats").get_json()["report"] is None
    with caplog.at_level(logging.INFO, logger="loadtest"):
        ui.environment.events.test_stop.fire()
    assert "run output" not in caplog.text  # no run has written anything

    run_dir = reports / "20260101-120000-abcd"
    run_dir.mkdir(parents=True)
    (run_dir / "report.html").write_text("<html>the report</html>")
    (run_dir / "summary.json").write_text("{}")
    (reports / "latest").symlink_to(run_dir.name)
    answer = client.get("/loadtest/report.html")
    assert answer.status_code == 200 and answer.data == b"<html>the report</html>"
    assert answer.mimetype == "text/html"
    assert client.get("/loadtest/stats").get_json()["report"] == {
        "url": "/loadtest/report.html",
        "run": "20260101-120000-abcd",
        "folder": str(run_dir.resolve()),
    }
    with caplog.at_level(logging.INFO, logger="loadtest"):
        ui.environment.events.test_stop.fire()
        ui.environment.events.test_stop.fire()  # the same run again: said once
    assert caplog.text.count(f"loadtest: run output in {run_dir}") == 1


def test_a_failing_provider_leaves_locusts_stats_alone(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> list[dict[str, Any]]:
        raise RuntimeError("boom")

    ui = FakeWebUI()
    webui.install(ui, broken)
    with caplog.at_level(logging.ERROR, logger="loadtest"):
        answer = ui.app.test_client().get("/stats/requests")
    assert answer.status_code == 200
    assert extended(answer.get_json()) == {"other": [1]}
    assert "exact latency tab could not compute its rows" in caplog.text


# --- a real locust web UI against the real mock --------------------------------------------------------

TTFT_MS = (20.0, 40.0)  # the mock's FAST server-side TTFT range
CLIENT_SLACK_MS = 100.0
CHANNEL = ("--nlx-deployment", "dep1", "--nlx-channel", "web-en-US")

# What locustfiles/chat.py looks like with the tab installed by hand: once plugin.py installs it too,
# this installs a second time on the same web UI, which must be harmless.
LOCUSTFILE = """\
import locust.runners
from locust import events

from loadtest import webui
from loadtest.plugin import NLXChatUser, register

register(events)
# The master's tab moves with the workers' reports, every 3 s; this test waits for two of them.
locust.runners.WORKER_REPORT_INTERVAL = 0.5


@events.init.add_listener
def install_exact_latency_tab(environment, **_):
    if environment.web_ui is not None:
        webui.install(environment.web_ui, lambda: webui.rows_from_metrics(environment.loadtest.metrics))


class ChatUser(NLXChatUser):
    pass
"""
CONVERSATIONS = """\
scenarios:
  - name: two_turns
    turns: ["one", "two"]
  - name: one_turn
    turns: ["three"]
"""


class WebLocust:
    """A running `locust` process with its web UI at `url`, its output in files of `folder`."""

    def __init__(self, proc: subprocess.Popen[str], url: str, folder: Path) -> None:
        self.proc = proc
        self.url = url
        self.folder = folder
        self.stderr = ""

    def until(self, condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.proc.poll() is None, f"locust exited while waiting for {what}"
            assert time.monotonic() < deadline, f"locust web UI: no {what} after {timeout:.0f} s"
            time.sleep(0.02)  # between polls, so the poll leaves the CPUs to the run

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10)

    def up(self) -> bool:
        try:
            return self.get("/").status_code == 200
        except httpx.TransportError:
            return False

    def rows(self) -> dict[tuple[str, str], dict[str, Any]]:
        answer = self.get("/loadtest/stats")
        assert answer.status_code == 200, answer.text
        return {(r["metric"], r["scope"]): r for r in answer.json()["rows"]}

    def ttft_count(self) -> int:
        count: int = self.rows()["TTFT", "all"]["count"]
        return count

    def stop(self) -> None:
        """Stop it as Ctrl-C in its terminal would; its stderr is then in `.stderr`."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self.stderr = (self.folder / "stderr").read_text(errors="replace")


def start_web_locust(cmd: list[str], folder: Path, web_host: str | None = "127.0.0.1") -> WebLocust:
    """Start a `locust` web UI reached at 127.0.0.1, listening where `--web-host` says (None: not given),
    with its output in `folder` (files: nobody reads a pipe while it waits for a test)."""
    port = free_port()
    cmd = [*cmd, "--web-port", str(port), *(["--web-host", web_host] if web_host is not None else [])]
    with (folder / "stdout").open("w") as out, (folder / "stderr").open("w") as err:
        proc = subprocess.Popen(
            cmd, env=locust_env(NLX_API_KEY=TEST_KEY), cwd=folder, stdout=out, stderr=err,
            stdin=subprocess.DEVNULL, text=True,
        )  # fmt: skip
    stop_at_session_end(proc)
    return WebLocust(proc, f"http://127.0.0.1:{port}", folder)


@contextmanager
def stopping(locust: WebLocust) -> Iterator[WebLocust]:
    """`locust` for the block, stopped at its end; its stderr must hold no traceback."""
    try:
        yield locust
    finally:
        locust.stop()
    stderr = locust.stderr
    assert "Traceback" not in stderr and "could not compute" not in stderr, stderr[-3000:]


def locust_files(folder: Path) -> list[str]:
    (folder / "conversations.yaml").write_text(CONVERSATIONS)
    locustfile = folder / "chat_webui.py"
    locustfile.write_text(LOCUSTFILE)
    common = [LOCUST, "-f", str(locustfile), "--report-dir", str(folder / "reports"), "--think-time", "0"]
    return [*common, *CHANNEL]


def check_the_tab(locust: WebLocust, mock: Mock) -> None:
    """The tab is declared in the page, and its rows reach both JSON endpoints and move while users run."""
    page = locust.get("/").text
    found = re.search(r"window\.templateArgs = (.*)$", page, re.MULTILINE)
    assert found, page[-2000:]
    template_args = json.loads(found.group(1))
    assert {"key": webui.TAB_KEY, "title": "Exact latency (HDR)"} in template_args["extended_tabs"]
    [table] = [t for t in template_args["extended_tables"] if t["key"] == webui.TAB_KEY]
    assert [c["key"] for c in table["structure"]][:4] == ["metric", "scope", "count", "p50"]

    locust.until(lambda: mock.stats()["turns_completed"] >= 10, "10 turns served by the mock")
    locust.until(lambda: locust.ttft_count() > 0, "TTFT samples in /loadtest/stats")
    rows = locust.rows()
    ttft = rows["TTFT", "all"]
    assert ttft["count"] > 0
    # Milliseconds as the client measured them: never under the mock's least TTFT; above its most by
    # what the generator and loopback add, which a loaded machine makes tens of ms (with as few as three
    # samples): how exact they are is the timing tests' business, not the tab's.
    assert TTFT_MS[0] <= ttft["p50"] <= TTFT_MS[1] + CLIENT_SLACK_MS, ttft
    assert ttft["p50"] <= ttft["p99"] <= ttft["max"]
    assert {("TTFT", "turn 1"), ("Turn latency", "scenario two_turns"), ("Inter-chunk gap", "all")} <= set(
        rows
    )

    stats = locust.get("/stats/requests").json()
    [entry] = [e for e in stats["extended_stats"] if e["key"] == webui.TAB_KEY]
    polled = {(r["metric"], r["scope"]): r for r in entry["data"]}
    assert int(polled["TTFT (ms)", "all"]["count"]) > 0
    assert {(m.rpartition(" (")[0], scope) for m, scope in polled} == set(rows)
    # Live: more samples show up while the test runs, past the row cache (and Locust's own).
    seen = ttft["count"]
    locust.until(lambda: locust.ttft_count() > seen, "growing TTFT count")


def test_the_tab_on_locusts_own_web_ui_moves_with_the_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    """Locust's real WebUI, in-process (no server: Flask's test client): the page declares the tab, and
    Locust's own stats poll, memoized by Locust, carries rows that move as samples are recorded."""
    monkeypatch.setattr(sys, "argv", ["locust"])  # the WebUI parses the command line for its options
    environment = Environment(events=Events())
    runner = environment.create_local_runner()
    ui = environment.create_web_ui("127.0.0.1", 0, delayed_start=True)
    metrics = Metrics()
    try:
        webui.install(ui, lambda: webui.rows_from_metrics(metrics), cache_seconds=0)
        client = ui.app.test_client()
        page = client.get("/").get_data(as_text=True)
        found = re.search(r"window\.templateArgs = (.*)$", page, re.MULTILINE)
        assert found, page[-2000:]
        template_args = json.loads(found.group(1))
        assert {"key": webui.TAB_KEY, "title": "Exact latency (HDR)"} in template_args["extended_tabs"]
        [table] = [t for t in template_args["extended_tables"] if t["key"] == webui.TAB_KEY]
        assert [c["key"] for c in table["structure"]] == [key for key, _ in webui.COLUMNS]

        def polled() -> dict[tuple[str, str], dict[str, Any]]:
            stats = client.get("/stats/requests").get_json()
            [entry] = [e for e in stats["extended_stats"] if e["key"] == webui.TAB_KEY]
            return {(r["metric"], r["scope"]): r for r in entry["data"]}

        assert polled()["TTFT (ms)", "all"]["count"] == "0"
        for ttft_ms in (20, 30, 40):
            metrics.record_scoped("ttft", ttft_ms * MS, ("turn=1", "scenario=two_turns"))
        rows = polled()
        assert rows["TTFT (ms)", "all"]["count"] == "3" and rows["TTFT (ms)", "all"]["p50"] == "30.0"
        assert rows["TTFT (ms)", "turn 1"]["max"] == "40.0"
        served = client.get("/loadtest/stats").get_json()["rows"]
        assert rows == {(r["metric"], r["scope"]): r for r in webui.tab_rows(served)}
        metrics.record_scoped("ttft", 50 * MS, ("turn=1", "scenario=two_turns"))
        assert polled()["TTFT (ms)", "all"]["count"] == "4"  # past Locust's memoized response
        page = client.get("/").get_data(as_text=True)
        assert "/loadtest/assets/webui.js" in page  # Locust's real page gets the tab's script
    finally:
        runner.quit()


@dataclass
class MasterWebUI:
    locust: WebLocust
    worker: subprocess.Popen[str]
    mock: Mock


@background
def master_web_ui(folder: Path) -> Finish:
    """A master's web UI, open on every interface without a login, with one worker and a mock: up and
    connected, waiting for the test that starts load from it (their start takes no test's time)."""
    mock = start_background_mock(*FAST)
    stop_at_session_end(mock.process.process)
    master_port = str(free_port())
    common = locust_files(folder)
    worker = subprocess.Popen(
        [*common, "--worker", "--master-host", "127.0.0.1", "--master-port", master_port],
        env=locust_env(NLX_API_KEY=TEST_KEY), cwd=folder, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    stop_at_session_end(worker)
    master = [*common, "--host", mock.url, "--master"]
    master += ["--master-bind-host", "127.0.0.1", "--master-bind-port", master_port]
    locust = start_web_locust(master, folder, web_host="0.0.0.0")

    def finish() -> MasterWebUI:
        locust.until(locust.up, "web UI")
        locust.until(lambda: locust.get("/worker-count").json()["worker_count"] == 1, "worker")
        return MasterWebUI(locust, worker, mock)

    return finish


def test_the_tab_on_a_master_shows_the_workers_merged_data(master_web_ui: MasterWebUI) -> None:
    """The master's web UI, open on every interface without a login: warned about, once."""
    locust, worker, mock = master_web_ui.locust, master_web_ui.worker, master_web_ui.mock
    try:
        with stopping(locust):
            swarm = httpx.post(
                locust.url + "/swarm", data={"user_count": 3, "spawn_rate": 3, "host": mock.url}, timeout=10
            )
            assert swarm.json()["success"] is True
            check_the_tab(locust, mock)
            assert httpx.post(locust.url + "/stop", timeout=30).json()["success"] is True
        worker.wait(timeout=30)  # the master told it to quit
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        mock.process.stop()
    assert locust.stderr.count("the web UI listens on 0.0.0.0") == 1, locust.stderr[-3000:]
    assert "anyone who can reach that port can start load with this process's API key" in locust.stderr
