"""Incremental `text/event-stream` decoder, following WHATWG HTML "Interpreting an event stream".

`SSEDecoder.feed(chunk, t_ns)` returns the events that the chunk completed and `close()` ends the
stream; `feed_data(chunk)` returns only their data, as bytes, at three times the speed (what a chat
client needs: the JSON of each chunk). The decoder does no I/O and reads no clock: the caller passes
the time a chunk arrived, so a test can feed it one byte at a time and get the same events as from
the whole stream.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import orjson

from loadtest.errors import EventTooLarge

__all__ = ["Event", "SSEDecoder", "is_done"]

_BOM = b"\xef\xbb\xbf"
_LF = 0x0A
_CR = 0x0D


def is_done(data: str) -> bool:
    """True for the OpenAI end-of-stream sentinel: data `[DONE]`, surrounding whitespace ignored."""
    return data.strip() == "[DONE]"


@dataclass(frozen=True, slots=True)
class Event:
    """One dispatched event.

    `data` is the event's data lines joined with "\\n"; `event` its type ("message" when the
    stream set none); `id` the last event ID at dispatch, which persists across events (None until
    the stream sets one); `retry` the reconnection time in ms from the most recent valid `retry`
    field, which also persists (None if there was none); `t_ns` the `t_ns` given to the `feed()`
    call whose bytes completed the event.
    """

    data: str
    event: str
    id: str | None
    retry: int | None
    t_ns: int

    @property
    def is_done(self) -> bool:
        """True for the OpenAI end-of-stream sentinel: data `[DONE]`, surrounding whitespace ignored."""
        return is_done(self.data)

    def json(self) -> Any:
        """The data parsed as JSON; raises `orjson.JSONDecodeError` (a `ValueError`) if it is not."""
        return orjson.loads(self.data)


class SSEDecoder:
    """Turns the bytes of one event stream, in chunks of any size, into `Event`s.

    Lines end at CRLF, LF or CR (also when a CR and its LF arrive in different chunks) and nowhere
    else; a leading UTF-8 BOM is dropped; text is decoded as UTF-8 with invalid bytes replaced, and a
    character split between chunks comes out whole. Work is linear in the bytes fed.

    Counters, readable at any time: `events` dispatched, `comments` (lines starting with ':'),
    `empty_events` (blank lines that found no data, so dispatched nothing), `bom` (1 if a BOM was
    dropped), `unterminated_tail` (1 if `close()` found an event or line not ended by a blank line),
    `bytes` fed.

    With `max_event_bytes`, `feed()` raises `EventTooLarge` as soon as the pending event (its data
    so far plus the line being read) exceeds that many bytes, whatever the chunking. Events that
    the same `feed()` call completed before that are lost with the exception (`events` still counts
    them), and the decoder must not be fed again.
    """

    def __init__(self, *, max_event_bytes: int | None = None) -> None:
        if max_event_bytes is not None and max_event_bytes < 0:
            raise ValueError(f"max_event_bytes must be >= 0, got {max_event_bytes}")
        self.max_event_bytes = max_event_bytes
        self.events = 0
        self.comments = 0
        self.empty_events = 0
        self.bom = 0
        self.unterminated_tail = 0
        self.bytes = 0
        # The stream's first bytes, held while they could still be the start of a BOM; None after.
        self._head: bytes | None = b""
        self._skip_lf = False
        # The line being read. Appending to a bytearray is amortized O(1) and costs no memory per
        # piece, so a long line trickling in byte by byte stays linear in time and space.
        self._partial = bytearray()
        self._data: list[bytes] = []
        self._data_len = 0
        self._event_type = ""
        self._field_seen = False
        self._last_id: str | None = None
        self._retry: int | None = None

    def feed(self, data: bytes, t_ns: int = 0) -> list[Event]:
        """Decode the next chunk of the stream; return the events it completed, stamped with `t_ns`."""
        metas: list[tuple[str, str | None, int | None]] = []
        payloads = self._decode(data, metas)
        return [
            Event(payload.decode("utf-8", "replace"), event_type, last_id, retry, t_ns)
            for payload, (event_type, last_id, retry) in zip(payloads, metas, strict=True)
        ]

    def feed_data(self, data: bytes) -> list[bytes]:
        """Decode the next chunk; return only the data of the events it completed, as bytes.

        The same decoding as `feed()` without building an `Event` per event, for callers that read
        nothing but the data (a chat client does not look at event types or ids): about three times
        as fast. The bytes are the stream's own, not checked as UTF-8 (`feed()` replaces invalid
        sequences); `orjson.loads` takes them as they are and refuses invalid UTF-8.
        """
        # A server that flushes per token sends each event in a read of its own: one `data: ` line
        # and its blank line, with nothing pending before it, is its data alone.
        size = len(data)
        if (
            data.startswith(b"data: ")
            and data.endswith(b"\n\n")
            and data.find(b"\n", 6) == size - 2
            and self._head is None
            and not (self._skip_lf or self._partial or self._data or self._field_seen)
            and b"\r" not in data
            and (self.max_event_bytes is None or size - 2 <= self.max_event_bytes)
        ):
            self.bytes += size
            self.events += 1
            return [data[6:-2]]
        return self._decode(data, None)

    def _decode(self, data: bytes, metas: list[tuple[str, str | None, int | None]] | None) -> list[bytes]:
        self.bytes += len(data)
        if self._head is not None:
            data = self._strip_bom(data)
        if not data:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if data[0] == _LF:
                data = data[1:]
                if not data:
                    return []
        if b"\r" in data:
            # A CR that ends the chunk ends its line now; an LF opening the next chunk is part of it.
            self._skip_lf = data[-1] == _CR
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")

        limit = -1 if self.max_event_bytes is None else self.max_event_bytes
        # No line in this chunk can take the event past the limit unless the whole chunk could.
        check = limit >= 0 and self._data_len + len(self._partial) + len(data) > limit

        out: list[bytes] = []
        pos = 0
        if self._partial or self._data or self._field_seen:
            # The chunk continues an event: interpret its lines up to the first blank one.
            pos = data.find(b"\n\n")
            if pos < 0:
                self._tail(data, out, metas, check, limit)
                self.events += len(out)
                return out
            head = data[:pos]
            if self._data or self._field_seen or b"\n" in head or not self._partial.startswith(b"data: "):
                self._lines(head.split(b"\n") + [b""], out, metas, check, limit)
            else:
                # The common cut: a read ended inside a `data: ` line and this one finishes it.
                self._partial += head
                if check and len(self._partial) > limit:
                    raise EventTooLarge(limit=limit)
                out.append(bytes(self._partial[6:]))
                self._partial.clear()
                if metas is not None:
                    metas.append(("message", self._last_id, self._retry))
            pos += 2

        # From here on no event is pending. Most of a chat stream is `data: ...\n\n` events only;
        # then one split does the work of the line loop, when no piece holds a second line.
        # (`bytes.count` of one byte is a slow loop; `in` is memchr, so join and look is faster.)
        if data.startswith(b"data: ", pos):
            end = data.rfind(b"\n\n", pos)
            if end >= pos + 6:
                pieces = data[pos + 6 : end].split(b"\n\ndata: ")
                if b"\n" not in b"".join(pieces) and (not check or max(map(len, pieces)) + 6 <= limit):
                    if metas is not None:
                        metas.extend([("message", self._last_id, self._retry)] * len(pieces))
                    if out:
                        out += pieces
                    else:
                        out = pieces
                    if end + 2 < len(data):
                        self._tail(data[end + 2 :], out, metas, check, limit)
                    self.events += len(out)
                    return out

        # Otherwise event by event: every "\n\n" ends one, and a block between two of them that
        # is a single `data: ` line still needs no line loop.
        blocks = data[pos:].split(b"\n\n") if pos else data.split(b"\n\n")
        tail = blocks.pop()
        plain = ("message", self._last_id, self._retry)
        for block in blocks:
            if block[:6] == b"data: " and b"\n" not in block:
                if check and len(block) > limit:
                    self.events += len(out)
                    raise EventTooLarge(limit=limit)
                out.append(block[6:])
                if metas is not None:
                    metas.append(plain)
            else:
                self._lines(block.split(b"\n") + [b""], out, metas, check, limit)
                plain = ("message", self._last_id, self._retry)
        self._tail(tail, out, metas, check, limit)
        self.events += len(out)
        return out

    def _tail(
        self,
        tail: bytes,
        out: list[bytes],
        metas: list[tuple[str, str | None, int | None]] | None,
        check: bool,
        limit: int,
    ) -> None:
        """Interpret what follows the chunk's last blank line: whole lines, then a partial one."""
        if not tail:
            return
        lines = tail.split(b"\n")
        rest = lines.pop()
        if lines:
            self._lines(lines, out, metas, check, limit)
        if rest:
            self._partial += rest
            if check and self._data_len + len(self._partial) > limit:
                self.events += len(out)
                raise EventTooLarge(limit=limit)

    def _lines(
        self,
        lines: list[bytes],
        out: list[bytes],
        metas: list[tuple[str, str | None, int | None]] | None,
        check: bool,
        limit: int,
    ) -> None:
        """Interpret whole lines, the first of which continues the pending partial line."""
        if self._partial:
            self._partial += lines[0]
            lines[0] = bytes(self._partial)
            self._partial.clear()
        parts = self._data
        data_len = self._data_len
        event_type = self._event_type
        field_seen = self._field_seen
        last_id = self._last_id
        retry = self._retry
        for line in lines:
            if check and data_len + len(line) > limit:
                self.events += len(out)
                raise EventTooLarge(limit=limit)
            if not line:
                if parts:
                    out.append(parts[0] if len(parts) == 1 else b"\n".join(parts))
                    if metas is not None:
                        metas.append((event_type or "message", last_id, retry))
                    parts = []
                else:
                    self.empty_events += 1
                data_len = 0
                event_type = ""
                field_seen = False
            elif line[:5] == b"data:":
                value = line[6:] if line[5:6] == b" " else line[5:]
                parts.append(value)
                data_len += len(value) + 1
            else:
                colon = line.find(b":")
                if colon == 0:
                    self.comments += 1
                    continue
                if colon < 0:
                    name = line
                    value = b""
                else:
                    name = line[:colon]
                    value = line[colon + 2 :] if line.startswith(b" ", colon + 1) else line[colon + 1 :]
                field_seen = True
                # ':' and ' ' are ASCII, so splitting before decoding gives what decoding first would.
                if name == b"data":
                    parts.append(value)
                    data_len += len(value) + 1
                elif name == b"event":
                    event_type = value.decode("utf-8", "replace")
                elif name == b"id":
                    if b"\x00" not in value:
                        last_id = value.decode("utf-8", "replace")
                elif name == b"retry" and value.isdigit():
                    # bytes.isdigit() is ASCII-only and False for b"". int() refuses over 4300 digits:
                    # ignore such a value as an overflow, as browsers do.
                    with contextlib.suppress(ValueError):
                        retry = int(value)
        self._data = parts
        self._data_len = data_len
        self._event_type = event_type
        self._field_seen = field_seen
        self._last_id = last_id
        self._retry = retry

    def close(self) -> list[Event]:
        """End the stream and return [], always.

        The spec discards an event that no blank line ended; `unterminated_tail` records there was one.
        """
        if self._partial or self._data or self._field_seen or self._head:
            self.unterminated_tail = 1
        self._head = None
        self._skip_lf = False
        self._partial.clear()
        self._data = []
        self._data_len = 0
        self._event_type = ""
        self._field_seen = False
        return []

    def _strip_bom(self, data: bytes) -> bytes:
        head = self._head + data if self._head else data
        if len(head) < len(_BOM) and _BOM.startswith(head):
            self._head = head
            return b""
        self._head = None
        if head.startswith(_BOM):
            self.bom = 1
            return head[len(_BOM) :]
        return head
