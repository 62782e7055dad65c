"""The network between the generator and the server, through tests/netproxy.py: what a delay, a narrow
link, a reset and a black hole do to what loadtest measures and reports."""

from __future__ import annotations

import os
import shlex
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from loadtest.client import TurnResult, make_client, stream_turn
from loadtest.mock.launch import start_mock
from loadtest.nlx import request_body
from tests.conftest import (
    KEYED,
    NLX,
    TEST_KEY,
    Finish,
    LocustRun,
    Mock,
    background,
    start_background_mock,
    start_locust,
)
from tests.harness import Run, turns_at_least, wait_for
from tests.netproxy import Cut, NetProxy, mid_event, net_proxy

# A short constant TTFT, and two chunks 5 ms apart: a cut in the second falls mid-stream, well after
# the client has the first.
MOCK_ARGS = ("--ttft", "const:2ms", "--itl", "const:5ms", "--chunks", "const:2")
CHAT_PATH = "/dep1/web-en-US/chat/completions"
# In the middle of the second content chunk (the first event is the role chunk).
SECOND_CHUNK = 2


@pytest.fixture(scope="module")
def mock() -> Iterator[Mock]:
    """One mock process for the module: its timing is its own, not shared with the test's interpreter."""
    process = start_mock(list(MOCK_ARGS), env=dict(os.environ, NLX_API_KEY=TEST_KEY))
    try:
        yield Mock(process)
    finally:
        process.process.kill()
        process.stop()


def turn(client: httpx.Client, url: str, *, idle_timeout: float | None = None) -> TurnResult:
    body = request_body("nlx", [{"role": "user", "content": "hello"}])
    return stream_turn(client, url + CHAT_PATH, body, api_key=TEST_KEY, idle_timeout=idle_timeout)


def ttft_ms(client: httpx.Client, proxy: NetProxy) -> float:
    result = turn(client, proxy.url)
    assert result.ok and result.ttft_ns is not None, result
    return result.ttft_ns / 1e6


@pytest.mark.timing
def test_ttft_is_the_servers_plus_the_round_trip(mock: Mock) -> None:
    """TTFT as measured = the mock's server-side TTFT + the injected round trip + what loopback and
    the processes add, the same to 1 ms at p50 whatever the round trip. Turns through a near and a
    far proxy alternate, so both see the same load on the machine (the tests share two CPUs)."""
    one_way_s = {"near": 0.001, "far": 0.006}
    measured: dict[str, list[float]] = {"near": [], "far": []}
    httpx.post(mock.url + "/_mock/reset", timeout=10)
    with (
        net_proxy(mock.url, delay_s=one_way_s["near"]) as near,
        net_proxy(mock.url, delay_s=one_way_s["far"]) as far,
        make_client() as near_client,
        make_client() as far_client,
    ):
        for _ in range(60):
            measured["near"].append(ttft_ms(near_client, near))
            measured["far"].append(ttft_ms(far_client, far))
    server_ms = mock.stats()["ttft_ms"]
    assert server_ms["count"] == 120
    excess_ms = {
        name: statistics.median(ttfts) - server_ms["p50"] - 2e3 * one_way_s[name]
        for name, ttfts in measured.items()
    }
    # What the generator and loopback add is small, and no part of the round trip is counted twice
    # or left out.
    assert all(0 <= excess < 5 for excess in excess_ms.values()), excess_ms
    assert abs(excess_ms["far"] - excess_ms["near"]) < 1.0, excess_ms


def test_a_narrow_link_stretches_the_turn_to_its_bytes(mock: Mock) -> None:
    bytes_per_s = 4000
    with net_proxy(mock.url, bytes_per_s=bytes_per_s) as proxy, make_client() as client:
        result = turn(client, proxy.url)
    assert result.ok and result.done, result
    # The last event is the end of what came down but the chunked encoding's final 5 bytes.
    transfer_s = (proxy.bytes_down - 5) / bytes_per_s
    assert transfer_s > 0.2
    assert transfer_s <= result.latency_ns / 1e9 < transfer_s + 0.5


def test_a_black_holed_stream_ends_as_idle_timeout(mock: Mock) -> None:
    idle_timeout_s = 0.3
    cut = Cut("blackhole", mid_event(SECOND_CHUNK))
    with net_proxy(mock.url, cut=cut) as proxy:
        with make_client() as client:
            result = turn(client, proxy.url, idle_timeout=idle_timeout_s)
        # The connection stayed open through the silence: the generator gave up on it, not the proxy.
        assert wait_for(lambda: proxy.closed_by_client == 1, 10)
    assert proxy.cuts == 1
    assert result.kind == "idle_timeout" and result.chunks == 1, result
    assert result.t_last_event_ns is not None
    silence_s = (result.t_end_ns - result.t_last_event_ns) / 1e9
    assert idle_timeout_s <= silence_s < idle_timeout_s + 0.5, silence_s


def turn_number(logged: dict[str, Any]) -> int:
    return int(logged["turn"])


def test_a_reset_mid_event_is_a_disconnect_and_its_reply_never_history(
    mock: Mock, in_process: Any, tmp_path: Path
) -> None:
    scenarios = tmp_path / "scenarios.yaml"
    scenarios.write_text("scenarios:\n  - name: three\n    turns: [one, two, three]\n", encoding="utf-8")
    cut = Cut("reset", mid_event(SECOND_CHUNK), times=2)
    with net_proxy(mock.url, cut=cut) as proxy:
        run: Run = in_process(
            f"--host {proxy.url} {NLX} -u 2 -r 10 --think-time 0 --on-turn-error continue --turn-log",
            "--conversations",
            str(scenarios),
            until=lambda env: turns_at_least(8)(env) and proxy.cuts == 2,
            env=KEYED,
        )
    summary = run.summary()
    assert [(e["kind"], e["count"]) for e in summary["errors"]] == [("disconnect", 2)], summary["errors"]
    [log] = (run.report_dir / summary["run"]["id"]).glob("turns-*.jsonl")
    turns = [orjson.loads(line) for line in log.read_bytes().splitlines()]
    reset = [t for t in turns if t["kind"] == "disconnect"]
    # The client had the first chunk whole and half of the second when the reset came.
    assert len(reset) == 2 and all(t["chunks"] == 1 for t in reset), reset
    for conversation_id in {t["conversation_id"] for t in reset}:
        logged = sorted((t for t in turns if t["conversation_id"] == conversation_id), key=turn_number)
        served = mock.conversation(conversation_id)["turns"]
        for i, request in enumerate(served):
            # Each request carries the replies of the turns before it that succeeded, and nothing
            # of one that was cut, whole or in part.
            history = [m["content"] for m in request["messages"] if m["role"] == "assistant"]
            assert history == [served[k]["reply"] for k in range(i) if logged[k]["ok"]], (i, logged)


# --- a real run: a black hole never holds the run past --stop-timeout --------------------------------

STOP_TIMEOUT_S = 1
RUN_TIME_S = 1


@background
def black_hole_run(folder: Path) -> Finish:
    """Every stream black-holed after its first chunk, with an idle timeout far past the run's end."""
    mock = start_background_mock(*MOCK_ARGS)
    proxy = NetProxy(mock.url, cut=Cut("blackhole", mid_event(SECOND_CHUNK)))
    proxy.start()
    options = (
        f"--host {proxy.url} {NLX} -u 2 -r 2 -t {RUN_TIME_S}s --think-time 0 --idle-timeout 120 "
        f"--stop-timeout {STOP_TIMEOUT_S}"
    )
    run = start_locust(shlex.split(options), folder, env=KEYED)

    def finish() -> tuple[LocustRun, NetProxy]:
        try:
            done = run()
            # The generator's exit closed the black-holed connections.
            assert wait_for(lambda: proxy.closed_by_client == proxy.cuts, 10)
            return done, proxy
        finally:
            proxy.stop()
            mock.process.stop()

    return finish


def test_a_black_hole_never_holds_the_run_past_its_stop_timeout(
    black_hole_run: tuple[LocustRun, NetProxy],
) -> None:
    run, proxy = black_hole_run
    assert "Traceback" not in run.output, run.output[-3000:]
    summary = run.summary()
    assert summary["run"]["stopped_by"] == "time"
    # From the test's start to once the users were stopped: the stop gave the stuck turns their
    # --stop-timeout and no more (their idle timeout was minutes away).
    lasted = summary["run"]["duration_s"]
    assert RUN_TIME_S + STOP_TIMEOUT_S - 0.3 <= lasted < RUN_TIME_S + STOP_TIMEOUT_S + 1.5, summary["run"]
    counts = summary["counts"]
    assert proxy.cuts == 2 and counts["turns_cut"] == 2, (proxy.cuts, counts)
    assert counts["turns_failed"] == 0 and summary["errors"] == []
