"""The API key never appears in anything a run prints or writes.

The standard run sends a realistic key, at DEBUG log level with a turn log, and the mock turns a
fifth of its requests away with 401, so both the accepted and the rejected path are in its outputs.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import STANDARD_KEY, StandardRun


def every_file(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def test_the_key_is_absent_from_every_output_of_a_run(standard_run: StandardRun) -> None:
    run = standard_run
    files = every_file(run.report_dir)
    names = {p.name for p in files}
    assert {"summary.json", "report.html", "junit.xml", "summary.md", run.step_summary.name} <= names
    assert any(name.startswith("turns-") for name in names)
    assert "DEBUG" in run.output  # the most talkative log level was on
    assert STANDARD_KEY not in run.stdout and STANDARD_KEY not in run.stderr
    for path in files:
        assert STANDARD_KEY.encode() not in path.read_bytes(), path
    summary = run.summary()
    assert summary["counts"]["turns_ok"] > 0  # the server accepted the key
    assert run.mock_stats["status"]["401"] > 0  # and turned some requests away
    assert "http_401" in {error["kind"] for error in summary["errors"]}
