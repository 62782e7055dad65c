"""bench/mock_stack.py's floor server: its bytes are the mock's, and a real one serves the bench's own
client (streams with all their events, the control routes answered)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import orjson
import pytest

from loadtest.mock.stream import Encoder
from tests.harness import ROOT


def _load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mock_stack", ROOT / "bench" / "mock_stack.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered first: its dataclasses look their module up while the class is made.
    sys.modules["mock_stack"] = module
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


def test_floor_frames_are_the_mocks_bytes() -> None:
    first, frames = bench.floor_frames()
    assert len(frames) == bench.CHUNKS
    # The chunks' common fields, from the role event the floor wrote.
    role_event = first.split(b"\r\n\r\n", 1)[1].split(b"\r\n", 1)[1]
    chunk = orjson.loads(role_event.removeprefix(b"data: "))
    base = {key: chunk[key] for key in ("id", "object", "created", "model", "system_fingerprint")}
    encoder = Encoder(base)
    pieces = [
        orjson.loads(bench_frame.split(b"\r\n")[1][6:])["choices"][0]["delta"]["content"]
        for bench_frame in frames
    ]
    mock_frames = encoder.frames(pieces, 0)
    ending = encoder({}, "stop") + b"data: [DONE]\n\n"
    mock_frames[-1] += b"%x\r\n%s\r\n0\r\n\r\n" % (len(ending), ending)
    assert frames == mock_frames
    assert first.endswith(b"\r\n\r\n" + bench.http_chunk(encoder({"role": "assistant", "content": ""}, None)))


def test_percentiles_as_hdr_histogram_picks_them() -> None:
    counts = {0: 50, 3: 40, 12: 9, 250: 1}  # in 10-µs steps
    summary = bench.percentiles_ms(counts, 10)
    assert summary == {"count": 100, "p50": 0.0, "p90": 0.03, "p99": 0.12, "max": 2.5}
    assert bench.percentiles_ms({}, 10)["p99"] == 0.0


@pytest.fixture
def floor() -> Iterator[Any]:
    child = bench.start_child(
        "floor", [sys.executable, str(bench.__file__), "--serve-floor"], None, ROOT, bench.READY
    )
    yield child
    child.stop()


def test_floor_streams_to_the_bench_client_and_answers_its_control_routes(floor: Any) -> None:
    result = asyncio.run(bench.drive(floor, 1, 0.6, 0.3))
    # A stream is counted only with every event, each of its chunks on time to the client.
    assert result.streams_per_s > 0
    assert result.failures == 0
    assert result.srv_p99 < 50

    async def controls() -> tuple[dict[str, Any], ...]:
        host, port = floor.url.removeprefix("http://").rsplit(":", 1)
        before = await bench.control(host, int(port), "GET", "/_mock/stats")
        reset = await bench.control(host, int(port), "POST", "/_mock/reset")
        after = await bench.control(host, int(port), "GET", "/_mock/stats")
        return before, reset, after

    before, reset, after = asyncio.run(controls())
    # The content chunks written since the drive's reset are counted (a whole stream at least); none after.
    assert before["schedule_error_ms"]["count"] >= bench.CHUNKS
    assert reset == {"reset": True}
    assert after["schedule_error_ms"]["count"] == 0
