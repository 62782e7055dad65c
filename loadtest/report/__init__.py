"""Run output: summary.json first, then the files rendered from it."""

from __future__ import annotations

from loadtest.report.summary import SCHEMA, build_summary, console_lines, write_run

__all__ = ["SCHEMA", "build_summary", "console_lines", "write_run"]
