from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from loadtest.errors import ConfigError
from loadtest.stages import Stage, parse_stages
from tests.conftest import (
    ROOT,
    TEST_KEY,
    Finish,
    LocustRun,
    background,
    locust_env,
    start_background_mock,
    start_locust,
    stopping_mock,
)
from tests.test_settings import parse_options


def test_parse_stages() -> None:
    assert parse_stages("30s:10, 2m:50,1s:0") == [Stage(30, 10), Stage(120, 50), Stage(1, 0)]


@pytest.mark.parametrize("text", ["", "10", "30s", "x:10", "30s:many", "0s:5", "10s:-1"])
def test_bad_stages_name_the_option(text: str) -> None:
    with pytest.raises(ConfigError, match="--stages"):
        parse_stages(text)


@background
def ramp_run(folder: Path) -> Finish:
    """locustfiles/ramp.py through three stages: up to 3 users, up to 6, down to 0, then the end."""
    mock = start_background_mock("--ttft", "const:20ms", "--itl", "const:2ms", "--chunks", "const:3")
    args = ["--host", mock.url, "--nlx-deployment", "d", "--nlx-channel", "web-en-US", "--think-time", "0.1"]
    run = start_locust(
        [*args, "--stages", "2s:3,2s:6,1s:0"],
        folder,
        env=locust_env(NLX_API_KEY=TEST_KEY),
        locustfile=ROOT / "locustfiles" / "ramp.py",
    )

    return stopping_mock(mock, run)


def test_a_ramp_through_stages_ends_by_itself(ramp_run: LocustRun) -> None:
    report_dir = ramp_run.report_dir
    assert ramp_run.returncode == 0, ramp_run.stderr[-3000:]
    summary = orjson.loads((report_dir / "latest" / "summary.json").read_bytes())
    assert summary["run"]["users"] == 6
    assert 4 <= summary["run"]["duration_s"] <= 12
    users = [p["users"] for p in summary["timeline"]["points"] if p["users"] is not None]
    assert max(users) >= 4  # the time series saw the ramp (sampled once a second)


def ramp(*args: str) -> Any:
    """A StagesShape as Locust runs it, with the options `locust ARGS` would have parsed."""
    from loadtest.shapes import StagesShape

    class Ramp(StagesShape):
        pass

    shape = Ramp()
    shape.runner = SimpleNamespace(environment=SimpleNamespace(parsed_options=parse_options(*args)))
    return shape


def test_the_shape_ramps_through_the_stages_of_the_option() -> None:
    shape = ramp("--stages", "1m:10,5m:50")
    assert shape.stages() == (Stage(60, 10), Stage(300, 50))
    assert shape.tick() == (10, 1.0)  # at the start: 10 users within a minute, at least one a second
    shape.start_time -= 70  # ten seconds into the second stage: 40 more users over 300 s
    assert shape.tick() == (50, 1.0)
    shape.start_time -= 300
    assert shape.tick() is None  # after the last stage the run ends


def test_stages_missing_is_one_line() -> None:
    with pytest.raises(
        ConfigError, match="^this locustfile ramps by stages: pass --stages, e.g. --stages 1m:10"
    ):
        ramp().stages()


def test_bad_stages_of_the_shape_name_the_option() -> None:
    with pytest.raises(ConfigError, match="^--stages '1m:ten': stage '1m:ten' is not DURATION:USERS"):
        ramp("--stages", "1m:ten").stages()
