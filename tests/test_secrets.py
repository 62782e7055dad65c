"""The API key never appears in anything a run prints or writes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import FAST, NLX, LocustRun, Mock, locust_env

SECRET = "sk-nlx-4f1c9e8a7b6d5c4b3a2f1e0d"


def every_file(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


@pytest.mark.parametrize("server_key", [SECRET, "another-key"], ids=["accepted", "rejected"])
def test_the_key_is_absent_from_every_output_of_a_run(
    mock_server: Callable[..., Mock], run_locust: Callable[..., LocustRun], server_key: str
) -> None:
    mock = mock_server(*FAST, api_key=server_key)
    run = run_locust(
        f"--host {mock.url} {NLX} -u 3 -r 3 -t 2s --think-time 0 --turn-log --loglevel DEBUG",
        "--threshold", "ttft.p99<10s",
        env=locust_env(NLX_API_KEY=SECRET),
    )  # fmt: skip
    files = every_file(run.report_dir)
    names = {p.name for p in files}
    assert {"summary.json", "report.html", "junit.xml", "summary.md"} <= names
    assert any(name.startswith("turns-") for name in names)
    assert SECRET not in run.stdout and SECRET not in run.stderr
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path
    summary = run.summary()
    assert summary["counts"]["turns"] > 0  # the run did talk to the server, with the key
    if server_key != SECRET:
        assert summary["errors"][0]["kind"] == "http_401"
