"""The NLX mock server, spoken to over HTTP with httpx: in a thread of this process (tests/mockthread.py),
and as a real child process where only one shows it (timing, signals, the command line)."""

from __future__ import annotations

import contextlib
import gc
import os
import random
import select
import signal
import socket
import subprocess
import sys
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from gevent import monkey
from hdrh.histogram import HdrHistogram

from loadtest.client import make_client, stream_turn
from loadtest.errors import ConfigError, LoadtestError
from loadtest.mock import parse_config, parse_count_dist, parse_duration_dist
from loadtest.mock.bot import BotError, load_bot
from loadtest.mock.command import main as mock_main
from loadtest.mock.config import DEFAULT_MAX_CONVERSATIONS
from loadtest.mock.contract import API_KEY_ENV, DEFAULT_API_KEY, ERROR_PREFIX, READY_PREFIX
from loadtest.mock.launch import start_mock
from loadtest.mock.state import MockState, Turn, conversation_json
from loadtest.mock.text import LINE_SEPARATOR, POOL_SIZE, reply_pieces, reply_text, split_text
from tests.conftest import Finish, LocustRun, background, locust_env, start_child, start_locust
from tests.mockthread import KEY as THREAD_KEY
from tests.mockthread import ThreadedMock, mock_in_thread

ROOT = Path(__file__).resolve().parents[1]
KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}
CHANNEL_PATH = "/dep-1/chan-en-US/chat/completions"
QUICK = ("--ttft", "1ms", "--itl", "1ms")


# --- the mock in a child process, where only a real process shows it --------------------------


@dataclass
class RunningMock:
    """A mock server child process; `url` includes the prefix."""

    url: str
    process: subprocess.Popen[str]
    stderr: str = field(default="", init=False)

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Signal the process, wait for it, keep its stderr; return its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.wait()

    def wait(self) -> int:
        """Wait for the process to end (killed after 15 s), keep its stderr; return its exit code."""
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        _, self.stderr = self.process.communicate()
        return self.process.returncode


@contextmanager
def running_mock(*args: str, api_key: str = KEY) -> Iterator[RunningMock]:
    """Start `python -m loadtest.mock --port 0 --api-key KEY ARGS`; read its URL from the first line."""
    with running_mocks([*args], api_key=api_key) as [mock]:
        yield mock


@contextmanager
def running_mocks(
    *args: list[str], api_key: str = KEY, startup_timeout: float = 15.0
) -> Iterator[list[RunningMock]]:
    """Like `running_mock`, one mock for each list of arguments, all started before any is waited for."""
    with contextlib.ExitStack() as stack:
        processes = [stack.enter_context(spawned_mock(mock_args, api_key)) for mock_args in args]
        mocks = [
            RunningMock(url=ready_url(process, startup_timeout), process=process) for process in processes
        ]
        try:
            yield mocks
        finally:
            for mock in mocks:
                mock.stop()
        for mock in mocks:
            assert "Traceback" not in mock.stderr, mock.stderr


@contextmanager
def spawned_mock(args: list[str], api_key: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "loadtest.mock", "--port", "0", "--api-key", api_key, *args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:  # left before it was stopped: a mock that did not start
            process.kill()
            process.communicate()


def ready_url(process: subprocess.Popen[str], timeout: float) -> str:
    """The URL of the mock's ready line, or RuntimeError with what it said instead."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline() if ready else ""
    if not line.startswith(READY_PREFIX):
        process.kill()
        _, err = process.communicate()
        raise RuntimeError(f"mock did not start: stdout {line!r}, stderr {err!r}")
    return line[len(READY_PREFIX) :].strip()


def listener() -> socket.socket:
    """A socket of this process listening on a free port of 127.0.0.1: taken, for whatever tries to
    listen there."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


@contextmanager
def busy_port() -> Iterator[int]:
    with listener() as sock:
        port: int = sock.getsockname()[1]
        yield port


# --- the mock in a thread, one for the tests that only need a running mock ---------------------


@pytest.fixture(scope="module")
def mock() -> Iterator[ThreadedMock]:
    # Leaving the block fails the module's last test if the mock logged an error or a warning.
    with mock_in_thread(
        "--ttft", "const:10ms", "--itl", "const:1ms", "--chunks", "uniform:3:8", "--seed", "7", api_key=KEY
    ) as m:
        yield m


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, verify=False) as c:
        yield c


# --- a small SSE reader for the tests (split on blank lines only: U+2028 must survive) -------


@dataclass
class StreamedTurn:
    status: int
    headers: httpx.Headers
    events: list[bytes]
    times: list[float]  # arrival time of each event, seconds after the request was sent
    body: bytes = b""

    @property
    def chunks(self) -> list[dict[str, Any]]:
        return [orjson.loads(e) for e in self.events if e != b"[DONE]"]

    @property
    def contents(self) -> list[str]:
        return [c["choices"][0]["delta"]["content"] for c in self.chunks[1:] if c["choices"][0]["delta"]]

    @property
    def first_content_s(self) -> float:
        return self.times[1]


def turn(
    client: httpx.Client,
    url: str,
    body: Any,
    *,
    headers: dict[str, str] | None = None,
    path: str = CHANNEL_PATH,
) -> StreamedTurn:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    started = time.perf_counter()
    with client.stream(
        "POST", url + path, content=content, headers=AUTH if headers is None else headers
    ) as r:
        if r.status_code != 200:
            return StreamedTurn(r.status_code, r.headers, [], [], r.read())
        events: list[bytes] = []
        times: list[float] = []
        buffer = b""
        for data in r.iter_bytes():
            buffer += data
            *complete, buffer = buffer.split(b"\n\n")
            for raw in complete:
                assert raw.startswith(b"data: "), raw
                events.append(raw[len(b"data: ") :])
                times.append(time.perf_counter() - started)
        assert buffer == b""
        return StreamedTurn(200, r.headers, events, times)


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def body_for(model: str, *messages: dict[str, str]) -> dict[str, Any]:
    return {"model": model, "messages": list(messages) or [user("hello")], "stream": True}


def stats(client: httpx.Client, url: str) -> dict[str, Any]:
    response = client.get(url + "/_mock/stats")
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


def reset(client: httpx.Client, url: str) -> None:
    assert client.post(url + "/_mock/reset").status_code == 200


# --- auth and validation -----------------------------------------------------------------------

UNAUTHORIZED = {
    "error": {
        "message": "Unauthorized - Invalid Bearer Token",
        "type": "invalid_request_error",
        "code": "unauthorized",
    }
}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}, {"Authorization": f"Bearer {KEY}x"}],
    ids=["missing", "wrong", "no-bearer", "longer"],
)
def test_bad_or_missing_key_is_401(mock: ThreadedMock, client: httpx.Client, headers: dict[str, str]) -> None:
    result = turn(client, mock.url, body_for("nlx"), headers=headers)
    assert result.status == 401
    assert orjson.loads(result.body) == UNAUTHORIZED


def test_auth_is_checked_before_the_request(mock: ThreadedMock, client: httpx.Client) -> None:
    result = turn(client, mock.url, b"not json", headers={}, path="/dep/chan/chat/completions")
    assert result.status == 401


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("/dep/chan/chat/completions", body_for("nlx"), "language suffix"),
        (CHANNEL_PATH, b"{not json", "not valid JSON"),
        (CHANNEL_PATH, b"[1, 2]", "JSON object"),
        (CHANNEL_PATH, {"messages": [user("hi")]}, "model"),
        (CHANNEL_PATH, body_for("gpt-4o"), "model"),
        (CHANNEL_PATH, body_for("nlx:"), "model"),
        (CHANNEL_PATH, {"model": "nlx", "messages": []}, "messages"),
        (CHANNEL_PATH, {"model": "nlx"}, "messages"),
        (CHANNEL_PATH, {"model": "nlx", "messages": [{"role": "tool", "content": "x"}]}, "role"),
        (CHANNEL_PATH, {"model": "nlx", "messages": [{"role": "user", "content": 5}]}, "content"),
        (CHANNEL_PATH, {"model": "nlx", "messages": [user("hi")], "stream": False}, "only stream=true"),
        (CHANNEL_PATH, {"model": "nlx", "messages": [user("hi")], "stream": "yes"}, "stream"),
    ],
    ids=[
        "no-language-suffix",
        "bad-json",
        "not-object",
        "no-model",
        "foreign-model",
        "empty-conversation-id",
        "empty-messages",
        "no-messages",
        "bad-role",
        "non-string-content",
        "stream-false",
        "stream-not-bool",
    ],
)
def test_bad_requests_are_400(
    mock: ThreadedMock, client: httpx.Client, path: str, body: Any, needle: str
) -> None:
    result = turn(client, mock.url, body, path=path)
    assert result.status == 400
    error = orjson.loads(result.body)["error"]
    assert needle in error["message"]
    assert error["type"] == "invalid_request_error"


# --- the stream --------------------------------------------------------------------------------


def test_stream_has_role_chunk_content_chunks_finish_and_done(
    mock: ThreadedMock, client: httpx.Client
) -> None:
    result = turn(client, mock.url, body_for("nlx:shape-1"))
    assert result.status == 200
    assert result.headers["content-type"] == "text/event-stream"
    assert result.headers["cache-control"] == "no-cache"
    assert result.headers["x-conversation-id"] == "shape-1"
    assert result.events[-1] == b"[DONE]"
    chunks = result.chunks
    ids = {c["id"] for c in chunks}
    assert len(ids) == 1 and ids.pop().startswith("chatcmpl-")
    for c in chunks:
        assert c["object"] == "chat.completion.chunk"
        assert c["model"] == "dep-1"
        assert c["system_fingerprint"] == "loadtest-mock"
        assert isinstance(c["created"], int)
        assert len(c["choices"]) == 1 and c["choices"][0]["index"] == 0
        assert c["choices"][0]["logprobs"] is None
    first, *content, last = chunks
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert 3 <= len(content) <= 8
    for c in content:
        assert set(c["choices"][0]["delta"]) == {"content"} and c["choices"][0]["delta"]["content"]
        assert c["choices"][0]["finish_reason"] is None
    assert last["choices"][0]["delta"] == {} and last["choices"][0]["finish_reason"] == "stop"


def test_max_conversations_bounds_a_real_mock(client: httpx.Client) -> None:
    with mock_in_thread("--max-conversations", "2", *QUICK, api_key=KEY) as bounded:
        for n in range(3):
            assert turn(client, bounded.url, body_for(f"nlx:bounded-{n}")).status == 200
        stats = bounded.stats()
    assert (stats["conversations"], stats["evicted"]) == (2, 1)


def test_chunks_const_0_is_an_empty_reply(client: httpx.Client) -> None:
    with mock_in_thread("--ttft", "const:1ms", "--chunks", "const:0", api_key=KEY) as empty:
        result = turn(client, empty.url, body_for("nlx:empty-1"))
    assert result.status == 200 and result.events[-1] == b"[DONE]"
    first, last = result.chunks  # the role chunk and the finish: no content at all
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert last["choices"][0]["finish_reason"] == "stop"


def test_an_http_10_client_gets_the_stream_unframed_to_the_close(mock: ThreadedMock) -> None:
    host, port = mock.base.removeprefix("http://").split(":")
    body = orjson.dumps(body_for("nlx:http10"))
    request = (
        f"POST {mock.url.removeprefix(mock.base)}{CHANNEL_PATH} HTTP/1.0\r\nHost: {host}\r\n"
        f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while piece := sock.recv(65536):
            received += piece
    head, _, stream = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") and b"chunked" not in head.lower()
    events = stream.split(b"\n\n")
    assert events[0].startswith(b"data: {") and events[-2:] == [b"data: [DONE]", b""]
    contents = [orjson.loads(e[6:])["choices"][0]["delta"].get("content") for e in events[1:-3]]
    assert 3 <= len(contents) <= 8 and all(contents)


def test_plain_nlx_model_gets_a_new_conversation_id(mock: ThreadedMock, client: httpx.Client) -> None:
    ids = [turn(client, mock.url, body_for("nlx")).headers["x-conversation-id"] for _ in range(2)]
    assert ids[0] != ids[1]
    for conversation_id in ids:
        uuid.UUID(conversation_id)
        assert client.get(f"{mock.url}/_mock/conversations/{conversation_id}").status_code == 200


def test_history_mismatches_are_counted(mock: ThreadedMock, client: httpx.Client) -> None:
    reset(client, mock.url)
    model = "nlx:history-1"
    first = "".join(turn(client, mock.url, body_for(model, user("one"))).contents)
    second = "".join(
        turn(
            client,
            mock.url,
            body_for(model, user("one"), {"role": "assistant", "content": first}, user("two")),
        ).contents
    )
    assert stats(client, mock.url)["history_mismatches"] == 0
    # The client may send only its newest message.
    turn(client, mock.url, body_for(model, user("three")))
    assert stats(client, mock.url)["history_mismatches"] == 0
    history = [
        user("one"),
        {"role": "assistant", "content": first},
        user("two"),
        {"role": "assistant", "content": second[:-1]},
        user("four"),
    ]
    turn(client, mock.url, body_for(model, *history))
    assert stats(client, mock.url)["history_mismatches"] == 1
    # More assistant messages than replies sent is a mismatch too.
    turn(client, mock.url, body_for("nlx:history-2", {"role": "assistant", "content": "hi"}, user("x")))
    assert stats(client, mock.url)["history_mismatches"] == 2

    record = client.get(f"{mock.url}/_mock/conversations/history-1").json()
    assert record["id"] == "history-1"
    assert [t["reply"] for t in record["turns"][:2]] == [first, second]
    assert record["turns"][3]["messages"] == history
    assert client.get(f"{mock.url}/_mock/conversations/nope").status_code == 404


def test_stats_match_what_the_client_received(mock: ThreadedMock, client: httpx.Client) -> None:
    reset(client, mock.url)
    received: list[str] = []
    for i in range(6):
        received += turn(client, mock.url, body_for(f"nlx:stats-{i % 3}")).contents
    turn(client, mock.url, body_for("nlx"), headers={})
    turn(client, mock.url, body_for("bad-model"))
    s = stats(client, mock.url)
    assert s["requests"] == 8
    assert s["turns"] == s["turns_completed"] == 6
    assert s["chunks"] == len(received)
    assert s["chars"] == sum(len(piece) for piece in received)
    assert s["conversations"] == 3
    assert s["status"] == {"200": 6, "400": 1, "401": 1}
    for name in ("ttft_ms", "turn_ms"):
        assert s[name]["count"] == 6
        assert 0 < s[name]["p50"] <= s[name]["p90"] <= s[name]["p99"] <= s[name]["max"]
    assert s["schedule_error_ms"]["count"] == len(received)
    assert HdrHistogram.decode(s["hdr"]["ttft"]).get_total_count() == 6
    assert HdrHistogram.decode(s["hdr"]["turn"]).get_total_count() == 6


def test_replies_carry_non_ascii_and_sometimes_a_line_separator(
    mock: ThreadedMock, client: httpx.Client
) -> None:
    replies = ["".join(turn(client, mock.url, body_for(f"nlx:text-{i}")).contents) for i in range(12)]
    for reply in replies:
        assert "é" in reply and "ü" in reply and "日本語" in reply and "🚀" in reply
    assert any(LINE_SEPARATOR in reply for reply in replies)


def test_client_disconnect_mid_stream_is_harmless(client: httpx.Client) -> None:
    # Leaving the block fails if the mock logged an error or a warning.
    with mock_in_thread("--ttft", "0ms", "--itl", "const:10ms", "--chunks", "const:40", api_key=KEY) as m:
        with client.stream(
            "POST", m.url + CHANNEL_PATH, content=orjson.dumps(body_for("nlx:cut")), headers=AUTH
        ) as r:
            assert r.status_code == 200
            next(r.iter_bytes())  # the role chunk; then hang up
        complete = turn(
            client, m.url, body_for("nlx:whole")
        )  # 400 ms: the cut handler has hit its next write
        assert len(complete.contents) == 40
        s = stats(client, m.url)
    assert s["turns"] == 2 and s["turns_completed"] == 1
    assert 40 <= s["chunks"] < 80


# --- timing ------------------------------------------------------------------------------------


@pytest.mark.timing
def test_time_to_first_content_follows_the_ttft_setting(client: httpx.Client) -> None:
    with running_mock("--ttft", "const:80ms", "--itl", "const:5ms", "--chunks", "const:3") as m:
        turns = [turn(client, m.url, body_for(f"nlx:ttft-{i}")) for i in range(8)]
        s = stats(client, m.url)
    for t in turns:
        assert len(t.contents) == 3
        assert t.first_content_s >= 0.080
        # The last content chunk is due 80 + 5 + 5 ms after the request: it can arrive late, never early.
        assert t.times[3] >= 0.090
    assert abs(s["ttft_ms"]["p50"] - 80) <= 3
    assert abs(s["turn_ms"]["p50"] - 90) <= 5
    assert s["schedule_error_ms"]["p99"] < 10  # of 24 chunks: the worst wake-up on a busy machine


def test_schedule_errors_counted_by_value_read_as_if_recorded_one_by_one() -> None:
    state = MockState()
    direct = HdrHistogram(1, 3_600_000_000, 3)
    for late_s in (-0.000002, 0.0, 0.0001, 0.0001, 0.00225, 0.5, 0.0001):
        state.chunk_written("x", late_s, None)
        direct.record_value(max(round(late_s * 1e6), 0))
    assert state.schedule_error_us.count == 7
    state.chunk_written("x", 0.003, None)  # after a read: added to what was folded before
    direct.record_value(3000)
    folded = state.schedule_error_us
    assert folded.count == 8 and state.chunks == 8
    for percentile in (1, 50, 75, 90, 99, 100):
        assert folded.value_at_percentile_us(percentile) == direct.get_value_at_percentile(percentile)
    # /_mock/stats: count, p50, p90, p99 and max in milliseconds, as HDR's own reading gives them.
    expected = {f"p{p}": direct.get_value_at_percentile(p) / 1000 for p in (50, 90, 99)}
    assert state.snapshot()["schedule_error_ms"] == {"count": 8, **expected, "max": 500.223}
    state.reset()
    empty = {"count": 0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    assert state.schedule_error_us.count == 0 and state.snapshot()["schedule_error_ms"] == empty


@pytest.mark.timing
def test_precise_timers_send_chunks_within_a_fraction_of_a_millisecond(client: httpx.Client) -> None:
    # Deadlines off the millisecond grid: epoll's whole-millisecond waits would send each one up to
    # a millisecond late, half a millisecond on average.
    args = ("--ttft", "const:20.5ms", "--itl", "const:3.3ms", "--chunks", "const:30", "--precise-timers")
    with running_mock(*args) as m:
        turns = [turn(client, m.url, body_for(f"nlx:precise-{i}")) for i in range(4)]
        s = stats(client, m.url)
    for t in turns:
        assert len(t.contents) == 30
        # Never early: the last chunk is due 20.5 + 29 * 3.3 ms after the request.
        assert t.times[30] >= 0.1162
    assert s["schedule_error_ms"]["count"] == 120
    assert s["schedule_error_ms"]["p50"] < 0.2


# --- options -----------------------------------------------------------------------------------


def test_prefix_and_no_done(client: httpx.Client) -> None:
    with mock_in_thread("--prefix", "/v1/", "--no-done", "--chunks", "const:2", *QUICK, api_key=KEY) as m:
        assert m.url.endswith("/v1") and m.base + "/v1" == m.url
        result = turn(client, m.url, body_for("nlx"))
        assert result.status == 200
        assert b"[DONE]" not in result.events
        assert result.chunks[-1]["choices"][0]["finish_reason"] == "stop"
        assert len(result.contents) == 2
        assert turn(client, m.base, body_for("nlx")).status == 404
        assert stats(client, m.url)["turns_completed"] == 1
        assert stats(client, m.base)["turns_completed"] == 1


@pytest.mark.parametrize(
    ("prefix", "base_path"),
    [("", "/v1"), ("/v1", "/v1"), ("/api/v2", "/api/v2")],
    ids=["none", "v1", "other"],
)
def test_the_openai_route_is_the_prefix_or_v1_then_chat_completions(
    client: httpx.Client, prefix: str, base_path: str
) -> None:
    """An OpenAI client given the mock's URL (plus /v1 when it has no prefix) as its base URL posts to
    {base}/chat/completions: with --prefix /v1 that is /v1/chat/completions, not /v1/v1/..."""
    assert parse_config(["--prefix", prefix], {}).openai_path == f"{base_path}/chat/completions"
    with mock_in_thread("--prefix", prefix, "--chunks", "const:2", *QUICK, api_key=KEY) as m:
        assert m.url == m.base + prefix
        result = turn(client, m.base + base_path, body_for("any-model"), path="/chat/completions")
        assert result.status == 200 and len(result.contents) == 2
        assert {chunk["model"] for chunk in result.chunks} == {"any-model"}
        if prefix:
            assert turn(client, m.url + "/v1", body_for("any-model"), path="/chat/completions").status == 404
        assert turn(client, m.url, body_for("nlx")).status == 200  # the NLX route beside it
        assert stats(client, m.url)["turns_completed"] == 2


def test_bad_distribution_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert mock_main(["--ttft", "gaussian:3"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    [line] = err.splitlines()
    assert line.startswith("loadtest mock: error: --ttft")
    assert "uniform:A:B" in line and "lognormal:MEDIAN:SIGMA" in line


@pytest.mark.parametrize("port", ["http", "70000", "-1"])
def test_a_bad_port_exits_2_with_one_line(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert mock_main(["--port", port]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"{ERROR_PREFIX}argument --port: {port!r} is not a port number: use 1-65535, or 0 for a free one"
    ]


BUSY_FIX = "address already in use; another process listens there: stop it, or choose another --port"


@background
def mock_on_a_busy_port(folder: Path) -> Finish:
    """`python -m loadtest.mock --port PORT` where this process listens on PORT."""
    sock = listener()
    port: int = sock.getsockname()[1]
    mock = start_child([sys.executable, "-m", "loadtest.mock", "--port", str(port)], cwd=ROOT)

    def finish() -> tuple[subprocess.CompletedProcess[str], int]:
        with sock:
            return mock(), port

    return finish


def test_a_busy_port_exits_2_with_one_line_naming_the_fix(
    mock_on_a_busy_port: tuple[subprocess.CompletedProcess[str], int],
) -> None:
    second, port = mock_on_a_busy_port
    assert second.returncode == 2 and second.stdout == ""
    [line] = second.stderr.splitlines()
    assert line.startswith(f"{ERROR_PREFIX}cannot listen on 127.0.0.1:{port}: {BUSY_FIX}"), line


def test_start_mock_raises_the_mocks_own_line_once(capfd: pytest.CaptureFixture[str]) -> None:
    """The program that starts the mock says what the mock said, once, in its own words."""
    with busy_port() as port, pytest.raises(ConfigError) as busy:
        start_mock(["--port", str(port)])
    with pytest.raises(ConfigError) as bad:
        start_mock(["--ttft", "bogus"])
    assert str(busy.value).startswith(f"the built-in mock: cannot listen on 127.0.0.1:{port}: {BUSY_FIX}")
    assert str(bad.value).startswith("the built-in mock: --ttft: bad distribution 'bogus': use const:V")
    assert capfd.readouterr().err == ""


@background
def locust_with_its_mock_on_a_busy_port(folder: Path) -> Finish:
    """A real `locust` whose built-in mock is told to listen on a port this process holds."""
    sock = listener()
    port: int = sock.getsockname()[1]
    args = ["-u", "1", "-r", "1", "-t", "5s", "--mock-options", f"--port {port}"]
    run = start_locust(args, folder, env=locust_env())

    def finish() -> tuple[LocustRun, int]:
        with sock:
            return run(), port

    return finish


def test_the_plugin_stops_with_the_mocks_line_and_exit_2(
    locust_with_its_mock_on_a_busy_port: tuple[LocustRun, int],
) -> None:
    run, port = locust_with_its_mock_on_a_busy_port
    assert run.returncode == 2, run.output[-3000:]
    [line] = [line for line in run.stderr.splitlines() if "error" in line.lower()]
    assert line.startswith(
        f"loadtest: error: the built-in mock: cannot listen on 127.0.0.1:{port}: {BUSY_FIX}"
    )
    assert "Traceback" not in run.output


def test_a_mock_that_crashes_at_start_passes_its_traceback_on(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # An aiohttp that cannot be imported: the options are good, the server cannot load.
    (tmp_path / "aiohttp.py").write_text("raise RuntimeError('no aiohttp here')\n", encoding="utf-8")
    with pytest.raises(LoadtestError, match=r"the mock server did not start \(exit code 1\)") as crash:
        start_mock([], env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    assert not isinstance(crash.value, ConfigError)
    err = capfd.readouterr().err
    assert "Traceback" in err and "RuntimeError: no aiohttp here" in err


def test_what_a_running_mock_writes_to_stderr_is_passed_on_by_stop(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "sitecustomize.py").write_text(
        "import atexit, sys\n"
        "print('mock: before the ready line', file=sys.stderr, flush=True)\n"
        "atexit.register(lambda: print('mock: at exit', file=sys.stderr, flush=True))\n",
        encoding="utf-8",
    )
    process = start_mock(list(QUICK), env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    process.stop()
    assert process.process.returncode == 0
    assert process.stderr_relay is not None and not process.stderr_relay.is_alive()
    assert capfd.readouterr().err.splitlines() == ["mock: before the ready line", "mock: at exit"]


def test_sigterm_and_sigint_stop_cleanly_even_mid_stream() -> None:
    # A mock for each signal, both at once: each stop waits out the mock's grace for open streams.
    stalled = ["--ttft", "const:30s"]
    signals = (signal.SIGTERM, signal.SIGINT)
    secret = "secret-never-printed"
    with running_mocks(stalled, stalled, api_key=secret) as mocks, httpx.Client() as c:
        headers = {"Authorization": f"Bearer {secret}"}
        with contextlib.ExitStack() as streams:
            for m in mocks:
                r = streams.enter_context(
                    c.stream(
                        "POST", m.url + CHANNEL_PATH, content=orjson.dumps(body_for("nlx")), headers=headers
                    )
                )
                assert r.status_code == 200
                next(r.iter_bytes())
            for m, signum in zip(mocks, signals, strict=True):
                m.process.send_signal(signum)
            assert [m.wait() for m in mocks] == [0, 0]
    for m in mocks:
        assert "Traceback" not in m.stderr, m.stderr
        assert secret not in m.stderr + m.url


# --- units: distributions, text, config --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100ms", 0.1),
        ("0.1s", 0.1),
        ("100", 0.1),
        ("250us", 0.00025),
        ("const:80ms", 0.08),
        ("uniform:10ms:10ms", 0.01),
        ("normal:0:0", 0.0),
    ],
)
def test_duration_distributions(text: str, expected: float) -> None:
    assert parse_duration_dist(text).sample(random.Random(1)) == pytest.approx(expected)


def test_sampled_distributions_stay_in_range() -> None:
    rng = random.Random(3)
    uniform = parse_duration_dist("uniform:10ms:40ms")
    assert all(0.01 <= uniform.sample(rng) <= 0.04 for _ in range(1000))
    assert all(parse_duration_dist("normal:1ms:50ms").sample(rng) >= 0 for _ in range(1000))
    lognormal = sorted(parse_duration_dist("lognormal:300ms:0.3").sample(rng) for _ in range(2001))
    assert lognormal[1000] == pytest.approx(0.3, rel=0.05)
    exp = [parse_duration_dist("exp:20ms").sample(rng) for _ in range(4000)]
    assert sum(exp) / len(exp) == pytest.approx(0.02, rel=0.1)
    counts = parse_count_dist("uniform:5:20")
    assert {counts.sample_count(rng) for _ in range(2000)} == set(range(5, 21))
    assert parse_count_dist("normal:0:1").sample_count(rng) >= 1


@pytest.mark.parametrize(
    "text",
    ["", "fast", "uniform:1", "uniform:5:1", "normal:1", "exp", "-5ms", "10min", "lognormal:0:1", "1e999"],
)
def test_bad_duration_strings(text: str) -> None:
    with pytest.raises(ValueError, match="const:V .*uniform:A:B.*exp:MEAN") as info:
        parse_duration_dist(text)
    assert "\n" not in str(info.value)


def test_counts_take_no_unit() -> None:
    with pytest.raises(ValueError, match="counts take no unit"):
        parse_count_dist("5ms")


def test_replies_are_deterministic_and_split_into_non_empty_pieces() -> None:
    chunks = parse_count_dist("uniform:1:60")
    for turn_index in range(30):
        pieces = reply_pieces(7, "conv", turn_index, chunks)
        assert pieces == reply_pieces(7, "conv", turn_index, chunks)
        assert all(pieces)
    assert reply_text(1, "a", 0) != reply_text(2, "a", 0) != reply_text(1, "a", 1)
    assert split_text("abc", 3, random.Random(0)) == ["a", "b", "c"]
    assert len(reply_pieces(0, "x", 0, parse_count_dist("500"))) == 500


def test_a_constant_piece_count_cuts_each_pooled_text_once() -> None:
    chunks = parse_count_dist("const:20")
    first = reply_pieces(7, "conv", 0, chunks)
    first.append("changed by the caller")
    again = reply_pieces(7, "conv", 0, chunks)
    assert len(again) == 20 and all(again)
    assert "".join(again) == reply_text(7, "conv", 0)
    # Conversations whose (id, turn) pick the same pool text get it in the same pieces.
    by_text: dict[str, tuple[str, ...]] = {}
    for i in range(3000):
        pieces = tuple(reply_pieces(7, f"c{i}", 0, chunks))
        assert by_text.setdefault("".join(pieces), pieces) == pieces
    assert 900 < len(by_text) <= POOL_SIZE


def test_config_takes_the_key_from_the_environment_and_hides_it() -> None:
    config = parse_config([], {API_KEY_ENV: "from-env"})
    assert API_KEY_ENV == "NLX_API_KEY" and config.api_key == "from-env"
    assert "from-env" not in repr(config)
    assert parse_config([], {}).api_key == DEFAULT_API_KEY == "nlx-mock-key"
    assert parse_config(["--api-key", "flag"], {API_KEY_ENV: "from-env"}).api_key == "flag"
    with pytest.raises(ValueError, match="--port"):
        parse_config(["--port", "70000"], {})


def test_the_contract_loads_without_the_server_or_gevent() -> None:
    """`loadtest.settings` reads the key and the ready line from here before Locust is imported."""
    code = (
        "import sys, loadtest.mock.contract, loadtest.mock.launch; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'aiohttp', 'gevent', 'httpx', 'orjson'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


# --- the bound on what the mock remembers ------------------------------------------------------


def serve_turn(state: MockState, conversation_id: str | None, messages: list[dict[str, str]]) -> str:
    """What the routes and the stream do with the state for one delivered turn; the reply.
    `conversation_id` None: the OpenAI route."""
    if conversation_id is None:
        conversation_id, turns = uuid.uuid4().hex, state.begin_stateless_turn(messages)
    else:
        turns = state.begin_turn(conversation_id, messages)
    # Unique: the mock's replies come from a pool of texts.
    reply = f"{reply_text(0, conversation_id, len(turns))} ({conversation_id}, {len(turns)})"
    turns.append(Turn(orjson.dumps(messages), reply))
    state.delivered(turns, len(turns) - 1)
    return reply


def converse(state: MockState, conversation_id: str | None, history: list[dict[str, str]], text: str) -> None:
    """One more turn of a conversation whose client keeps its whole history in `history`."""
    history.append(user(text))
    history.append({"role": "assistant", "content": serve_turn(state, conversation_id, history)})


def test_the_mock_forgets_the_least_recently_used_conversation_beyond_its_bound() -> None:
    state = MockState(max_conversations=2)
    histories: dict[str, list[dict[str, str]]] = {"a": [], "b": [], "c": []}
    converse(state, "a", histories["a"], "one")
    converse(state, "b", histories["b"], "one")
    converse(state, "a", histories["a"], "two")  # b is now the least recently used
    converse(state, "c", histories["c"], "one")
    s = state.snapshot()
    assert list(state.conversations) == ["a", "c"]  # listed in the order first seen
    assert (s["conversations"], s["max_conversations"], s["evicted"], s["resumed"]) == (2, 2, 1, 0)
    assert s["history_mismatches"] == 0
    state.reset()
    assert (state.snapshot()["evicted"], state.conversations) == (0, {})


def test_a_forgotten_conversation_continued_is_resumed_and_checked_from_there() -> None:
    state = MockState(max_conversations=1)
    history: list[dict[str, str]] = []
    converse(state, "kept", history, "one")
    converse(state, "kept", history, "two")
    converse(state, "other", [], "one")  # forgets "kept"
    converse(state, "kept", history, "three")
    s = state.snapshot()
    assert (s["evicted"], s["resumed"], s["history_mismatches"]) == (2, 1, 0)
    # The replies the client held were taken as sent: its next turns are checked against them.
    converse(state, "kept", history, "four")
    assert (state.resumed, state.history_mismatches) == (1, 0)
    turns = conversation_json("kept", state.conversations["kept"])["turns"]
    assert [t["messages"] for t in turns[:2]] == [None, None]  # from before it was forgotten
    assert [t["reply"] for t in turns] == [m["content"] for m in history if m["role"] == "assistant"]
    wrong = [*history[:-1], {"role": "assistant", "content": "not sent"}, user("five")]
    serve_turn(state, "kept", wrong)
    assert state.history_mismatches == 1


def test_before_anything_is_forgotten_an_unknown_history_is_a_mismatch() -> None:
    state = MockState(max_conversations=5)
    serve_turn(state, "new", [user("one"), {"role": "assistant", "content": "never sent"}, user("two")])
    serve_turn(state, None, [user("one"), {"role": "assistant", "content": "never sent"}, user("two")])
    assert (state.history_mismatches, state.resumed, state.evicted) == (2, 0, 0)


def test_the_openai_routes_replies_are_bounded_the_same_way() -> None:
    state = MockState(max_conversations=2)
    first, second, third = ([user(text)] for text in ("a", "b", "c"))
    for history in (first, second):
        converse(state, None, history, "again")
    converse(state, None, first, "and again")  # sees the first reply: the second is now the oldest
    assert state.evicted == 1 and first[2]["content"] in state.replies_sent
    assert second[2]["content"] not in state.replies_sent
    converse(state, None, second, "more")  # its reply was forgotten: resumed, not a mismatch
    converse(state, None, third, "more")
    s = state.snapshot()
    assert (s["resumed"], s["history_mismatches"]) == (1, 0)
    assert len(state.replies_sent) == 2


def test_memory_stays_flat_once_the_bound_is_reached() -> None:
    """Hours of conversations against a mock at its bound cost no more than its first minutes."""

    def serve(state: MockState, first: int, count: int) -> None:
        for c in range(first, first + count):
            history: list[dict[str, str]] = []
            for text in ("one", "two", "three"):
                converse(state, f"c{c}", history, text)
            converse(state, None, [user("hi")], "more")

    state = MockState(max_conversations=200)
    serve(state, 0, 400)  # reaches the bound; first-use allocations done
    tracemalloc.start()
    try:
        serve(state, 400, 400)
        at_bound = tracemalloc.get_traced_memory()[0]
        serve(state, 800, 2000)
        later = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(state.conversations) == len(state.replies_sent) == 200
    assert state.evicted == 2 * 2800 - 2 * 200
    # Kept, the 2,000 conversations more would cost 10 MB or more; Python's free lists and a resized
    # table stay well under 1 MB.
    assert later - at_bound < 1_000_000, (at_bound, later)


def test_max_conversations_is_a_positive_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_config([], {}).max_conversations == DEFAULT_MAX_CONVERSATIONS == 10_000
    assert parse_config(["--max-conversations", "50"], {}).max_conversations == 50
    for bad in ("0", "-3", "many"):
        assert mock_main(["--max-conversations", bad]) == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert err.splitlines() == [
            f"{ERROR_PREFIX}argument --max-conversations: {bad!r} is not a count: use a whole number "
            "of 1 or more"
        ]


THREAD_CHECK = """
import sys
if sys.argv[1] == "locust":
    import locust  # patches the process for gevent, as tests/conftest.py does
from gevent import monkey
assert monkey.is_module_patched("threading") == (sys.argv[1] == "locust")
from loadtest.client import make_client, stream_turn
from tests.mockthread import KEY, mock_in_thread
with mock_in_thread("--ttft", "1ms", "--itl", "1ms", "--chunks", "const:3") as mock, make_client() as client:
    body = {"model": "nlx", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    result = stream_turn(client, mock.url + "/dep/web-en-US/chat/completions", body, api_key=KEY)
    assert result.ok and result.chunks == 3, result
    assert mock.stats()["turns_completed"] == 1
print("served")
"""


def other_patching() -> str:
    """THREAD_CHECK's argument for the case this process is not in."""
    return "nothing" if monkey.is_module_patched("threading") else "locust"


@background
def thread_check_elsewhere(folder: Path) -> Finish:
    """THREAD_CHECK in a fresh process, patched for gevent as this one is not, or the other way round."""
    return start_child([sys.executable, "-c", THREAD_CHECK, other_patching()], cwd=ROOT)


def test_the_mock_serves_from_a_thread_with_or_without_gevent_patching(
    thread_check_elsewhere: subprocess.CompletedProcess[str],
) -> None:
    """tests/mockthread.py runs the mock on an OS thread whether or not Locust has patched the process
    for gevent. Tests run in one process in any order: this one checks the case this process is in
    (tests/conftest.py imports Locust first), and the other in a fresh process."""
    with mock_in_thread("--ttft", "1ms", "--itl", "1ms", "--chunks", "const:3") as m, make_client() as c:
        result = stream_turn(c, m.url + CHANNEL_PATH, body_for("nlx"), api_key=THREAD_KEY)
    assert result.ok and result.chunks == 3, result
    done = thread_check_elsewhere
    assert done.args[-1] == other_patching()
    assert done.returncode == 0 and done.stdout.strip() == "served", done.stdout + done.stderr[-3000:]


# --- faults (their effect on the client: tests/test_faults.py) ---------------------------------


def test_without_faults_the_stats_list_none_and_count_connections() -> None:
    with mock_in_thread(*QUICK, "--chunks", "const:2", api_key=KEY) as m, httpx.Client(verify=False) as c:
        for _ in range(3):
            assert turn(c, m.url, body_for("nlx")).status == 200
        s = stats(c, m.url)
    assert s["faults"] == {} and s["connections"] == 1  # one keep-alive connection


def test_http_fault_answers_json_and_429_says_when_to_retry(client: httpx.Client) -> None:
    with mock_in_thread("--fault", "http_429=100%", "--fault", "http_500=0%", api_key=KEY) as m:
        result = turn(client, m.url, body_for("nlx:retry"))
        assert turn(client, m.url, body_for("nlx"), headers={}).status == 401  # still checked first
        assert turn(client, m.url, body_for("bad-model")).status == 400
        s = stats(client, m.url)
    assert result.status == 429 and result.headers["retry-after"] == "1"
    assert result.headers["content-type"] == "application/json"
    assert orjson.loads(result.body)["error"]["code"] == "rate_limit_exceeded"
    assert s["faults"] == {"http_429": 1, "http_500": 0}
    assert s["status"]["429"] == 1 and s["turns"] == 0 and s["conversations"] == 0


def test_idle_close_says_connection_close_and_the_next_request_reconnects() -> None:
    with (
        mock_in_thread("--fault", "idle_close=100%", *QUICK, api_key=KEY) as m,
        httpx.Client(verify=False) as c,
    ):
        results = [turn(c, m.url, body_for("nlx:idle")) for _ in range(3)]
        s = stats(c, m.url)
    for result in results:
        assert result.headers["connection"] == "close" and result.events[-1] == b"[DONE]"
    assert s["faults"] == {"idle_close": 3} and s["connections"] == 3
    assert s["turns_completed"] == 3 and s["history_mismatches"] == 0


@pytest.mark.parametrize("name", ["truncate", "cut"], ids=["truncate", "cut-alias"])
def test_truncate_stops_in_the_middle_of_an_event(client: httpx.Client, name: str) -> None:
    with mock_in_thread("--fault", f"{name}=100%", "--chunks", "const:6", *QUICK, api_key=KEY) as m:
        received = b""
        with (
            pytest.raises(httpx.RemoteProtocolError),
            client.stream(
                "POST", m.url + CHANNEL_PATH, content=orjson.dumps(body_for("nlx:c")), headers=AUTH
            ) as r,
        ):
            for data in r.iter_bytes():
                received += data
        s = stats(client, m.url)
        record = client.get(f"{m.url}/_mock/conversations/c").json()
    *events, tail = received.split(b"\n\n")
    assert len(events) == 3  # the role chunk and two content chunks
    assert tail.startswith(b"data: {") and not tail.endswith(b"}")
    assert s["chunks"] == 2 and s["turns"] == 1 and s["turns_completed"] == 0
    assert s["faults"] == {"truncate": 1}
    assert record["turns"][0]["fault"] == "truncate" and record["turns"][0]["delivered"] is False


def test_a_stall_shorter_than_the_client_timeout_only_delays_the_stream(client: httpx.Client) -> None:
    args = ("--fault", "stall=100%", "--stall-seconds", "0.3", "--chunks", "const:3", *QUICK)
    with mock_in_thread(*args, api_key=KEY) as m:
        result = turn(client, m.url, body_for("nlx:slow"))
        s = stats(client, m.url)
    assert len(result.contents) == 3 and result.events[-1] == b"[DONE]"
    # The second content chunk comes after the 0.3 s stall: it can arrive late, never early.
    assert result.times[2] >= 0.3
    assert s["turns_completed"] == 1 and s["faults"] == {"stall": 1}


def test_a_reply_that_was_never_delivered_is_not_expected_in_the_history(client: httpx.Client) -> None:
    with mock_in_thread("--fault", "error_event=100%", *QUICK, api_key=KEY) as m:
        first = turn(client, m.url, body_for("nlx:h", user("one")))
        assert b'"error"' in first.events[-1]
        turn(client, m.url, body_for("nlx:h", user("one"), user("two")))  # no assistant message
        s = stats(client, m.url)
    assert s["history_mismatches"] == 0 and s["faults"] == {"error_event": 2}


CYCLE_CLIENT = """
import json, sys, httpx
url, key = sys.argv[1], sys.argv[2]

def converse(client, c):
    messages = []
    for t in range(5):
        messages.append({"role": "user", "content": f"turn {t}"})
        if c % 2:
            route, model = url + "/dep-1/chan-en-US/chat/completions", f"nlx:cycles-{c}"
        else:
            route, model = url + "/v1/chat/completions", "gpt-x"
        with client.stream("POST", route, json={"model": model, "messages": messages, "stream": True}) as r:
            text = "".join(r.iter_text())
        assert r.status_code == 200 and "[DONE]" in text, text
        events = [json.loads(e[6:]) for e in text.split("\\n\\n") if e.startswith("data: {")]
        content = "".join(e["choices"][0]["delta"].get("content") or "" for e in events)
        messages.append({"role": "assistant", "content": content})

with httpx.Client(timeout=10, headers={"Authorization": "Bearer " + key}) as client:
    for c in range(2):  # first-use imports and caches
        converse(client, c)
    print("warm", flush=True)
    sys.stdin.readline()  # the test's collector is ready
    for c in range(2, 22):
        converse(client, c)
"""


def test_serving_makes_no_reference_cycles() -> None:
    """The mock runs with the garbage collector off (it paused streams for milliseconds); that is
    only safe while serving a request leaves no reference cycle behind for the collector."""
    with mock_in_thread("--ttft", "const:1ms", "--itl", "const:1ms", api_key=KEY) as m:
        client = subprocess.Popen(
            [sys.executable, "-c", CYCLE_CLIENT, m.url, KEY],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert client.stdin is not None and client.stdout is not None
        try:
            assert client.stdout.readline() == "warm\n"  # first-use imports and caches
            gc.collect()
            gc.set_debug(gc.DEBUG_SAVEALL)
            try:
                client.stdin.write("go\n")
                client.stdin.flush()
                # To the end of the client's output (its exit) with a read that blocks this thread, not
                # gevent's, which would run other greenlets (the background runs' of tests/conftest.py):
                # the garbage saved is the mock's alone.
                os.set_blocking(client.stdout.fileno(), True)
                while os.read(client.stdout.fileno(), 4096):
                    pass
                gc.collect()
                garbage = [type(o).__name__ for o in gc.garbage]
            finally:
                gc.set_debug(0)
                gc.garbage.clear()
            assert client.wait(timeout=120) == 0  # 100 turns on both routes
        finally:
            if client.poll() is None:
                client.kill()
            client.communicate()
    # One closed connection leaves a handful of objects in a cycle (asyncio's transport); 100 turns, none.
    assert len(garbage) <= 20, sorted(garbage)[:50]


# --- --bot: rules that pick the reply by the user's last message ------------------------------

BOT_FILE = ROOT / "locustfiles" / "bot.yaml"


def test_the_shipped_bot_answers_by_rule_and_asks_back_half_of_the_time() -> None:
    bot = load_bot(BOT_FILE)
    asked = [
        bot.reply(0, f"c{i}", 0, "Hi, WHERE IS MY ORDER?")
        == "I can look that up for you. What is your order number?"
        for i in range(400)
    ]
    assert 0.4 < sum(asked) / len(asked) < 0.6
    assert all(
        bot.reply(0, f"c{i}", 0, "where is my order")
        in ("I can look that up for you.", "I can look that up for you. What is your order number?")
        for i in range(20)
    )
    # The same seed, conversation and turn ask the same; the first rule that matches answers.
    assert [bot.reply(0, "c1", 0, "where is my order") for _ in range(3)] == [
        bot.reply(0, "c1", 0, "where is my order")
    ] * 3
    assert bot.reply(0, "c1", 1, "It's 58213.") == "Thanks! Your order ships tomorrow."
    assert bot.reply(0, "c1", 2, "Blue, please") == "Noted. Anything else?"  # the default


def test_a_bot_without_a_default_leaves_other_messages_to_the_mock(tmp_path: Path) -> None:
    path = tmp_path / "bot.yaml"
    path.write_text("rules:\n  - {user: hello, reply: Hi there}\n")
    bot = load_bot(path)
    chunks = parse_count_dist("uniform:2:6")
    assert bot.reply(3, "c", 0, "anything") is None
    assert bot.pieces(3, "c", 0, chunks, [user("anything")]) == reply_pieces(3, "c", 0, chunks)
    pieces = bot.pieces(
        3, "c", 0, chunks, [user("hello"), {"role": "assistant", "content": "x"}, user("Hello!")]
    )
    assert "".join(pieces) == "Hi there" and 2 <= len(pieces) <= 6 and all(pieces)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rules: []\n", "bot.yaml:1: a bot file is a mapping with 'rules'"),
        (
            "rules:\n  - {user: a, reply: b}\nanswers: x\n",
            "bot.yaml:3: unknown key 'answers': use rules, default",
        ),
        ("rules:\n  - {user: a}\n", "bot.yaml:2: rule 1: 'reply' must be a non-empty text"),
        (
            "rules:\n  - user: a\n    reply: b\n    ask: c\n    ask_share: 150%\n",
            "bot.yaml:5: rule 1: ask_share '150%' is over 100%",
        ),
        (
            "rules:\n  - {user: a, reply: b, ask_share: 10%}\n",
            "bot.yaml:2: rule 1: 'ask_share' goes with 'ask'",
        ),
        (
            "rules:\n  - {user: a, reply: b}\n  - {user: '(x', reply: b}\n",
            "bot.yaml:3: rule 2: 'user' is not a regular expression",
        ),
        ("rules:\n  - {user: a, reply: b, question: c}\n", "bot.yaml:2: rule 1: unknown key 'question'"),
        ("rules:\n  - [a, b]\n", "bot.yaml:2: rule 1 must be a mapping"),
        ("rules:\n  - {user: a, reply: b}\ndefault: yes\n", "bot.yaml:3: 'default' must be a non-empty text"),
        ("rules: [\n", "bot.yaml:2: "),
    ],
)
def test_a_bad_bot_file_is_one_line_with_its_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bot.yaml"
    path.write_text(text)
    with pytest.raises(BotError) as info:
        load_bot(path)
    assert str(info.value).startswith(f"{tmp_path}/{expected}"), str(info.value)


def test_a_missing_bot_file_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert mock_main(["--bot", str(tmp_path / "nope.yaml")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines() == [f"{ERROR_PREFIX}--bot {tmp_path / 'nope.yaml'}: no such file"]


def test_the_mock_plays_the_bot_with_its_timings_and_faults(client: httpx.Client) -> None:
    args = ("--bot", str(BOT_FILE), "--ttft", "const:30ms", "--itl", "const:1ms", "--chunks", "const:3")
    with mock_in_thread(*args, "--fault", "http_429=50%", api_key=KEY) as m:
        served = [turn(client, m.url, body_for("nlx", user("It's 58213"))) for _ in range(20)]
        whole = [t for t in served if t.status == 200]
        assert whole and {t.status for t in served} == {200, 429}  # faults are drawn as without a bot
        for streamed in whole:
            assert streamed.contents and "".join(streamed.contents) == "Thanks! Your order ships tomorrow."
            assert len(streamed.contents) == 3 and streamed.first_content_s >= 0.03


@background
def orphaned_mock(folder: Path) -> Finish:
    """A process that starts a mock, killed with SIGKILL as soon as the mock runs: it runs none of its
    own clean-up. The result: whether the mock was gone within 10 s, and the mock's process id."""
    code = (
        "import sys; from loadtest.mock.launch import start_mock; "
        "m = start_mock([]); print(m.process.pid, flush=True); sys.stdin.read()"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, NLX_API_KEY=KEY),
    )  # fmt: skip

    def finish() -> tuple[bool, int]:
        assert parent.stdout is not None
        try:
            mock_pid = int(parent.stdout.readline())
        finally:
            parent.kill()
            parent.communicate()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{mock_pid}").exists() and _state(mock_pid) != "Z":
            if time.monotonic() > deadline:
                return False, mock_pid
            time.sleep(0.05)  # between looks at /proc
        return True, mock_pid

    return finish


def test_the_mock_dies_with_the_process_that_started_it(orphaned_mock: tuple[bool, int]) -> None:
    gone, mock_pid = orphaned_mock
    assert gone, f"the mock {mock_pid} outlived the process that started it"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "gone"
