from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from loadtest.errors import ConfigError
from loadtest.stages import Stage, parse_stages
from tests.conftest import LOCUST, ROOT, TEST_KEY, Mock, locust_env


def test_parse_stages() -> None:
    assert parse_stages("30s:10, 2m:50,1s:0") == [Stage(30, 10), Stage(120, 50), Stage(1, 0)]


@pytest.mark.parametrize("text", ["", "10", "30s", "x:10", "30s:many", "0s:5", "10s:-1"])
def test_bad_stages_name_the_option(text: str) -> None:
    with pytest.raises(ConfigError, match="--stages"):
        parse_stages(text)


def test_a_ramp_through_stages_ends_by_itself(mock_server: Callable[..., Mock], tmp_path: Path) -> None:
    mock = mock_server("--ttft", "const:20ms", "--itl", "const:2ms", "--chunks", "const:3")
    report_dir = tmp_path / "reports"
    proc = subprocess.run(
        [LOCUST, "-f", str(ROOT / "locustfiles" / "ramp.py"), "--headless", "--only-summary",
         "--host", mock.url, "--nlx-deployment", "d", "--nlx-channel", "web-en-US", "--think-time", "0.1",
         "--stages", "2s:3,2s:6,1s:0", "--report-dir", str(report_dir)],
        env=locust_env(NLX_API_KEY=TEST_KEY), cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = orjson.loads((report_dir / "latest" / "summary.json").read_bytes())
    assert summary["run"]["users"] == 6
    assert 4 <= summary["run"]["duration_s"] <= 12
    users = [p["users"] for p in summary["timeline"]["points"] if p["users"] is not None]
    assert max(users) >= 4  # the time series saw the ramp (sampled once a second)


def test_stages_missing_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [LOCUST, "-f", str(ROOT / "locustfiles" / "ramp.py"), "--headless", "--report-dir", str(tmp_path)],
        env=locust_env(), cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "loadtest: error: this locustfile ramps by stages: pass --stages" in proc.stderr
    assert "Traceback" not in proc.stderr
