"""`loadtest calibrate`: a real run against the mock, the verdict, and bad arguments."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest import cli
from loadtest.calibrate import Calibration, ClientSide, Options, Percentiles, Placement, Run, report_lines

LOADTEST = str(Path(sys.executable).with_name("loadtest"))
NUMBER = r"-?\d+\.\d\d"


def calibrate(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LOADTEST, "calibrate", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.timing
def test_a_real_run_prints_the_added_latency_and_exits_0() -> None:
    done = calibrate("--users", "10", "--seconds", "3")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert re.search(r"^turns: [1-9]\d* ok, 0 failed", out, re.M), out
    for label in ("TTFT generator", "TTFT mock", "TTFT added", "turn generator", "turn mock", "turn added"):
        assert re.search(rf"^{label} +{NUMBER} +{NUMBER} +{NUMBER}$", out, re.M), out
    assert re.search(r"^generator: \d+% of one core, RSS \d+\.\d MB", out, re.M), out
    assert re.search(
        r"^mock: \d+% of one core( \(busy by design: it polls before each deadline\))?, "
        r"schedule error p99 \d+\.\d\d ms$",
        out,
        re.M,
    ), out
    assert re.search(
        rf"^the generator adds {NUMBER[:-2]} ms at p95 at 10 users: fine$", out.splitlines()[-1]
    ), out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--users", "0"], "--users 0: needs at least 1 user"),
        (["--seconds", "0"], "--seconds 0: needs at least 1 second"),
        (["--users", "many"], "argument --users: invalid int value: 'many'"),
        (["--ttft", "soon"], "--ttft: "),
        (["--chunks", "const:-1"], "--chunks: "),
        (["--max-added-ms", "-1"], "--max-added-ms -1: must be 0 or more milliseconds"),
        (["-f", "no/such/locustfile.py"], "-f no/such/locustfile.py: no such locustfile"),
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # `loadtest calibrate ARGS` in this process: the checks come before any process starts.
    try:
        code = cli.main(["calibrate", *args])
    except SystemExit as stopped:  # argparse's own errors
        code = int(stopped.code or 0)
    assert code == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("loadtest calibrate: error: ")
    assert message in lines[0]


def _calibration(added_p95_ms: float, *, max_added_ms: float = 5.0) -> Calibration:
    server = Percentiles(50.0, 50.5, 51.0)
    ours = Percentiles(50.5, 50.5 + added_p95_ms, 53.0)
    run = Run(
        returncode=0,
        measured_s=10.0,
        generator_cpu=0.5,
        mock_cpu=0.3,
        other_cpu=0.0,
        mock_other_cpu=0.0,
        rss_start_bytes=50 << 20,
        rss_end_bytes=60 << 20,
        peak_rss_bytes=60 << 20,
        server_ttft=server,
        server_turn=server,
        server_turns=1000,
        schedule_error_p99_ms=0.2,
        output="",
    )
    client = ClientSide(ttft=ours, turn=ours, turns_ok=1000, turns_failed=0)
    return Calibration(Options(users=100, max_added_ms=max_added_ms), Placement(0, 1), run, client)


def test_the_verdict_names_the_added_p95_and_the_remedy() -> None:
    fine = _calibration(0.8)
    assert not fine.too_much
    assert report_lines(fine)[-1] == "the generator adds 0.8 ms at p95 at 100 users: fine"
    too_much = _calibration(14.0)
    assert too_much.too_much
    assert report_lines(too_much)[-1] == (
        "the generator adds 14.0 ms at p95 at 100 users: "
        "too much — use --processes or fewer users per process"
    )
    assert "turns: 1000 ok, 0 failed, 100.0 per second" in report_lines(fine)
