"""`loadtest compare`: two real runs (TTFT 20 ms and 200 ms), their deltas, verdict and exit codes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from loadtest.cli import main
from loadtest.errors import ConfigError
from loadtest.report.compare import compare, parse_tolerance, render_markdown
from tests.browser import chromium, load, loaded_references, require_chromium
from tests.conftest import LOCUST, LOCUSTFILE, locust_env

LOADTEST = str(Path(sys.executable).with_name("loadtest"))
MOCK = "--itl uniform:1ms:3ms --chunks uniform:2:6"
DELTA_HEAD = "| metric | baseline | new | Δ | Δ % | |"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Run folders of two short runs made at the same time: TTFT 20 ms ("fast") and 200 ms ("slow")."""
    base = tmp_path_factory.mktemp("runs")
    procs = {}
    for name, ttft in (("fast", "20ms"), ("slow", "200ms")):
        cmd = [
            LOCUST,
            "-f",
            str(LOCUSTFILE),
            "--headless",
            "--only-summary",
            "--report-dir",
            str(base / name),
        ]
        cmd += ["-u", "4", "-r", "4", "-t", "2s", "--think-time", "0", "--stop-timeout", "30"]
        cmd += ["--mock-options", f"--ttft const:{ttft} {MOCK}"]
        procs[name] = subprocess.Popen(
            cmd,
            cwd=base,
            env=locust_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    folders = {}
    for name, proc in procs.items():
        output, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, output[-3000:]
        folders[name] = (base / name / "latest").resolve()
    return folders


def summary(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads((folder / "summary.json").read_bytes())
    return data


def loadtest(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LOADTEST, *args], cwd=cwd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


def test_a_slower_first_token_is_a_regression(runs: dict[str, Path], tmp_path: Path) -> None:
    done = loadtest(
        "compare", str(runs["fast"]), str(runs["slow"] / "summary.json"), "--markdown", "pr.md", cwd=tmp_path
    )
    assert done.returncode == 4, done.stderr
    assert done.stdout.split() == ["compare.html", "pr.md"]
    [line] = done.stderr.splitlines()
    assert line.startswith("loadtest compare: regression beyond 10%: ttft.p50 +")
    assert "ttft.p95" in line and "ttft.p99" in line
    markdown = (tmp_path / "pr.md").read_text(encoding="utf-8")
    assert markdown.startswith("## ❌ Load test comparison: regression beyond 10%")
    assert DELTA_HEAD in markdown
    rows = {row.split(" | ")[0].lstrip("| "): row for row in markdown.splitlines() if row.startswith("| ")}
    for label in ("TTFT p50 (ms)", "TTFT p99.9 (ms)", "turn latency max (ms)", "inter-chunk gap p95 (ms)"):
        assert label in rows
    assert rows["TTFT p50 (ms)"].endswith("| ❌ |")
    assert rows["TTFT p90 (ms)"].endswith("|  |")  # shown, not judged
    assert "error rate" in rows and "throughput (turns/s)" in rows
    html = (tmp_path / "compare.html").read_text(encoding="utf-8")
    assert "REGRESSION" in html and loaded_references(html) == []


def test_a_run_against_itself_is_no_regression(runs: dict[str, Path], tmp_path: Path) -> None:
    done = loadtest("compare", str(runs["slow"]), str(runs["slow"]), "-o", "same.html", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("## ✅ Load test comparison: no regression beyond 10%")
    assert DELTA_HEAD in done.stdout and "+0.0%" in done.stdout
    assert done.stderr.strip() == "loadtest compare: no regression beyond 10% (same.html)"
    assert (tmp_path / "same.html").exists()


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
def workdir(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "not-json.json").write_text("{", encoding="utf-8")
    (tmp_path / "other.json").write_text('{"name": "something else"}', encoding="utf-8")
    (tmp_path / "empty").mkdir()
    yield tmp_path


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["missing.json", "RUN"], "missing.json does not exist: pass a run's summary.json or its folder"),
        (["empty", "RUN"], "no summary.json in empty"),
        (["not-json.json", "RUN"], "not-json.json is not JSON"),
        (["other.json", "RUN"], 'other.json is not a loadtest summary (no "schema"'),
        (
            ["RUN", "RUN", "--tolerance", "ten"],
            "--tolerance 'ten': not a tolerance: write a percentage (10%)",
        ),
        (["RUN", "RUN", "--tolerance", "10"], "--tolerance '10': over 1: write 10% for a percentage"),
        (["RUN", "RUN", "--tolerance=-5%"], "--tolerance '-5%': not a tolerance"),
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


def test_bad_input_from_the_shell_has_no_traceback(tmp_path: Path) -> None:
    done = loadtest("compare", "nope.json", "nope2.json", cwd=tmp_path)
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
    ("text", "value"), [("10%", 0.1), ("0.1", 0.1), (" 2.5% ", 0.025), ("0", 0.0), ("1", 1.0)]
)
def test_tolerance_forms(text: str, value: float) -> None:
    assert parse_tolerance(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "%", "ten", "10 percent", "1.5", "-1%"])
def test_bad_tolerances(text: str) -> None:
    with pytest.raises(ConfigError, match="--tolerance"):
        parse_tolerance(text)
