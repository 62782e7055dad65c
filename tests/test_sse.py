"""Tests for loadtest.sse: spec vectors under every chunking, a reference decoder, size limits."""

from __future__ import annotations

import dataclasses
import re
import sys
from typing import Any, NamedTuple

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadtest.errors import EventTooLarge, StreamProtocolError
from loadtest.sse import Event, SSEDecoder

Row = tuple[str, str, str | None, int | None]  # (event, data, id, retry)

COUNTERS = ("events", "comments", "empty_events", "bom", "unterminated_tail", "bytes")


def rows(events: list[Event]) -> list[Row]:
    return [(e.event, e.data, e.id, e.retry) for e in events]


def counters(dec: SSEDecoder) -> dict[str, int]:
    return {name: getattr(dec, name) for name in COUNTERS}


def run(chunks: list[bytes], **kwargs: Any) -> tuple[list[Event], SSEDecoder]:
    """Feed chunk i with t_ns=i, then close."""
    dec = SSEDecoder(**kwargs)
    out: list[Event] = []
    for i, chunk in enumerate(chunks):
        out += dec.feed(chunk, i)
    assert dec.close() == []
    return out, dec


def split(stream: bytes, *points: int) -> list[bytes]:
    bounds = [0, *points, len(stream)]
    return [stream[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def msg(data: str, id: str | None = None, retry: int | None = None, event: str = "message") -> Row:
    return (event, data, id, retry)


# --- spec vectors -------------------------------------------------------------------------------


class Vector(NamedTuple):
    stream: bytes
    rows: list[Row]
    comments: int = 0
    empty_events: int = 0
    bom: int = 0
    unterminated_tail: int = 0

    def counters(self) -> dict[str, int]:
        return {
            "events": len(self.rows),
            "comments": self.comments,
            "empty_events": self.empty_events,
            "bom": self.bom,
            "unterminated_tail": self.unterminated_tail,
            "bytes": len(self.stream),
        }


def _chunk(content: str | None, *, role: bool = False, finish: str | None = None) -> bytes:
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = "assistant"
    if content is not None:
        delta["content"] = content
    return orjson.dumps(
        {
            "id": "chatcmpl-AbC123xYz",
            "object": "chat.completion.chunk",
            "created": 1718000000,
            "model": "gpt-4o-mini-2024-07-18",
            "system_fingerprint": "fp_0ba0d124f1",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
    )


OPENAI_CHUNKS = [
    _chunk("", role=True),
    _chunk("Hello"),
    _chunk(", wörld"),
    _chunk(" \u2028 line\u2029 sep 😀"),
    _chunk(None, finish="stop"),
]
OPENAI_TEXT = "Hello, wörld \u2028 line\u2029 sep 😀"
OPENAI_STREAM = b"".join(b"data: " + c + b"\n\n" for c in OPENAI_CHUNKS) + b"data: [DONE]\n\n"
OPENAI_ROWS = [msg(c.decode()) for c in OPENAI_CHUNKS] + [msg("[DONE]")]

VECTORS: dict[str, Vector] = {
    "empty stream": Vector(b"", []),
    "lf": Vector(b"data: a\n\n", [msg("a")]),
    "cr": Vector(b"data: a\r\r", [msg("a")]),
    "crlf": Vector(b"data: a\r\n\r\n", [msg("a")]),
    "mixed endings": Vector(b"data: a\rdata: b\ndata: c\r\n\r\n", [msg("a\nb\nc")]),
    "crlf then lf": Vector(b"data:a\r\n\n", [msg("a")]),
    "lf cr is two ends": Vector(b"data:a\n\rdata:b\n\r", [msg("a"), msg("b")]),
    "cr crlf": Vector(b"data:a\r\r\n", [msg("a")]),
    "cr cr cr": Vector(b"data:a\r\r\r", [msg("a")], empty_events=1),
    "extra blank line": Vector(b"data:a\n\n\n", [msg("a")], empty_events=1),
    "only blank lines": Vector(b"\n\r\n\r", [], empty_events=3),
    "bom": Vector(b"\xef\xbb\xbfdata:a\n\n", [msg("a")], bom=1),
    "bom only": Vector(b"\xef\xbb\xbf", [], bom=1),
    "partial bom at close": Vector(b"\xef\xbb", [], unterminated_tail=1),
    "second bom kept": Vector(
        b"\xef\xbb\xbf\xef\xbb\xbfdata:a\n\ndata:b\n\n", [msg("b")], bom=1, empty_events=1
    ),
    "bom after start kept": Vector(b"\n\xef\xbb\xbfdata:a\n\ndata:b\n\n", [msg("b")], empty_events=2),
    "broken bom": Vector(b"\xef\xbbdata:a\n\ndata:b\n\n", [msg("b")], empty_events=1),
    "comments": Vector(b": hello\n:\ndata:a\n: mid\n\n", [msg("a")], comments=3),
    "keepalive comment": Vector(b": ping\n\n", [], comments=1, empty_events=1),
    "multiline data": Vector(b"data:a\ndata:\ndata: b\n\n", [msg("a\n\nb")]),
    "one space stripped": Vector(b"data:  two\n\ndata:\tt\n\ndata: \n\n", [msg(" two"), msg("\tt"), msg("")]),
    "colon in value": Vector(b"data: a:b: c\n\n", [msg("a:b: c")]),
    "data without colon": Vector(b"data\n\ndata\ndata\n\n", [msg(""), msg("\n")]),
    "empty data dispatched": Vector(b"data:\n\n", [msg("")]),
    "no data not dispatched": Vector(b"event: x\n\nid: 1\n\n", [], empty_events=2),
    "event type": Vector(b"event: add\ndata:1\n\ndata:2\n\n", [msg("1", event="add"), msg("2")]),
    "event type reset without data": Vector(b"event: add\n\ndata:2\n\n", [msg("2")], empty_events=1),
    "empty event type": Vector(b"event: a\nevent:\ndata:1\n\n", [msg("1")]),
    "id persists": Vector(
        b"id: 1\ndata:a\n\ndata:b\n\nid\ndata:c\n\n", [msg("a", "1"), msg("b", "1"), msg("c", "")]
    ),
    "id with nul ignored": Vector(b"id: 1\n\nid: 2\x003\ndata:a\n\n", [msg("a", "1")], empty_events=1),
    "id before blank then data": Vector(b"id: 5\n\ndata: x\n\n", [msg("x", "5")], empty_events=1),
    "retry digits only": Vector(
        "retry: 10\ndata:a\n\nretry: 1a\ndata:b\n\nretry:\ndata:c\n\nretry:  5\nretry: -5\n"
        "retry: ٣\nretry: 5.0\ndata:d\n\nretry:0020\ndata:e\n\n".encode(),
        [msg("a", retry=10), msg("b", retry=10), msg("c", retry=10), msg("d", retry=10), msg("e", retry=20)],
    ),
    "retry without colon": Vector(b"retry\nretry:7\nretry\ndata:a\n\n", [msg("a", retry=7)]),
    "unknown fields": Vector(b"foo: bar\ndata:a\nDATA:b\ndata :c\n data:d\n\n", [msg("a")]),
    "space only line": Vector(b" \n\n", [], empty_events=1),
    "unterminated data": Vector(b"data:a\n\ndata:b\n", [msg("a")], unterminated_tail=1),
    "unterminated partial line": Vector(b"data:a\n\ndata:b", [msg("a")], unterminated_tail=1),
    "unterminated event field": Vector(b"event: x\n", [], unterminated_tail=1),
    "unterminated id field": Vector(b"data:a\n\nid: 3\n", [msg("a")], unterminated_tail=1),
    "trailing comment is not an event": Vector(b"data:a\n\n: bye\n", [msg("a")], comments=1),
    "trailing cr ends the event": Vector(b"data:a\r\r", [msg("a")]),
    "utf8 multibyte": Vector("data: héllo €𝄞\n\n".encode(), [msg("héllo €𝄞")]),
    "utf8 in event and id": Vector("event: ñ\nid: ü\ndata:x\n\n".encode(), [msg("x", "ü", event="ñ")]),
    "invalid utf8 replaced": Vector(
        b"data: \xff\xfe\xe2\x82\n\n", [msg(b"\xff\xfe\xe2\x82".decode("utf-8", "replace"))]
    ),
    "nul in data kept": Vector(b"data: a\x00b\n\n", [msg("a\x00b")]),
    "unicode line separators are not line ends": Vector(
        "data: a\u2028b\u2029c\x85d\x0ce\x0bf\x1cg\n\n".encode(), [msg("a\u2028b\u2029c\x85d\x0ce\x0bf\x1cg")]
    ),
    "json with u2028": Vector(b'data: {"t":"a\xe2\x80\xa8b"}\r\n\r\n', [msg('{"t":"a\u2028b"}')]),
    "done without space": Vector(b"data:[DONE]\n\n", [msg("[DONE]")]),
    "done with space": Vector(b"data: [DONE]\n\n", [msg("[DONE]")]),
    "openai stream": Vector(OPENAI_STREAM, OPENAI_ROWS),
    "openai stream crlf with comments": Vector(
        b": OPENROUTER PROCESSING\r\n\r\n" + OPENAI_STREAM.replace(b"\n", b"\r\n"),
        OPENAI_ROWS,
        comments=1,
        empty_events=1,
    ),
}

VECTOR_PARAMS = [pytest.param(v, id=name) for name, v in VECTORS.items()]
SHORT_VECTOR_PARAMS = [pytest.param(v, id=name) for name, v in VECTORS.items() if len(v.stream) <= 48]


def dispatch_offsets(stream: bytes) -> list[int]:
    """The index of the byte that completed each event, found by feeding one byte at a time."""
    events, _ = run([stream[i : i + 1] for i in range(len(stream))])
    return [e.t_ns for e in events]


def check_chunking(v: Vector, chunks: list[bytes], offsets: list[int]) -> None:
    events, dec = run(chunks)
    assert rows(events) == v.rows, chunks
    assert counters(dec) == v.counters(), chunks
    # t_ns is that of the feed holding the byte that completed the event.
    starts = [sum(len(c) for c in chunks[:i]) for i in range(len(chunks))]
    expected_t = [max(i for i, s in enumerate(starts) if s <= off and chunks[i]) for off in offsets]
    assert [e.t_ns for e in events] == expected_t, chunks


@pytest.mark.parametrize("v", VECTOR_PARAMS)
def test_vector_whole(v: Vector) -> None:
    events, dec = run([v.stream])
    assert rows(events) == v.rows
    assert counters(dec) == v.counters()
    assert all(e.t_ns == 0 for e in events)


@pytest.mark.parametrize("v", VECTOR_PARAMS)
def test_vector_one_byte_at_a_time(v: Vector) -> None:
    events, dec = run([v.stream[i : i + 1] for i in range(len(v.stream))])
    assert rows(events) == v.rows
    assert counters(dec) == v.counters()


@pytest.mark.parametrize("v", VECTOR_PARAMS)
def test_vector_two_feeds(v: Vector) -> None:
    offsets = dispatch_offsets(v.stream)
    for i in range(len(v.stream) + 1):
        check_chunking(v, split(v.stream, i), offsets)


@pytest.mark.parametrize("v", SHORT_VECTOR_PARAMS)
def test_vector_three_feeds(v: Vector) -> None:
    offsets = dispatch_offsets(v.stream)
    n = len(v.stream)
    for i in range(n + 1):
        for j in range(i, n + 1):
            check_chunking(v, split(v.stream, i, j), offsets)


@pytest.mark.parametrize("v", VECTOR_PARAMS)
def test_vector_matches_reference(v: Vector) -> None:
    assert reference(v.stream) == (v.rows, {k: n for k, n in v.counters().items() if k != "bytes"})


# --- line ends, BOM and UTF-8 across feeds -------------------------------------------------------


def test_cr_then_lf_in_next_feed_is_one_line_end() -> None:
    events, dec = run([b"data:a\r", b"\ndata:b\r", b"\n\r", b"\n"])
    assert rows(events) == [msg("a\nb")]
    assert dec.empty_events == 0
    assert events[0].t_ns == 2


def test_empty_feed_between_cr_and_lf() -> None:
    events, dec = run([b"data:a\r", b"", b"\n", b"", b"\r", b"", b"\n"])
    assert rows(events) == [msg("a")]
    assert events[0].t_ns == 4
    assert dec.empty_events == 0


def test_lone_lf_feed_after_cr_feed() -> None:
    dec = SSEDecoder()
    assert dec.feed(b"data:a\r\r", 1) == [Event("a", "message", None, None, 1)]
    assert dec.feed(b"\n", 2) == []
    assert dec.feed(b"\n", 3) == []
    assert dec.empty_events == 1


def test_bom_split_across_feeds_with_empty_feeds() -> None:
    events, dec = run([b"", b"\xef", b"", b"\xbb", b"\xbfdata:a\n\n"])
    assert rows(events) == [msg("a")]
    assert dec.bom == 1


def test_bom_split_then_second_bom() -> None:
    events, dec = run([b"\xef\xbb", b"\xbf\xef", b"\xbb\xbfdata:a\n\n"])
    assert rows(events) == []
    assert (dec.bom, dec.empty_events) == (1, 1)


@pytest.mark.parametrize("char", ["é", "€", "𝄞", "\u2028", "\ufeff"])
def test_multibyte_character_split_at_every_byte(char: str) -> None:
    stream = f"event: {char}\nid: {char}\ndata: {char}{char}\n\n".encode()
    for i in range(len(stream) + 1):
        for j in range(i, min(i + 5, len(stream)) + 1):
            events, _ = run(split(stream, i, j))
            assert rows(events) == [(char, char * 2, char, None)]


def test_u2028_payload_is_one_line_and_parses_as_json() -> None:
    payload = {"choices": [{"delta": {"content": "a\u2028b\u2029c\x85d\x0ce"}}]}
    body = orjson.dumps(payload)
    assert "\u2028".encode() in body
    events, _ = run([b"data: " + body[:20], body[20:] + b"\n\n"])
    assert len(events) == 1
    assert events[0].json() == payload


# --- Event ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stream", "done"),
    [
        (b"data:[DONE]\n\n", True),
        (b"data: [DONE]\n\n", True),
        (b"data:  [DONE]\n\n", True),
        (b"data: [DONE]\ndata:\n\n", True),
        (b"data: [DONE]\r\n\r\n", True),
        (b"data: [done]\n\n", False),
        (b"data: [DONE] x\n\n", False),
        (b'data: "[DONE]"\n\n', False),
        (b"data: {}\n\n", False),
        (b"event: [DONE]\ndata: x\n\n", False),
    ],
)
def test_is_done(stream: bytes, done: bool) -> None:
    events, _ = run([stream])
    assert [e.is_done for e in events] == [done]


def test_json() -> None:
    assert Event('{"a": [1, "é"]}', "message", None, None, 0).json() == {"a": [1, "é"]}
    for bad in ["[DONE]", "", "{", "{} {}"]:
        with pytest.raises(orjson.JSONDecodeError):
            Event(bad, "message", None, None, 0).json()
        with pytest.raises(ValueError):
            Event(bad, "message", None, None, 0).json()


def test_event_is_frozen_and_slotted() -> None:
    event = Event("x", "message", "1", 5, 7)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.data = "y"  # type: ignore[misc]
    assert not hasattr(event, "__dict__")


def test_openai_stream_content() -> None:
    events, dec = run(split(OPENAI_STREAM, 100, 101, 700))
    assert events[-1].is_done
    assert not any(e.is_done for e in events[:-1])
    chunks = [e.json() for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == OPENAI_TEXT
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert (dec.events, dec.unterminated_tail) == (len(OPENAI_CHUNKS) + 1, 0)


# --- t_ns ----------------------------------------------------------------------------------------


def test_t_ns_is_that_of_the_completing_feed() -> None:
    dec = SSEDecoder()
    assert dec.feed(b"data: a", 1) == []
    assert dec.feed(b"\n", 2) == []
    assert dec.feed(b"\ndata: b\n\ndata: c\n", 3) == [Event("a", "message", None, None, 3)] + [
        Event("b", "message", None, None, 3)
    ]
    assert dec.feed(b"\n", 4) == [Event("c", "message", None, None, 4)]


def test_t_ns_cr_completes_before_its_lf() -> None:
    dec = SSEDecoder()
    assert dec.feed(b"data: a\r\n\r", 1) == [Event("a", "message", None, None, 1)]
    assert dec.feed(b"\n", 2) == []
    assert dec.close() == []
    assert (dec.events, dec.empty_events, dec.unterminated_tail) == (1, 0, 0)


def test_default_t_ns_is_zero() -> None:
    assert SSEDecoder().feed(b"data: a\n\n") == [Event("a", "message", None, None, 0)]


# --- close ---------------------------------------------------------------------------------------


def test_close_discards_unterminated_event() -> None:
    dec = SSEDecoder()
    assert dec.feed(b"data: a\n\ndata: b\n", 1) == [Event("a", "message", None, None, 1)]
    assert dec.close() == []
    assert (dec.events, dec.unterminated_tail) == (1, 1)


def test_clean_close() -> None:
    dec = SSEDecoder()
    dec.feed(b"data: a\n\n")
    assert dec.close() == []
    assert dec.unterminated_tail == 0


def test_counters_start_at_zero() -> None:
    assert counters(SSEDecoder()) == dict.fromkeys(COUNTERS, 0)


# --- max_event_bytes -----------------------------------------------------------------------------


def raises_too_large(chunks: list[bytes], limit: int) -> bool:
    try:
        run(chunks, max_event_bytes=limit)
    except EventTooLarge as exc:
        assert exc.limit == limit
        return True
    return False


@pytest.mark.parametrize(
    ("stream", "limit", "too_large"),
    [
        (b"data: 12345\n\n", 11, False),  # the line is 11 bytes, the data buffer then 6
        (b"data: 12345\n\n", 10, True),
        (b"data: 12345\ndata: 12345\n\n", 17, False),  # 6 buffered + the 11-byte second line
        (b"data: 12345\ndata: 12345\n\n", 16, True),
        (b"data: 12345\n\n" * 50, 11, False),  # the count starts again at each event
        (b": " + b"c" * 100 + b"\n\n", 50, True),  # a long line is pending whatever its field
        (b"data: 12345", 10, True),  # a partial line counts
        (b"\n\n\n", 0, False),
        (b"data:\n\n", 0, True),
    ],
)
def test_max_event_bytes(stream: bytes, limit: int, too_large: bool) -> None:
    assert raises_too_large([stream], limit) is too_large
    for i in range(len(stream) + 1):
        assert raises_too_large(split(stream, i), limit) is too_large, i
    assert raises_too_large([stream[i : i + 1] for i in range(len(stream))], limit) is too_large


def test_event_too_large_is_a_stream_protocol_error() -> None:
    dec = SSEDecoder(max_event_bytes=1000)
    dec.feed(b"data: " + b"x" * 900 + b"\n", 1)
    with pytest.raises(StreamProtocolError, match="1000 bytes"):
        dec.feed(b"data: " + b"x" * 200, 2)


def test_event_too_large_raised_before_buffering_the_whole_event() -> None:
    dec = SSEDecoder(max_event_bytes=64 * 1024)
    dec.feed(b"data: ")
    piece = b"x" * 4096
    with pytest.raises(EventTooLarge):
        for _ in range(100):
            dec.feed(piece)
    assert dec.bytes <= 64 * 1024 + 6 + 4096


def test_negative_max_event_bytes_rejected() -> None:
    with pytest.raises(ValueError, match="max_event_bytes"):
        SSEDecoder(max_event_bytes=-1)


# --- linear time ---------------------------------------------------------------------------------

BIG = 20 * 1024 * 1024
READ = 4096


def test_huge_single_line_event_in_4k_reads() -> None:
    stream = b"data: " + b"x" * BIG + b"\n\n"
    dec = SSEDecoder()
    out = dec.feed(stream[:READ])
    buffer = dec._partial
    for i in range(READ, len(stream) - 2, READ):
        out += dec.feed(stream[i : min(i + READ, len(stream) - 2)])
    # The partial line grows in place: one buffer, never rebuilt from the pieces on each read.
    assert out == []
    assert dec._partial is buffer
    assert len(buffer) == len(stream) - 2
    out += dec.feed(b"\n\n", 1)
    assert len(out) == 1
    assert out[0].data == "x" * BIG
    assert out[0].t_ns == 1


def test_long_line_one_byte_at_a_time_costs_no_memory_per_byte() -> None:
    dec = SSEDecoder()
    dec.feed(b"data: ")
    for _ in range(100_000):
        dec.feed(b"z")
    assert sys.getsizeof(dec._partial) < 2 * 100_000
    assert dec.feed(b"\n\n") == [Event("z" * 100_000, "message", None, None, 0)]


def test_huge_multiline_event_crlf_in_4k_reads() -> None:
    line = b"data: " + b"y" * 94 + b"\r\n"
    stream = line * (BIG // len(line)) + b"\r\n"
    dec = SSEDecoder()
    out: list[Event] = []
    for i in range(0, len(stream), READ):
        out += dec.feed(stream[i : i + READ])
    assert len(out) == 1
    assert out[0].data == "\n".join(["y" * 94] * (BIG // len(line)))
    assert (dec.empty_events, dec.unterminated_tail) == (0, 0)


def test_many_small_events_in_4k_reads() -> None:
    n = 200_000
    stream = b"".join(b'data: {"i":%d}\n\n' % i for i in range(n))
    dec = SSEDecoder()
    out: list[Event] = []
    for i in range(0, len(stream), READ):
        out += dec.feed(stream[i : i + READ], i)
    assert len(out) == dec.events == n
    assert out[0].json() == {"i": 0}
    assert out[-1].json() == {"i": n - 1}
    assert all(e.data == f'{{"i":{i}}}' for i, e in enumerate(out))


# --- properties against a reference --------------------------------------------------------------


def reference(stream: bytes) -> tuple[list[Row], dict[str, int]]:
    """The WHATWG algorithm done the plain way, on the whole stream at once."""
    text = stream.decode("utf-8", "replace")
    count = {"events": 0, "comments": 0, "empty_events": 0, "bom": 0, "unterminated_tail": 0}
    if text.startswith("\ufeff"):
        text = text[1:]
        count["bom"] = 1
    *lines, tail = re.split("\r\n|\r|\n", text)
    out: list[Row] = []
    data = event_type = ""
    last_id: str | None = None
    retry: int | None = None
    pending = False
    for line in lines:
        if line == "":
            if data == "":
                count["empty_events"] += 1
            else:
                out.append((event_type or "message", data.removesuffix("\n"), last_id, retry))
            data = event_type = ""
            pending = False
            continue
        if line.startswith(":"):
            count["comments"] += 1
            continue
        pending = True
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            event_type = value
        elif name == "data":
            data += value + "\n"
        elif name == "id":
            if "\x00" not in value:
                last_id = value
        elif name == "retry" and value and all("0" <= c <= "9" for c in value):
            retry = int(value)
    count["events"] = len(out)
    count["unterminated_tail"] = int(pending or tail != "")
    return out, count


PIECES = [
    b"data:",
    b"data: ",
    b"data",
    b"event:x",
    b"event:",
    b"id:1",
    b"id:",
    b":c",
    b":",
    b" ",
    b"\r",
    b"\n",
    b"\r\n",
    b"x",
    b"7",
    "é".encode(),
    "\u2028".encode(),
    "😀".encode(),
    b"\xef\xbb\xbf",
    b"\xef\xbb",
    b"\xff",
    b"\x00",
    b"retry:5",
    b"retry:",
    b"[DONE]",
]
streams = st.lists(st.sampled_from(PIECES), max_size=60).map(b"".join)


@st.composite
def chunked(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    stream = draw(streams)
    points = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    return stream, split(stream, *points)


def outcome(chunks: list[bytes]) -> tuple[list[Row], dict[str, int]]:
    events, dec = run(chunks)
    return rows(events), counters(dec)


@settings(max_examples=600, deadline=None)
@given(chunked())
def test_chunked_feeding_equals_whole_feeding(case: tuple[bytes, list[bytes]]) -> None:
    stream, chunks = case
    assert outcome(chunks) == outcome([stream])


@settings(max_examples=600, deadline=None)
@given(streams)
def test_whole_feeding_equals_reference(stream: bytes) -> None:
    events, dec = run([stream])
    expected_rows, expected_counts = reference(stream)
    assert rows(events) == expected_rows
    assert {k: n for k, n in counters(dec).items() if k != "bytes"} == expected_counts


@settings(max_examples=300, deadline=None)
@given(chunked(), st.integers(0, 40))
def test_max_event_bytes_does_not_depend_on_chunking(case: tuple[bytes, list[bytes]], limit: int) -> None:
    stream, chunks = case
    assert raises_too_large(chunks, limit) is raises_too_large([stream], limit)


# Streams made of whole events, mostly plain `data: ` ones, so that chunks often hold several
# complete events: the shape the decoder's fast paths are for.
EVENT_PIECES = [
    b'data: {"a": 1}\n\n',
    b"data: x\n\n",
    b"data: \n\n",
    b"data:x\n\n",
    b"data: a\ndata: b\n\n",
    b"data: \xff\xe9\n\n",
    b"data: data: x\n\n",
    b"event: e\ndata: y\n\n",
    b"id: 7\ndata: z\n\n",
    b"retry: 9\n\n",
    b": keep-alive\n\n",
    b"\n",
    b"data: [DONE]\n\n",
    b"data: cr\r\n\r\n",
    b"data: tail",
]
event_streams = st.lists(st.sampled_from(EVENT_PIECES[:3]) | st.sampled_from(EVENT_PIECES), max_size=40).map(
    b"".join
)


@st.composite
def event_chunked(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    stream = draw(event_streams)
    points = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    return stream, split(stream, *points)


def run_data(chunks: list[bytes], **kwargs: Any) -> tuple[list[bytes], SSEDecoder]:
    dec = SSEDecoder(**kwargs)
    out: list[bytes] = []
    for chunk in chunks:
        out += dec.feed_data(chunk)
    dec.close()
    return out, dec


@settings(max_examples=400, deadline=None)
@given(event_chunked())
def test_event_streams_chunked_equal_reference(case: tuple[bytes, list[bytes]]) -> None:
    stream, chunks = case
    events, dec = run(chunks)
    expected_rows, expected_counts = reference(stream)
    assert rows(events) == expected_rows
    assert {k: n for k, n in counters(dec).items() if k != "bytes"} == expected_counts


@settings(max_examples=400, deadline=None)
@given(st.one_of(event_chunked(), chunked()))
def test_feed_data_gives_the_data_of_feed(case: tuple[bytes, list[bytes]]) -> None:
    _, chunks = case
    events, dec = run(chunks)
    payloads, data_dec = run_data(chunks)
    assert [p.decode("utf-8", "replace") for p in payloads] == [e.data for e in events]
    assert all(isinstance(p, bytes) for p in payloads)
    assert counters(data_dec) == counters(dec)


@settings(max_examples=300, deadline=None)
@given(event_chunked(), st.integers(0, 40))
def test_max_event_bytes_same_for_event_streams_and_feed_data(
    case: tuple[bytes, list[bytes]], limit: int
) -> None:
    stream, chunks = case
    expected = raises_too_large([stream], limit)
    assert raises_too_large(chunks, limit) is expected
    try:
        run_data(chunks, max_event_bytes=limit)
    except EventTooLarge:
        assert expected
    else:
        assert not expected


def test_feed_data_many_events_in_one_feed_after_a_cut_line() -> None:
    dec = SSEDecoder()
    assert dec.feed_data(b"data: fir") == []
    assert dec.feed_data(b"st\n\ndata: 2\n\ndata: 3\n\ndata: 4") == [b"first", b"2", b"3"]
    assert dec.feed_data(b"\n\n") == [b"4"]
    assert dec.events == 4
