"""The "Exact latency (HDR)" web UI tab: its rows, its Flask wiring, Locust's own web UI in-process, and one
real Locust master with a worker."""

from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Blueprint, Flask, Response, jsonify
from locust.env import Environment
from locust.event import Events

from loadtest import catalog, webui
from loadtest.metrics import Metrics
from tests.conftest import FAST, LOCUST, TEST_KEY, Mock, free_port, locust_env

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
    assert [title for _, title in webui.COLUMNS[3:]] == [f"{s.label} (ms)" for s in catalog.TABLE_STATS]


def test_empty_metrics_give_the_four_overall_rows() -> None:
    rows = webui.rows_from_metrics(Metrics())
    assert [(r["metric"], r["scope"], r["count"], r["p50"]) for r in rows] == [
        ("TTFT", "all", 0, "-"),
        ("Turn latency", "all", 0, "-"),
        ("Inter-chunk gap", "all", 0, "-"),
        ("Conversation", "all", 0, "-"),
    ]


# --- install(), on a stand-in for Locust's WebUI ------------------------------------------------------


class FakeWebUI:
    """What install() uses of Locust's WebUI: a Flask app whose blueprint "locust" serves /stats/requests
    (one memoized response object, as Locust hands out), template_args and auth_required_if_enabled."""

    def __init__(self, base_path: str | None = None) -> None:
        self.app = Flask("fake_locust")
        self.template_args: dict[str, Any] = {"extended_tabs": [{"key": "other", "title": "Other"}]}
        self.stats_calls = 0
        cached: list[Response] = []
        blueprint = Blueprint("locust", __name__, url_prefix=base_path)

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
        return [{"metric": self.label, "scope": "all", "count": self.calls}]


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
    assert "p99.9 (ms)" in [c["title"] for c in table["structure"]]


def test_rows_go_to_the_json_endpoint_and_into_locusts_stats_poll_once_per_cache_period() -> None:
    ui = FakeWebUI()
    provider = CountingProvider()
    webui.install(ui, provider, cache_seconds=3600)
    client = ui.app.test_client()
    first = client.get("/loadtest/stats")
    assert first.status_code == 200
    assert first.get_json() == {"rows": [{"metric": "TTFT", "scope": "all", "count": 1}]}
    for _ in range(3):  # the same memoized response object each time: our entry is replaced, not added
        stats = client.get("/stats/requests").get_json()
        assert [e["key"] for e in stats["extended_stats"]] == ["other", webui.TAB_KEY]
        assert extended(stats) == {
            "other": [1],
            webui.TAB_KEY: [{"metric": "TTFT", "scope": "all", "count": 1}],
        }
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
    assert extended(client.get("/stats/requests").get_json())[webui.TAB_KEY][0]["metric"] == "second"
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

TTFT_MS = (20.0, 40.0)
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
    """A running `locust` process with its web UI at `url`."""

    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url

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


@contextmanager
def web_locust(cmd: list[str], cwd: Path) -> Iterator[WebLocust]:
    port = free_port()
    cmd = [*cmd, "--web-host", "127.0.0.1", "--web-port", str(port)]
    proc = subprocess.Popen(
        cmd, env=locust_env(NLX_API_KEY=TEST_KEY), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    locust = WebLocust(proc, f"http://127.0.0.1:{port}")
    stderr = ""
    try:
        locust.until(locust.up, "web UI")
        yield locust
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert "Traceback" not in stderr and "could not compute" not in stderr, stderr[-3000:]


def locust_files(tmp_path: Path) -> list[str]:
    (tmp_path / "conversations.yaml").write_text(CONVERSATIONS)
    locustfile = tmp_path / "chat_webui.py"
    locustfile.write_text(LOCUSTFILE)
    common = [LOCUST, "-f", str(locustfile), "--report-dir", str(tmp_path / "reports"), "--think-time", "0"]
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
    assert TTFT_MS[0] <= ttft["p50"] <= TTFT_MS[1], ttft
    assert ttft["p50"] <= ttft["p99"] <= ttft["max"]
    assert {("TTFT", "turn 1"), ("Turn latency", "scenario two_turns"), ("Inter-chunk gap", "all")} <= set(
        rows
    )

    stats = locust.get("/stats/requests").json()
    [entry] = [e for e in stats["extended_stats"] if e["key"] == webui.TAB_KEY]
    polled = {(r["metric"], r["scope"]): r for r in entry["data"]}
    assert polled["TTFT", "all"]["count"] > 0 and set(polled) == set(rows)
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

        assert polled()["TTFT", "all"]["count"] == 0
        for ttft_ms in (20, 30, 40):
            metrics.record_scoped("ttft", ttft_ms * MS, ("turn=1", "scenario=two_turns"))
        rows = polled()
        assert rows["TTFT", "all"]["count"] == 3 and rows["TTFT", "all"]["p50"] == 30.0
        assert rows["TTFT", "turn 1"]["max"] == 40.0
        assert rows == {
            (r["metric"], r["scope"]): r for r in client.get("/loadtest/stats").get_json()["rows"]
        }
        metrics.record_scoped("ttft", 50 * MS, ("turn=1", "scenario=two_turns"))
        assert polled()["TTFT", "all"]["count"] == 4  # past Locust's memoized response
    finally:
        runner.quit()


def test_the_tab_on_a_master_shows_the_workers_merged_data(
    mock_server: Callable[..., Mock], tmp_path: Path
) -> None:
    mock = mock_server(*FAST)
    master_port = free_port()
    common = locust_files(tmp_path)
    master = [*common, "--host", mock.url, "--master"]
    master += ["--master-bind-host", "127.0.0.1", "--master-bind-port", str(master_port)]
    worker = subprocess.Popen(
        [*common, "--worker", "--master-host", "127.0.0.1", "--master-port", str(master_port)],
        env=locust_env(NLX_API_KEY=TEST_KEY), cwd=tmp_path, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with web_locust(master, tmp_path) as locust:
            locust.until(lambda: locust.get("/worker-count").json()["worker_count"] == 1, "worker")
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
