"""One streamed turn: timestamps, reassembly and every failure kind, over httpx.MockTransport."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import orjson
import pytest

from loadtest.catalog import PROTOCOL_KEYS
from loadtest.client import TurnResult, stream_turn

URL = "https://apps.nlx.ai/v1/dep/web-en-US/chat/completions"
KEY = "sk-secret-key-123"
BODY = {"model": "nlx:c1", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def chunk(content: str | None = None, *, role: str | None = None, finish: str | None = None) -> bytes:
    delta: dict[str, str] = {}
    if role:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    obj = {
        "id": "x",
        "object": "chat.completion.chunk",
        "system_fingerprint": "fp-1",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(obj) + b"\n\n"


STREAM = [
    chunk("", role="assistant"),
    chunk("Hel"),
    chunk("lo \u2028 wörld"),
    chunk(finish="stop"),
    b"data: [DONE]\n\n",
]


def run(handler: Callable[[httpx.Request], httpx.Response]) -> TurnResult:
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        return stream_turn(client, URL, BODY, api_key=KEY)


def sse(
    pieces: list[bytes], status: int = 200, content_type: str = "text/event-stream"
) -> Callable[..., httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers={"content-type": content_type}, content=iter(pieces))

    return handler


def test_a_good_stream_is_reassembled_with_ordered_timestamps() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return sse(STREAM)(request)

    r = run(handler)
    assert r.ok and r.kind is None
    assert r.content == "Hello \u2028 wörld"
    assert r.chunks == 2 and len(r.itl_ns) == 1
    assert r.done and r.finish_reason == "stop" and r.system_fingerprint == "fp-1"
    assert r.protocol == {"role_only_chunks": 1}
    assert r.t_start_ns <= r.t_headers_ns <= r.t_first_event_ns <= r.t_first_content_ns <= r.t_last_event_ns  # type: ignore[operator]
    assert r.ttft_ns is not None and r.ttft_ns <= r.latency_ns
    request = seen[0]
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert orjson.loads(request.content) == BODY


def test_stream_split_at_every_byte_gives_the_same_content() -> None:
    data = b"".join(STREAM)
    r = run(sse([data[i : i + 1] for i in range(len(data))]))
    assert r.ok and r.content == "Hello \u2028 wörld" and r.chunks == 2


def test_stream_without_done_is_ok_and_counted() -> None:
    r = run(sse(STREAM[:-1]))
    assert r.ok and not r.done
    assert r.protocol.get("no_done") == 1


@pytest.mark.parametrize("status", [400, 401, 429, 500, 503])
def test_http_errors_are_failed_turns_with_kind_and_redacted_body(status: int) -> None:
    body = orjson.dumps({"error": {"message": f"bad key {KEY}"}})
    r = run(
        lambda request: httpx.Response(status, content=body, headers={"content-type": "application/json"})
    )
    assert not r.ok and r.kind == f"http_{status}" and r.status == status
    assert KEY not in r.detail and "***" in r.detail


def test_error_event_inside_the_stream_fails_the_turn() -> None:
    r = run(sse([chunk("Hi"), b'data: {"error": {"message": "upstream failed"}}\n\n']))
    assert not r.ok and r.kind == "stream_error" and "upstream failed" in r.detail
    assert r.content == "Hi"


def test_malformed_json_event_fails_the_turn() -> None:
    r = run(sse([chunk("Hi"), b"data: {not json\n\n"]))
    assert not r.ok and r.kind == "bad_json"


def test_invalid_utf8_in_a_chunk_reads_as_replacement_characters() -> None:
    bad = chunk("caf\u00e9").replace("\u00e9".encode(), b"\xe9")
    r = run(sse([bad, chunk("!"), b"data: [DONE]\n\n"]))
    assert r.ok and r.content == "caf\ufffd!" and r.done


def test_done_with_whitespace_and_events_after_it_are_counted() -> None:
    r = run(sse([chunk("Hi"), b"data:  [DONE] \n\n", chunk("late"), b"data: [DONE]\n\n"]))
    assert r.ok and r.done and r.content == "Hi"
    assert r.protocol == {"events_after_done": 2}


def test_wrong_content_type_and_json_error_body() -> None:
    r = run(sse([b"<html>oops</html>"], content_type="text/html"))
    assert not r.ok and r.kind == "content_type"
    r = run(sse([b'{"error": {"message": "nope"}}'], content_type="application/json"))
    assert not r.ok and r.kind == "error_body" and "nope" in r.detail


def test_stream_with_no_content_fails() -> None:
    r = run(sse([chunk("", role="assistant"), b"data: [DONE]\n\n"]))
    assert not r.ok and r.kind == "no_content"


def cut_after(pieces: list[bytes], exc: Exception) -> Callable[..., httpx.Response]:
    def gen() -> Iterator[bytes]:
        yield from pieces
        raise exc

    return lambda request: httpx.Response(200, headers={"content-type": "text/event-stream"}, content=gen())


def test_cut_stream_is_a_disconnect() -> None:
    r = run(cut_after([chunk("Hel"), b'data: {"choi'], httpx.RemoteProtocolError("peer closed connection")))
    assert not r.ok and r.kind == "disconnect" and r.content == "Hel"


def test_a_stall_mid_stream_is_an_idle_timeout() -> None:
    r = run(cut_after([chunk("Hel")], httpx.ReadTimeout("timed out")))
    assert not r.ok and r.kind == "idle_timeout"


def test_no_headers_in_time_is_a_first_byte_timeout() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out")

    assert run(handler).kind == "first_byte_timeout"


def test_connect_timeout() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("timed out")

    assert run(handler).kind == "connect_timeout"


def test_connect_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot connect with {KEY}")

    r = run(handler)
    assert not r.ok and r.kind == "connect" and KEY not in r.detail


def test_event_larger_than_the_cap() -> None:
    big = b"data: " + b"x" * 5000 + b"\n\n"
    with httpx.Client(transport=httpx.MockTransport(sse([big]))) as client:
        r = stream_turn(client, URL, BODY, api_key=KEY, max_event_bytes=1000)
    assert not r.ok and r.kind == "event_too_large"


def test_every_protocol_count_the_client_keeps_is_in_the_catalog() -> None:
    # Each quirk once: a BOM, a comment (whose blank line is an empty event), a role-only chunk, no
    # [DONE], no blank line after the last event; then events after [DONE].
    quirky = run(
        sse([b"\xef\xbb\xbf: keep-alive\n\n", chunk("", role="assistant"), chunk("Hi"), b"data: {}"])
    )
    late = run(sse([chunk("Hi"), b"data: [DONE]\n\n", chunk("late")]))
    keys = {*quirky.protocol, *late.protocol}
    assert keys == PROTOCOL_KEYS, keys ^ PROTOCOL_KEYS
