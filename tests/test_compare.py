"""`loadtest compare`: two runs (TTFT 20 ms and 200 ms) built in-process, their deltas, verdict and exit
codes. The CLI tests run `loadtest compare` (not locust) on the written run folders."""

from __future__ import annotations

import functools
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from loadtest import catalog
from loadtest.cli import main
from loadtest.errors import ConfigError
from loadtest.metrics import Metrics, interval_of
from loadtest.report import build_summary, write_run
from loadtest.report.compare import compare, headline, parse_tolerance, render_markdown, rule
from loadtest.report.schema import Summary, load_summary
from tests.browser import chromium, load, loaded_references, require_chromium
from tests.conftest import Finish, background, locust_env, start_child

LOADTEST = str(Path(sys.executable).with_name("loadtest"))
DELTA_HEAD = "| metric | baseline | new | Δ | Δ % | |"
MS = 1_000_000  # ns
STARTED = 1_795_000_000  # epoch s, the start of a time-series interval
TURNS = 200


@functools.cache  # the HDR mean is slow in pure Python; no test changes a summary
def run_summary(run_id: str, ttft_ms: float) -> Summary:
    """A 10 s run of TURNS turns, two per conversation, of one scenario: TTFT spread evenly over
    ttft_ms x (0.5, 1.5], turns 25 ms longer, 5 chunks each 2 ms apart."""
    metrics = Metrics()
    for i in range(TURNS):
        scopes = (f"turn={i % 2 + 1}", "scenario=chat")
        interval = interval_of(STARTED + i * 10 / TURNS)
        ttft = ttft_ms * (0.5 + (i + 1) / TURNS)
        metrics.record_scoped("ttft", round(ttft * MS), scopes, interval)
        metrics.record_scoped("turn", round((ttft + 25) * MS), scopes, interval)
        for _ in range(4):
            metrics.itl.record_ns(2 * MS)
        for name in ("turns", "turns_ok"):
            metrics.count_scoped(name, scopes)
        metrics.count_at("turns_ok", interval)
        metrics.count("chunks", 5)
        for metric in catalog.COMPARED_METRICS:
            if metric not in (catalog.TTFT, catalog.TURN_LATENCY, catalog.ITL):
                # Any value that differs between the two runs: thousandths of the metric's unit.
                metrics.hist(metric.key).record_us(round(ttft * 1000) // 4)
    for _ in range(TURNS // 2):
        metrics.record_scoped("conversation", round((2 * ttft_ms + 50) * MS), ("scenario=chat",))
        metrics.count_scoped("conversations_started", ("scenario=chat",))
        metrics.count_scoped("conversations_completed", ("scenario=chat",))
    run = {
        "id": run_id,
        "started": "2026-11-17T08:53:20+00:00",
        "ended": "2026-11-17T08:53:30+00:00",
        "duration_s": 10.0,
        "host": "http://127.0.0.1:8000",
        "users": 4,
        "workers": 1,
    }
    return build_summary(metrics, run, {interval_of(STARTED): 4, interval_of(STARTED + 5): 4})


RUNS = (("fast", 20.0), ("slow", 200.0))


def write_runs(base: Path) -> dict[str, Path]:
    """Run folders of two runs: TTFT 20 ms ("fast") and 200 ms ("slow"), written as a run writes them."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("GITHUB_STEP_SUMMARY", raising=False)
        return {name: write_run(base / name, name, run_summary(name, ttft)) for name, ttft in RUNS}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_runs(tmp_path_factory.mktemp("runs"))


@dataclass
class Shell:
    """A `loadtest` command that ran in `cwd`, and what it did there."""

    done: subprocess.CompletedProcess[str]
    cwd: Path


def start_loadtest(args: list[str], cwd: Path) -> Callable[[], Shell]:
    """Start `loadtest ARGS` in `cwd` (made here); the result waits for its end."""
    cwd.mkdir(parents=True)
    child = start_child([LOADTEST, *args], cwd=cwd, env=locust_env())
    return lambda: Shell(child(), cwd)


@background
def compare_commands(folder: Path) -> Finish:
    """The `loadtest compare` commands the tests below read, each in a folder of its own, on the two runs
    written in `folder`: started with the session, they take no test's time."""
    runs = write_runs(folder / "runs")
    fast, slow = str(runs["fast"]), str(runs["slow"])
    commands = {
        "slower": ["compare", fast, str(runs["slow"] / "summary.json"), "--markdown", "pr.md"],
        "itself": ["compare", slow, slow, "-o", "same.html"],
        "missing": ["compare", "nope.json", "nope2.json"],
    }
    started = {name: start_loadtest(args, folder / name) for name, args in commands.items()}
    return lambda: (runs, {name: finish() for name, finish in started.items()})


Commands = tuple[dict[str, Path], dict[str, Shell]]


def test_a_slower_first_token_is_a_regression(compare_commands: Commands) -> None:
    runs, shells = compare_commands
    done, cwd = shells["slower"].done, shells["slower"].cwd
    assert done.returncode == 4, done.stderr
    assert done.stdout.split() == ["compare.html", "pr.md"]
    [line] = done.stderr.splitlines()
    assert line.startswith("loadtest compare: regression beyond 10%: ttft.p50 +")
    assert "ttft.p95" in line and "ttft.p99" in line
    comparison = compare(load_summary(runs["fast"]), load_summary(runs["slow"]), 0.10)
    found = "; ".join(comparison.regressions)
    assert line == f"loadtest compare: regression beyond 10%: {found} (compare.html)"
    # Every gated statistic regressed (TTFT x10, turn latency with it), and nothing else is judged.
    assert [d.name for d in comparison.latency if d.regressed] == [
        f"{m}.{s}" for m in ("ttft", "turn") for s in ("p50", "p95", "p99")
    ]
    [p50] = [d for d in comparison.latency if d.name == "ttft.p50"]
    assert p50.baseline == pytest.approx(20.0, rel=2e-3) and p50.new == pytest.approx(200.0, rel=2e-3)
    assert p50.ratio == pytest.approx(9.0, rel=2e-3)
    markdown = (cwd / "pr.md").read_text(encoding="utf-8")
    assert markdown.startswith("## ❌ Load test comparison: regression beyond 10%")
    assert DELTA_HEAD in markdown
    rows = {row.split(" | ")[0].lstrip("| "): row for row in markdown.splitlines() if row.startswith("| ")}
    for label in ("TTFT p50 (ms)", "TTFT p99.9 (ms)", "turn latency max (ms)", "inter-chunk gap p95 (ms)"):
        assert label in rows
    assert rows["TTFT p50 (ms)"].endswith("| ❌ |")
    assert rows["TTFT p90 (ms)"].endswith("|  |")  # shown, not judged
    assert "error rate" in rows and "throughput (turns/s)" in rows
    html = (cwd / "compare.html").read_text(encoding="utf-8")
    assert "REGRESSION" in html and loaded_references(html) == []


def test_a_run_against_itself_is_no_regression(compare_commands: Commands) -> None:
    _, shells = compare_commands
    done, cwd = shells["itself"].done, shells["itself"].cwd
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("## ✅ Load test comparison: no regression beyond 10%")
    assert DELTA_HEAD in done.stdout and "+0.0%" in done.stdout
    assert done.stderr.strip() == "loadtest compare: no regression beyond 10% (same.html)"
    assert (cwd / "same.html").exists()


def test_faster_is_no_regression(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "c.html"
    assert main(["compare", str(runs["slow"]), str(runs["fast"]), "-o", str(output)]) == 0
    assert "no regression" in capsys.readouterr().out


def test_comparison_page_overlays_both_runs(runs: dict[str, Path], tmp_path: Path) -> None:
    require_chromium()
    output = tmp_path / "compare.html"
    markdown = tmp_path / "compare.md"
    assert (
        main(
            ["compare", str(runs["fast"]), str(runs["slow"]), "-o", str(output), "--markdown", str(markdown)]
        )
        == 4
    )
    with chromium() as browser:
        shown = load(browser, output)
        page = shown.page
        page.wait_for_function("document.querySelectorAll('.plot canvas').length >= 2")
        assert shown.errors == [] and shown.foreign_requests == []
        for chart_id in ("dist-ttft", "dist-turn"):
            legend = page.locator(f"#{chart_id} .u-legend").inner_text()
            assert "baseline" in legend and "new" in legend
        assert page.locator("#verdict.fail").inner_text().startswith("REGRESSION")
        assert "A regression is the new run worse" in page.locator("#rule").inner_text()
        assert page.locator("#judged-statistics tbody tr").count() == 7


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    (tmp_path / "not-json.json").write_text("{", encoding="utf-8")
    (tmp_path / "other.json").write_text('{"name": "something else"}', encoding="utf-8")
    (tmp_path / "empty").mkdir()
    (tmp_path / "future.json").write_text('{"schema": "loadtest.summary/2", "metrics": {}}', encoding="utf-8")
    write_run(tmp_path / "reports", "nothing", build_summary(Metrics(), {"id": "nothing"}))
    yield tmp_path


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["missing.json", "RUN"], "missing.json does not exist: pass a run's summary.json or its folder"),
        (["empty", "RUN"], "no summary.json in empty"),
        (["not-json.json", "RUN"], "not-json.json is not JSON"),
        (["other.json", "RUN"], 'other.json is not a loadtest summary (no "schema"'),
        (["future.json", "RUN"], "future.json is a loadtest.summary/2 summary and this loadtest reads"),
        (["reports/nothing", "RUN"], "has no TTFT or turn latency figures (no turn completed)"),
        (
            ["RUN", "RUN", "--tolerance", "ten"],
            "--tolerance: 'ten' is not a share: write a percentage like 10% or a fraction like 0.1",
        ),
        (["RUN", "RUN", "--tolerance", "10"], "--tolerance: '10' is over 100%: write 10% for a percentage"),
        (["RUN", "RUN", "--tolerance=-5%"], "--tolerance: '-5%' is not a share"),
        (["RUN"], "the following arguments are required: new (see loadtest compare --help)"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    runs: dict[str, Path],
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    says: str,
) -> None:
    monkeypatch.chdir(workdir)
    argv = ["compare", *(str(runs["fast"]) if a == "RUN" else a for a in args)]
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    [line] = err.splitlines()
    assert line.startswith("loadtest compare: error: ") and says in line
    assert not (workdir / "compare.html").exists()


def test_bad_input_from_the_shell_has_no_traceback(compare_commands: Commands) -> None:
    _, shells = compare_commands
    done = shells["missing"].done
    assert done.returncode == 2
    assert done.stderr == (
        "loadtest compare: error: nope.json does not exist: pass a run's summary.json or its folder "
        "(reports/RUN-ID)\n"
    )


def with_counts(ok: int, failed: int, **stats: float | None) -> dict[str, Any]:
    metric = {"p50": 100.0, "p95": 200.0, "p99": 300.0, **stats}
    return {
        "run": {"duration_s": 10},
        "metrics": {"ttft_ms": dict(metric), "turn_ms": dict(metric), "itl_ms": {}},
        "counts": {"turns": ok + failed, "turns_ok": ok, "turns_failed": failed},
    }


@pytest.mark.parametrize(
    ("baseline", "new", "regressed"),
    [
        (with_counts(1000, 0), with_counts(995, 5), False),  # +0.5 pp: at the floor
        (with_counts(1000, 0), with_counts(994, 6), True),  # +0.6 pp
        (with_counts(900, 100), with_counts(890, 110), False),  # 10% -> 11%: 10% of the rate
        (with_counts(900, 100), with_counts(885, 115), True),  # 10% -> 11.5%
        (with_counts(100, 0), with_counts(100, 0, p95=220.0), False),  # exactly 10% slower
        (with_counts(100, 0), with_counts(100, 0, p99=330.5), True),
        (with_counts(100, 0), with_counts(100, 0, p50=50.0, p95=100.0), False),  # faster
        (with_counts(100, 0, p90=100.0), with_counts(100, 0, p90=900.0), False),  # p90 is not judged
        (with_counts(100, 0), with_counts(0, 0, p50=None, p95=None, p99=None), True),  # no data
    ],
)
def test_regression_rule(baseline: dict[str, Any], new: dict[str, Any], regressed: bool) -> None:
    comparison = compare(baseline, new, 0.10)
    assert comparison.regressed is regressed, comparison.regressions
    assert bool(comparison.regressions) is regressed
    assert comparison.throughput.baseline == baseline["counts"]["turns_ok"] / 10
    assert DELTA_HEAD in render_markdown(comparison, baseline, new)


@pytest.mark.parametrize(
    ("text", "value"),
    [("10%", 0.1), ("0.1", 0.1), (" 2.5% ", 0.025), ("0", 0.0), ("1", 1.0), ("150%", 1.5)],
)
def test_tolerance_forms(text: str, value: float) -> None:
    assert parse_tolerance(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "%", "ten", "10 percent", "1.5", "-1%"])
def test_bad_tolerances(text: str) -> None:
    with pytest.raises(ConfigError, match="--tolerance"):
        parse_tolerance(text)


# --- every metric and statistic of the registry reaches the comparison --------------------------------


def test_the_comparison_covers_each_compared_metric_and_table_statistic() -> None:
    fast, slow = run_summary("fast", 20.0), run_summary("slow", 200.0)
    comparison = compare(fast, slow, 0.10)
    assert [(d.metric, d.stat) for d in comparison.latency] == [
        (m.key, s.key) for m in catalog.COMPARED_METRICS for s in catalog.TABLE_STATS
    ]
    for d in comparison.latency:
        metric = catalog.METRIC_BY_KEY[d.metric]
        assert d.gated is (metric.gated and d.stat in {s.key for s in catalog.BREAKDOWN_STATS})
        assert d.baseline == fast["metrics"][metric.summary_key][d.stat]
        assert d.new is not None
    markdown = render_markdown(comparison, fast, slow)
    rows = {row.split(" | ")[0].lstrip("| "): row for row in markdown.splitlines() if row.startswith("| ")}
    for m in catalog.COMPARED_METRICS:
        for s in catalog.TABLE_STATS:
            row = rows[f"{m.label} {s.label} ({m.unit})"]
            assert row.endswith("| ❌ |" if m.gated and s in catalog.BREAKDOWN_STATS else "|  |"), row


def test_a_metric_neither_run_has_is_left_out_and_a_unit_other_than_ms_is_named() -> None:
    fast, slow = run_summary("fast", 20.0), run_summary("slow", 200.0)
    no_tls = {k: v for k, v in slow["metrics"].items() if k != catalog.TLS.summary_key}
    both_without: Summary = {**slow, "metrics": no_tls}
    markdown = render_markdown(compare(both_without, both_without, 0.1), both_without, both_without)
    assert f"| {catalog.TLS.label} p50" not in markdown
    assert f"| {catalog.CONNECT.label} p50 (ms) |" in markdown
    assert f"| {catalog.OUTPUT_TPS.label} p50 (tokens/s) |" in markdown
    # One run has it: shown, the other side a dash.
    markdown = render_markdown(compare(fast, both_without, 0.1), fast, both_without)
    assert f"| {catalog.TLS.label} p50 (ms) |" in markdown


def test_the_rule_names_what_is_judged_and_what_is_only_shown() -> None:
    text = rule(0.1)
    judged = text.split(" are shown, not judged")[0].rsplit(". ", 1)
    for m in catalog.COMPARED_METRICS:
        assert m.label.lower() in (judged[0] if m.gated else judged[1]).lower()
    for s in catalog.TABLE_STATS:
        assert s.label in (judged[0] if s in catalog.BREAKDOWN_STATS else judged[1])


def test_an_error_rate_rise_is_judged_from_the_counts() -> None:
    baseline = run_summary("fast", 20.0)
    counts = baseline["counts"]
    new: Summary = {**baseline, "counts": {**counts, "turns": TURNS + 3, "turns_failed": 3}}
    comparison = compare(baseline, new, 0.10)
    assert comparison.error_rate.baseline == 0.0
    assert comparison.error_rate.new == pytest.approx(3 / (TURNS + 3))
    assert comparison.regressions == [
        "error_rate rose from 0.00% to 1.48% (+1.48 pp, more than the 0.50 pp allowed)"
    ]
    assert comparison.throughput.baseline == comparison.throughput.new == TURNS / 10


@pytest.mark.parametrize("text", ["0.5", "50%", " 50% "])
def test_the_tolerance_reads_as_a_percentage_whatever_form_it_took(text: str) -> None:
    fast, slow = run_summary("fast", 20.0), run_summary("slow", 200.0)
    same = compare(slow, slow, parse_tolerance(text))
    assert headline(same) == "no regression beyond 50%"
    heading = render_markdown(same, slow, slow).splitlines()[0]
    assert heading == "## ✅ Load test comparison: no regression beyond 50%"
    worse = compare(fast, slow, parse_tolerance(text))
    assert headline(worse) == "regression beyond 50%"
    heading = render_markdown(worse, fast, slow).splitlines()[0]
    assert heading == "## ❌ Load test comparison: regression beyond 50%"
