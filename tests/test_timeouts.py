"""Connect, first-byte and idle timeouts against real sockets; failed turns continue or stop (in-process)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from loadtest.client import make_client, stream_turn
from loadtest.nlx import completions_url, request_body
from loadtest.options import TRANSPORTS
from tests.conftest import NLX, TEST_KEY, Mock
from tests.harness import Run, turns_at_least

BODY = request_body("c1", [{"role": "user", "content": "hi"}])


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections, reads the request, never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    done = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    done.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_no_response_headers_is_a_first_byte_timeout(silent_server: str, transport: str) -> None:
    with make_client(read_timeout=30, transport=transport) as client:
        url = completions_url(silent_server, "d", "web-en-US")
        result = stream_turn(client, url, BODY, api_key=TEST_KEY, first_byte_timeout=0.3, idle_timeout=30)
    assert not result.ok and result.kind == "first_byte_timeout"
    assert result.t_headers_ns is None and "0.3 s" in result.detail


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_stream_that_goes_quiet_is_an_idle_timeout(
    mock_server: Callable[..., Mock], transport: str
) -> None:
    # The mock sends its role chunk at once, then waits 2 s for the first content.
    mock = mock_server("--ttft", "const:2s")
    with make_client(read_timeout=30, transport=transport) as client:
        url = completions_url(mock.url, "d", "web-en-US")
        result = stream_turn(client, url, BODY, api_key=TEST_KEY, first_byte_timeout=0.5, idle_timeout=0.3)
    assert not result.ok and result.kind == "idle_timeout"
    assert result.t_headers_ns is not None and result.t_first_event_ns is not None
    assert result.protocol.get("role_only_chunks") == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_unreachable_host_is_a_connect_failure(transport: str) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with make_client(connect_timeout=2, transport=transport) as client:
        result = stream_turn(
            client, f"http://127.0.0.1:{port}/d/web-en-US/chat/completions", BODY, api_key="k"
        )
    assert not result.ok and result.kind == "connect"


def three_turns(tmp_path: Path) -> str:
    path = tmp_path / "three.yaml"
    path.write_text("scenarios:\n  - name: three\n    turns: [one, two, three]\n", encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(("policy", "turns_per_conversation"), [("stop", 1), ("continue", 3)])
def test_on_turn_error_stops_or_continues_the_conversation(
    mock_server: Callable[..., Mock],
    in_process: Callable[..., Run],
    tmp_path: Path,
    policy: str,
    turns_per_conversation: int,
) -> None:
    mock = mock_server("--ttft", "const:1s")
    run = in_process(
        f"--host {mock.url} {NLX} -u 2 -r 2 --think-time 0 --stop-timeout 30 --idle-timeout 0.1",
        "--on-turn-error", policy, "--conversations", three_turns(tmp_path),
        until=turns_at_least(6), env={"NLX_API_KEY": TEST_KEY},
    )  # fmt: skip
    assert run.exit_code == 1, run.output[-3000:]
    counts = run.summary()["counts"]
    assert counts["turns_ok"] == 0 and counts["turns_failed"] == counts["turns"]
    assert counts["conversations_failed"] == counts["conversations_started"] > 0
    assert counts["turns"] == turns_per_conversation * counts["conversations_started"]
    [error] = run.summary()["errors"]
    assert error["kind"] == "idle_timeout"


def test_a_stalled_stream_does_not_hold_the_run_past_its_stop_timeout(
    mock_server: Callable[..., Mock], in_process: Callable[..., Run]
) -> None:
    mock = mock_server("--ttft", "const:600s")
    started = time.monotonic()
    run = in_process(
        f"--host {mock.url} {NLX} -u 3 -r 3 --think-time 0 --stop-timeout 1",
        until=lambda _: mock.stats()["turns"] == 3,  # every user waits on its stream
        env={"NLX_API_KEY": TEST_KEY},
    )
    assert time.monotonic() - started < 60  # a hung run would wait for the 600 s stream
    counts = run.summary()["counts"]
    assert counts["turns_cut"] == 3 and counts["turns"] == 3
