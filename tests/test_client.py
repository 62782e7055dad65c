"""One streamed turn: timestamps, reassembly and every failure kind, over httpx.MockTransport."""

from __future__ import annotations

import unittest.mock
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadtest import client
from loadtest.catalog import PROTOCOL_KEYS
from loadtest.client import TurnResult, make_client, stream_turn
from loadtest.options import OPENAI_PATH, TRANSPORTS
from loadtest.phases import Connection
from tests.mockthread import ThreadedMock

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


# Events as a server that flushes per token sends them, one read each: the decoder's shortcut for a
# read that is one whole `data: ` event must give what reading the same bytes one at a time gives.
READ_PIECES = [
    chunk("", role="assistant"),
    chunk("Hel"),
    chunk("lo, a longer piece of the answer \u00e9 " * 3),
    chunk(finish="stop"),
    b"data: " + b"x" * 40 + b"\n\n",
    b"data: [DONE]\n\n",
    b": keep-alive\n\n",
    b"data: {}\r\n\r\n",
    b'data: {"choices":\ndata: []}\n\n',
    b'data: {"choices":\rdata: []}\n\n',
    b"\xef\xbb\xbfdata: {}\n\n",
    b"data: " + chunk("tail")[6:-2],
]


def same_turn(result: TurnResult) -> tuple[object, ...]:
    return (result.ok, result.kind, result.content, result.chunks, result.done, result.protocol)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(READ_PIECES), min_size=1, max_size=12), st.sampled_from([None, 8, 30, 60, 200])
)
def test_reads_of_one_event_each_give_what_a_byte_at_a_time_gives(
    pieces: list[bytes], cap: int | None
) -> None:
    data = b"".join(pieces)
    results = []
    for reads in (pieces, [data[i : i + 1] for i in range(len(data))]):
        with httpx.Client(transport=httpx.MockTransport(sse(reads))) as client:
            results.append(stream_turn(client, URL, BODY, api_key=KEY, max_event_bytes=cap))
    per_event, per_byte = results
    assert same_turn(per_event) == same_turn(per_byte)


def raw_chunk(delta: object, *, finish: object = None, chunk_id: str = "x", **extra: object) -> bytes:
    obj = {"id": chunk_id, "object": "chat.completion.chunk", "system_fingerprint": "fp-1"}
    obj["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]  # type: ignore[assignment]
    return b"data: " + orjson.dumps({**obj, **extra}) + b"\n\n"


CONTENTS = ["Hel", "lo", 'a "quoted" \\ back', "\u2028", "wörld 日本 🚀", "x", "Hel", "", "\x01probe", " "]
# Events that keep or break a stream's plain-content shape: another content, the same content twice,
# a finish with content, another id, content that is no string, reasoning beside it, usage, an error,
# other spacing, bytes that are not UTF-8, and events around the content that are not JSON.
SHAPE_EVENTS = [
    *(raw_chunk({"content": text}) for text in CONTENTS),
    raw_chunk({"content": "end"}, finish="stop"),
    raw_chunk({"content": "other id"}, chunk_id="y"),
    raw_chunk({"content": 7}),
    raw_chunk({"content": None}),
    raw_chunk({"content": "both", "reasoning_content": "think"}),
    raw_chunk({"content": "with usage"}, usage={"prompt_tokens": 3, "completion_tokens": 4}),
    raw_chunk({"content": "x"}, error={"message": "boom"}),
    raw_chunk({"content": "x"}).replace(b'"content":', b'"content" : '),
    raw_chunk({"content": "é"}).replace("é".encode(), b"\xe9"),
    raw_chunk({"content": "x"}, chunk_id="\u00e9").replace("é".encode(), b"\xe9"),
    raw_chunk({"content": "Hel"}).replace(b'"Hel"', b'"Hel","content":"lo"'),
    raw_chunk({"content": "Hel"}).replace(b'"Hel"', b'"Hel" "lo"'),
    b'data: {"choices":[]}\n\n',
    b"data: [DONE]\n\n",
]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(SHAPE_EVENTS), min_size=1, max_size=10))
def test_content_read_by_the_streams_shape_is_what_parsing_each_chunk_gives(events: list[bytes]) -> None:
    results = []
    for learn in (True, False):
        with unittest.mock.patch.object(client, "_learn_shape", client._learn_shape if learn else _no_shape):
            results.append(run(sse([chunk("", role="assistant"), *events])))
    shaped, parsed = results
    assert (shaped.ok, shaped.kind, shaped.detail, shaped.content, shaped.chunks, len(shaped.itl_ns)) == (
        parsed.ok,
        parsed.kind,
        parsed.detail,
        parsed.content,
        parsed.chunks,
        len(parsed.itl_ns),
    )
    assert (shaped.done, shaped.finish_reason, shaped.system_fingerprint, shaped.protocol) == (
        parsed.done,
        parsed.finish_reason,
        parsed.system_fingerprint,
        parsed.protocol,
    )
    assert (shaped.reasoning_chars, shaped.prompt_tokens, shaped.completion_tokens) == (
        parsed.reasoning_chars,
        parsed.prompt_tokens,
        parsed.completion_tokens,
    )


def _no_shape(*args: object) -> None:
    return None


def test_a_streams_content_chunks_after_the_first_are_read_by_its_shape() -> None:
    learned: list[object] = []
    learn_shape = client._learn_shape

    def learn(*args: Any) -> object:
        learned.append(learn_shape(*args))
        return learned[-1]

    with unittest.mock.patch.object(client, "_learn_shape", learn):
        r = run(sse([chunk("", role="assistant"), *(raw_chunk({"content": f"w{i} "}) for i in range(5))]))
    assert r.content == "w0 w1 w2 w3 w4 " and r.chunks == 5
    # Learned once, from the first content chunk, and it is that chunk's bytes around its content.
    (shape,) = learned
    assert shape == (
        raw_chunk({"content": "w0 "})[6:].split(b'"w0 "')[0],
        b'},"logprobs":null,"finish_reason":null}]}',
    )


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


# --- reasoning, usage, connection and the split of a turn's time ----------------------------------------


def reasoning(text: str, field: str = "reasoning_content") -> bytes:
    obj = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {field: text}}]}
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def usage(prompt: int, completion: int, reasoning_tokens: int | None = None) -> bytes:
    counts: dict[str, object] = {"prompt_tokens": prompt, "completion_tokens": completion}
    if reasoning_tokens is not None:
        counts["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
    return (
        b"data: "
        + orjson.dumps({"object": "chat.completion.chunk", "choices": [], "usage": counts})
        + b"\n\n"
    )


def test_reasoning_is_timed_and_counted_apart_and_usage_is_read() -> None:
    r = run(
        sse(
            [
                chunk("", role="assistant"),
                reasoning("Let me think"),
                reasoning(", then answer", field="reasoning"),
                chunk("Hi"),
                chunk(" there"),
                chunk(finish="stop"),
                usage(12, 9, reasoning_tokens=5),
                b"data: [DONE]\n\n",
            ]
        )
    )
    assert r.ok and r.content == "Hi there" and r.chunks == 2 and len(r.itl_ns) == 1
    assert r.reasoning_chars == len("Let me think, then answer")
    assert r.t_first_reasoning_ns is not None and r.t_first_content_ns is not None
    # TTFT is the first answer content, after the reasoning.
    assert r.t_first_event_ns <= r.t_first_reasoning_ns < r.t_first_content_ns  # type: ignore[operator]
    assert r.ttfr_ns is not None and r.ttft_ns is not None and r.ttfr_ns < r.ttft_ns
    assert (r.prompt_tokens, r.completion_tokens, r.reasoning_tokens) == (12, 9, 5)
    # Neither reasoning nor the usage chunk is a role-only chunk.
    assert r.protocol == {"role_only_chunks": 1}


def test_a_stream_of_reasoning_and_usage_without_an_answer_has_no_content() -> None:
    r = run(sse([reasoning("thinking"), chunk(finish="stop"), usage(3, 4), b"data: [DONE]\n\n"]))
    assert not r.ok and r.kind == "no_content"
    assert r.content == "" and r.reasoning_chars == len("thinking") and r.completion_tokens == 4


def test_without_usage_there_are_no_token_counts() -> None:
    r = run(sse(STREAM))
    assert r.ok and (r.prompt_tokens, r.completion_tokens, r.reasoning_tokens) == (None, None, None)
    assert r.tpot_ns is None and r.output_tps is None and r.ttfr_ns is None and r.reasoning_chars == 0


MS = 1_000_000


def timed(**fields: object) -> TurnResult:
    """A succeeded turn that started at 0: headers at 100 ms, first content at 300 ms, last event at 1.3 s."""
    base: dict[str, object] = {
        "ok": True,
        "kind": None,
        "detail": "",
        "status": 200,
        "t_start_ns": 0,
        "t_end_ns": 1400 * MS,
        "t_headers_ns": 100 * MS,
        "t_first_event_ns": 250 * MS,
        "t_first_content_ns": 300 * MS,
        "t_last_event_ns": 1300 * MS,
    }
    return TurnResult(**{**base, **fields})  # type: ignore[arg-type]


def test_tpot_and_output_rate_from_the_completion_tokens() -> None:
    r = timed(completion_tokens=11)
    assert r.ttfb_ns == 100 * MS
    assert r.tpot_ns == 100 * MS  # 1 s after the first token / 10 more tokens
    assert r.output_tps == pytest.approx(11.0)  # 11 tokens / 1 s
    # Reasoning streamed first: the completion tokens streamed from the first reasoning chunk on.
    thinking = timed(completion_tokens=13, t_first_reasoning_ns=200 * MS)
    assert thinking.tpot_ns == 1100 * MS // 12 and thinking.output_tps == pytest.approx(13 / 1.1)
    one_read = timed(completion_tokens=11, t_first_content_ns=1300 * MS)
    for no_rate in (
        timed(completion_tokens=1),
        timed(),
        timed(completion_tokens=11, t_last_event_ns=None),
        one_read,
    ):
        assert no_rate.tpot_ns is None and no_rate.output_tps is None


def test_the_time_split_adds_up_to_the_latency() -> None:
    fresh = Connection(new=True, dns_ns=5 * MS, connect_ns=10 * MS, tls_ns=30 * MS)
    r = timed(connection=fresh, pool_wait_ns=1 * MS)
    assert r.setup_ns == 46 * MS
    assert r.time_split_ns() == (46 * MS, 54 * MS, 200 * MS, 1000 * MS)
    assert sum(r.time_split_ns() or ()) == r.latency_ns
    reused = timed(
        connection=Connection(new=False, dns_ns=None, connect_ns=None, tls_ns=None), pool_wait_ns=MS
    )
    assert reused.time_split_ns() == (1 * MS, 99 * MS, 200 * MS, 1000 * MS)
    assert timed().time_split_ns() == (0, 100 * MS, 200 * MS, 1000 * MS)
    assert timed(ok=False, kind="assertion").time_split_ns() is None


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_users_first_turn_opens_a_connection_and_the_next_reuses_it(
    transport: str, thread_mock: Callable[..., ThreadedMock]
) -> None:
    mock = thread_mock(api_key=KEY)
    waits: list[int] = []
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with make_client(transport=transport) as client:
        url = mock.base + OPENAI_PATH
        first, second = (
            stream_turn(client, url, body, api_key=KEY, on_pool_wait=waits.append) for _ in range(2)
        )
    assert first.ok and second.ok, (first.detail, second.detail)
    assert first.connection is not None and first.connection.new
    assert first.connection.connect_ns is not None and first.connection.connect_ns > 0
    assert first.connection.tls_ns is None  # plain HTTP
    assert second.connection is not None and not second.connection.new
    assert len(waits) == 2 and first.pool_wait_ns == waits[0] and second.pool_wait_ns == waits[1]
    assert second.setup_ns == second.pool_wait_ns


def test_a_turn_that_got_no_connection_has_none() -> None:
    with make_client(connect_timeout=2) as client:
        r = stream_turn(client, "http://127.0.0.1:9/v1/chat/completions", BODY, api_key=KEY)
    assert not r.ok and r.kind == "connect" and r.connection is None and r.setup_ns is None
