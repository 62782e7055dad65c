"""One streamed chat turn over httpx, with the timestamps that make TTFT and turn latency, the
connection it went out on (new or reused, and how long a new one took to open), and the tokens the
stream reported.

`stream_turn` never raises for a failure of the endpoint under test: a 4xx/5xx, a wrong content
type, an `{"error": ...}` inside the stream, a cut connection or a timeout all come back as a
`TurnResult` with `ok=False` and a `kind`.
"""

from __future__ import annotations

import ssl
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from httpx._utils import get_environment_proxies

from loadtest import nlx
from loadtest.catalog import Failure, http_failure
from loadtest.errors import EventTooLarge, redact
from loadtest.options import TRANSPORTS
from loadtest.phases import Connection, PhaseTrace
from loadtest.sse import SSEDecoder, is_done
from loadtest.transport import GeventTransport

# How much of an error body we keep as an example: enough to read, small enough to ship.
ERROR_BODY_BYTES = 2048

_SSL_CONTEXT: ssl.SSLContext | None = None


def shared_ssl_context() -> ssl.SSLContext:
    """One SSL context for every client: building one costs milliseconds and loads the CA bundle."""
    global _SSL_CONTEXT
    if _SSL_CONTEXT is None:
        _SSL_CONTEXT = ssl.create_default_context()
    return _SSL_CONTEXT


# Keep the connection across think times, as a browser would (httpx's default is 5 s), but under
# the 60-75 s idle timeouts of common load balancers and servers.
KEEPALIVE_EXPIRY_S = 30.0


def make_client(
    *,
    connect_timeout: float = 10.0,
    read_timeout: float = 60.0,
    verify: bool = True,
    transport: str = "gevent",
) -> httpx.Client:
    """An httpx client for one simulated user, with its own connections.

    `transport` "gevent" (the default) sends over `loadtest.transport.GeventTransport`, HTTP/1.1
    parsed in C; "httpx" over httpx's own transport (httpcore), which also speaks HTTP/2 and costs
    about twice the CPU per streamed turn. Proxies from the environment (HTTP_PROXY, HTTPS_PROXY,
    ALL_PROXY, NO_PROXY) go through httpx's own proxy transport either way.
    """
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
    timeout = httpx.Timeout(connect=connect_timeout, read=read_timeout, write=connect_timeout, pool=None)
    checked = shared_ssl_context() if verify else False
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=1, keepalive_expiry=KEEPALIVE_EXPIRY_S)
    gevent = transport == "gevent"
    return httpx.Client(
        verify=checked,
        timeout=timeout,
        limits=limits,
        headers={"User-Agent": "loadtest"},
        transport=GeventTransport(verify=verify, keepalive_expiry=KEEPALIVE_EXPIRY_S) if gevent else None,
        mounts=_environment_proxies(checked, limits) if gevent else None,
    )


def _environment_proxies(
    verify: ssl.SSLContext | bool, limits: httpx.Limits
) -> dict[str, httpx.BaseTransport | None]:
    """The mounts httpx makes for the environment's proxies when it picks its transport itself: a
    client given a transport of its own gets none, and would ignore HTTPS_PROXY without a word."""
    return {
        pattern: None if url is None else httpx.HTTPTransport(verify=verify, limits=limits, proxy=url)
        for pattern, url in get_environment_proxies().items()
    }


# Not frozen: a frozen dataclass sets each field through object.__setattr__, which takes three times
# the instructions of plain slots, once per turn. Change a result with `dataclasses.replace`.
@dataclass(slots=True)
class TurnResult:
    """What one turn did, with perf_counter_ns timestamps (None when the turn never got there).

    `content` is the answer alone; reasoning (`delta.reasoning_content`, `delta.reasoning`) is only
    timed (`t_first_reasoning_ns`) and counted (`reasoning_chars`). The token counts are the stream's
    own usage, None when it reported none.
    """

    ok: bool
    kind: str | None
    detail: str
    status: int | None
    t_start_ns: int
    t_end_ns: int
    t_headers_ns: int | None = None
    t_first_event_ns: int | None = None
    t_first_content_ns: int | None = None
    t_last_event_ns: int | None = None
    content: str = ""
    chunks: int = 0
    itl_ns: tuple[int, ...] = ()
    done: bool = False
    finish_reason: str | None = None
    system_fingerprint: str | None = None
    protocol: dict[str, int] = field(default_factory=dict)
    t_first_reasoning_ns: int | None = None
    reasoning_chars: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    # None: no connection was acquired (the turn failed before, or while opening one).
    connection: Connection | None = None
    pool_wait_ns: int | None = None

    @property
    def ttft_ns(self) -> int | None:
        return None if self.t_first_content_ns is None else self.t_first_content_ns - self.t_start_ns

    @property
    def ttfb_ns(self) -> int | None:
        """Request start to the response headers."""
        return None if self.t_headers_ns is None else self.t_headers_ns - self.t_start_ns

    @property
    def ttfr_ns(self) -> int | None:
        """Request start to the first reasoning chunk."""
        return None if self.t_first_reasoning_ns is None else self.t_first_reasoning_ns - self.t_start_ns

    @property
    def latency_ns(self) -> int:
        """Request start to the last event of the stream; to the failure for a failed turn."""
        end = self.t_last_event_ns if self.ok and self.t_last_event_ns is not None else self.t_end_ns
        return end - self.t_start_ns

    @property
    def generation_ns(self) -> int | None:
        """First output (answer or reasoning, whichever came first) to the last event: the time over
        which the completion tokens streamed."""
        first = [t for t in (self.t_first_content_ns, self.t_first_reasoning_ns) if t is not None]
        if not first or self.t_last_event_ns is None:
            return None
        return self.t_last_event_ns - min(first)

    @property
    def tpot_ns(self) -> int | None:
        """Time per output token after the first: generation time / (completion tokens - 1), for a
        turn with at least 2 completion tokens that did not all come in one read (which times the
        client's lateness, not the server)."""
        generation = self.generation_ns
        tokens = self.completion_tokens
        if not generation or tokens is None or tokens < 2:
            return None
        return generation // (tokens - 1)

    @property
    def output_tps(self) -> float | None:
        """Completion tokens per second of generation, for a turn with at least 2 completion tokens
        (with one, the time is only the gap to the last event, and the rate meaningless) that did
        not all come in one read."""
        generation = self.generation_ns
        tokens = self.completion_tokens
        if not generation or tokens is None or tokens < 2:
            return None
        return tokens * 1e9 / generation

    @property
    def setup_ns(self) -> int | None:
        """Request start to the connection acquired: the pool wait, then DNS, TCP connect and TLS of
        a new connection. None without a connection."""
        conn = self.connection
        if conn is None:
            return None
        phases = (conn.dns_ns or 0) + (conn.connect_ns or 0) + (conn.tls_ns or 0)
        return (self.pool_wait_ns or 0) + phases

    def time_split_ns(self) -> tuple[int, int, int, int] | None:
        """A succeeded turn's latency in its parts (`catalog.TIME_SPLIT_PARTS`): set-up, waiting for
        the response headers, headers to first answer content, streaming to the last event. They add
        up to `latency_ns`. None for a failed turn."""
        t_headers, t_first, t_last = self.t_headers_ns, self.t_first_content_ns, self.t_last_event_ns
        if not self.ok or t_headers is None or t_first is None or t_last is None:
            return None
        to_headers = t_headers - self.t_start_ns
        setup = min(self.setup_ns or 0, to_headers)
        return setup, to_headers - setup, t_first - t_headers, t_last - t_first


class TurnSender:
    """One client's turns, sent straight to its transport rather than through `httpx.Client.send`.

    `Client.send` runs the auth, redirect and event-hook machinery, wraps the response stream and
    hands every response to urllib's cookie jar, whether it sets a cookie or not; with building the
    request, that costs more CPU than reading and parsing a whole streamed turn (bench/turn_cost.py).
    This keeps one `httpx.Request`, built by the client itself (`build_request`: its default headers
    such as User-Agent, its cookies, Host) for a URL and API key, and per turn sets only its body,
    Content-Length and extensions (timeouts, trace). What `send` did that matters is done here:
      - the transport is the client's own for the URL (its mounts, so proxies from the environment
        go through httpx's proxy transport, and verification is the client's), looked up per URL;
      - a response that sets cookies (a load balancer's stickiness cookie) fills the client's jar,
        and the following requests carry them; a response without `Set-Cookie` leaves the jar alone;
      - a closed client refuses to send, with httpx's words.
    Redirects are not followed (nor are they by httpx's client, by default): a 3xx is the turn's
    answer. A turn that starts while another one of the same client is still being sent (two
    greenlets on one client) gets a request of its own.
    """

    __slots__ = ("_spare", "_cookies_set")

    def __init__(self) -> None:
        self._spare: _TurnRequest | None = None
        # How many responses have set cookies so far: a request built before the last one is stale.
        self._cookies_set = 0

    def send(
        self, client: httpx.Client, url: str, payload: bytes, api_key: str, extensions: dict[str, Any]
    ) -> httpx.Response:
        """POST `payload` to `url`; the response's body is still to be read, and closed by the caller."""
        if client.is_closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        prepared, self._spare = self._spare, None
        if prepared is None or prepared.url != url or prepared.api_key != api_key:
            prepared = _TurnRequest(client, url, api_key, self._cookies_set)
        elif prepared.cookies_set != self._cookies_set:
            prepared.take_cookies(client.cookies, self._cookies_set)
        request = prepared.request
        request.stream = httpx.ByteStream(payload)
        # Transports read the body with `request.read()`, which returns `_content` once it is set.
        request._content = payload
        request.headers["Content-Length"] = str(len(payload))
        request.extensions = extensions
        try:
            response = prepared.transport.handle_request(request)
        finally:
            # The transport is done with the request once it has the response head.
            self._spare = prepared
        response.request = request
        if "set-cookie" in response.headers:
            client.cookies.extract_cookies(response)
            self._cookies_set += 1
        return response


class _TurnRequest:
    """A request kept across turns, with what it was built for."""

    __slots__ = ("request", "url", "api_key", "transport", "cookies_set")

    def __init__(self, client: httpx.Client, url: str, api_key: str, cookies_set: int) -> None:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.request = client.build_request("POST", url, headers=headers)
        self.url = url
        self.api_key = api_key
        # The client's choice of transport for the URL, as `Client.send` makes it on every request.
        self.transport = client._transport_for_url(self.request.url)
        self.cookies_set = cookies_set

    def take_cookies(self, cookies: httpx.Cookies, cookies_set: int) -> None:
        """The `Cookie` header again from the jar, as `build_request` makes it."""
        headers = self.request.headers
        if "cookie" in headers:
            del headers["cookie"]
        cookies.set_cookie_header(self.request)
        self.cookies_set = cookies_set


# One sender per client, made on its first turn; it holds no reference to the client, which keeps
# the entry from outliving it.
_SENDERS: weakref.WeakKeyDictionary[httpx.Client, TurnSender] = weakref.WeakKeyDictionary()


def sender_for(client: httpx.Client) -> TurnSender:
    """The client's `TurnSender`."""
    sender = _SENDERS.get(client)
    if sender is None:
        sender = _SENDERS[client] = TurnSender()
    return sender


class _Stream:
    """Mutable state while one response streams in."""

    def __init__(self, on_pool_wait: Callable[[int], None] | None) -> None:
        self.parts: list[str] = []
        self.chunks = 0
        self.itl_ns: list[int] = []
        self.t_first_event: int | None = None
        self.t_first_content: int | None = None
        self.t_last_content = 0  # valid once t_first_content is set
        self.t_last_event: int | None = None
        self.t_first_reasoning: int | None = None
        self.reasoning_chars = 0
        self.usage: nlx.Usage | None = None
        self.done = False
        self.finish_reason: str | None = None
        self.fingerprint: str | None = None
        self.role_only = 0
        self.after_done = 0
        self.pool_wait: int | None = None
        self._on_pool_wait = on_pool_wait
        # The bytes around the content of this stream's plain content chunks, once the first one was
        # read in full (see `_learn_shape`); None when it could not give them.
        self.shape: tuple[bytes, bytes] | None = None
        self.shape_tried = False

    def pool_waited(self, wait_ns: int) -> None:
        self.pool_wait = wait_ns
        if self._on_pool_wait is not None:
            self._on_pool_wait(wait_ns)


def stream_turn(
    client: httpx.Client,
    url: str,
    body: dict[str, Any],
    *,
    api_key: str,
    max_event_bytes: int | None = 1 << 20,
    on_cut: Callable[[TurnResult], None] | None = None,
    first_byte_timeout: float | None = None,
    idle_timeout: float | None = None,
    on_pool_wait: Callable[[int], None] | None = None,
) -> TurnResult:
    """POST one chat completion request and read its event stream to the end.

    When the caller's greenlet or thread is stopped mid-turn (GreenletExit, KeyboardInterrupt), the
    turn so far is handed to `on_cut` as a failed turn of kind `cut` before the exception goes on, so
    a stopped run still counts what it received.

    `first_byte_timeout` bounds the wait for the response headers, `idle_timeout` each wait for
    more of the stream; both default to the client's read timeout. `on_pool_wait` is given how
    long (ns) the request waited for a connection from the client's pool. The request carries a
    `PhaseTrace`, whose connection (new or reused, its phases) goes into the result.
    """
    hidden = (api_key,)
    payload = orjson.dumps(body)
    sender = sender_for(client)
    state = _Stream(on_pool_wait)
    trace = PhaseTrace(state.pool_waited)
    decoder = SSEDecoder(max_event_bytes=max_event_bytes)
    status: int | None = None
    t_headers: int | None = None
    t_start = time.perf_counter_ns()

    def result(ok: bool, kind: str | None = None, detail: str = "") -> TurnResult:
        usage = state.usage
        return TurnResult(
            ok=ok,
            kind=kind,
            detail=redact(detail, hidden) if detail else detail,
            status=status,
            t_start_ns=t_start,
            t_end_ns=time.perf_counter_ns(),
            t_headers_ns=t_headers,
            t_first_event_ns=state.t_first_event,
            t_first_content_ns=state.t_first_content,
            t_last_event_ns=state.t_last_event,
            content="".join(state.parts),
            chunks=state.chunks,
            itl_ns=tuple(state.itl_ns),
            done=state.done,
            finish_reason=state.finish_reason,
            system_fingerprint=state.fingerprint,
            protocol=_protocol(decoder, state, ok),
            t_first_reasoning_ns=state.t_first_reasoning,
            reasoning_chars=state.reasoning_chars,
            prompt_tokens=None if usage is None else usage.prompt_tokens,
            completion_tokens=None if usage is None else usage.completion_tokens,
            reasoning_tokens=None if usage is None else usage.reasoning_tokens,
            connection=trace.connection(),
            pool_wait_ns=state.pool_wait,
        )

    # Transports read this dict when they start on the body, so the read timeout can change between
    # the wait for headers (first byte) and the waits between chunks (idle).
    timeouts = client.timeout.as_dict()
    if first_byte_timeout is not None:
        timeouts["read"] = first_byte_timeout
    extensions: dict[str, Any] = {"timeout": timeouts, "trace": trace}
    try:
        response = sender.send(client, url, payload, api_key, extensions)
        try:
            t_headers = time.perf_counter_ns()
            if idle_timeout is not None:
                timeouts["read"] = idle_timeout
            status = response.status_code
            failure = _refused(response) or _read_events(response, decoder, state)
            if failure is not None:
                return result(False, *failure)
        finally:
            response.close()
    except EventTooLarge as exc:
        return result(False, Failure.EVENT_TOO_LARGE, str(exc))
    except httpx.ConnectTimeout as exc:
        return result(False, Failure.CONNECT_TIMEOUT, f"no connection within {timeouts['connect']} s: {exc}")
    except httpx.ReadTimeout as exc:
        if t_headers is None:
            return result(
                False, Failure.FIRST_BYTE_TIMEOUT, f"no response within {timeouts['read']} s: {exc}"
            )
        return result(False, Failure.IDLE_TIMEOUT, f"the stream stalled for {timeouts['read']} s: {exc}")
    except httpx.TimeoutException as exc:
        return result(False, Failure.TIMEOUT, f"{type(exc).__name__}: {exc}")
    except httpx.ConnectError as exc:
        return result(False, Failure.CONNECT, f"ConnectError: {exc}")
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
        return result(False, Failure.DISCONNECT, f"{type(exc).__name__}: {exc}")
    except httpx.HTTPError as exc:
        return result(False, Failure.TRANSPORT, f"{type(exc).__name__}: {exc}")
    except BaseException:
        if on_cut is not None:
            elapsed_ms = (time.perf_counter_ns() - t_start) / 1e6
            on_cut(
                result(False, Failure.CUT, f"turn stopped by the end of the run after {elapsed_ms:.0f} ms")
            )
        raise
    if state.chunks == 0:
        return result(False, Failure.NO_CONTENT, "the stream ended without any content chunk")
    return result(True)


def _refused(response: httpx.Response) -> tuple[str, str] | None:
    """(kind, detail) when the response is no event stream: an HTTP error, a redirect (never
    followed: a chat turn is a POST to one endpoint), or another content type."""
    status = response.status_code
    if status >= 300:
        prefix = f"HTTP {status}"
        location = response.headers.get("location") if status < 400 else None
        if location:
            prefix += f" to {location}"
        return http_failure(status), _with_body(prefix, _read_some(response))
    content_type = response.headers.get("content-type", "")
    if content_type.lower().startswith("text/event-stream"):
        return None
    text = _read_some(response)
    kind = Failure.ERROR_BODY if _is_json_error(text) else Failure.CONTENT_TYPE
    return kind, _with_body(f"HTTP {status} with Content-Type {content_type!r}", text)


def _read_events(response: httpx.Response, decoder: SSEDecoder, state: _Stream) -> tuple[str, str] | None:
    """Fold the event stream into `state`; (kind, detail) when an event fails the turn."""
    feed, clock = decoder.feed_data, time.perf_counter_ns
    for raw in _body(response):
        # Timestamped as the read leaves the socket, before any parsing.
        t_read = clock()
        for data in feed(raw):
            failure = _on_event(state, data, t_read)
            if failure is not None:
                return failure
    decoder.close()
    return None


def _protocol(decoder: SSEDecoder, state: _Stream, ok: bool) -> dict[str, int]:
    """The turn's protocol counts (`catalog.PROTOCOL_KEYS`), those above zero only."""
    counts: dict[str, int] = {}
    if decoder.comments:
        counts["comments"] = decoder.comments
    if decoder.empty_events:
        counts["empty_events"] = decoder.empty_events
    if decoder.bom:
        counts["bom"] = decoder.bom
    if decoder.unterminated_tail:
        counts["unterminated_tail"] = decoder.unterminated_tail
    if state.role_only:
        counts["role_only_chunks"] = state.role_only
    if state.after_done:
        counts["events_after_done"] = state.after_done
    if ok and not state.done:
        counts["no_done"] = 1
    return counts


def _body(response: httpx.Response) -> Iterable[bytes]:
    """The response body as it is read: decoded when it is encoded, else the transport's own pieces,
    as iter_raw() would give them less its bookkeeping per piece (stream_turn closes the response
    either way)."""
    if "content-encoding" in response.headers:
        return response.iter_bytes()
    assert isinstance(response.stream, httpx.SyncByteStream)
    return response.stream


# The end-of-stream sentinel as servers send it; `sse.is_done` takes the variants with whitespace.
_DONE = b"[DONE]"


def _on_event(state: _Stream, data: bytes, t_ns: int) -> tuple[str, str] | None:
    """Fold one event's data into the stream state; return (kind, detail) when it fails the turn."""
    if state.t_first_event is None:
        state.t_first_event = t_ns
    if state.done:
        state.after_done += 1
        return None
    state.t_last_event = t_ns
    if data == _DONE:
        state.done = True
        return None
    shape = state.shape
    if shape is not None:
        # Most events of a stream are the same chunk with another piece of content: same id, model,
        # fingerprint, no finish, no usage. Bytes that are the known chunk's around one JSON string
        # are that chunk with that string as content, so only the string is parsed.
        prefix, suffix = shape
        if data.startswith(prefix) and data.endswith(suffix):
            try:
                content = orjson.loads(data[len(prefix) : len(data) - len(suffix)])
            except orjson.JSONDecodeError:
                content = None
            if type(content) is str and content:
                _on_content(state, content, t_ns)
                return None
    try:
        # orjson reads the UTF-8 bytes directly; only data that is not JSON pays for decoding.
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        text = data.decode("utf-8", "replace")
        if is_done(text):
            state.done = True
            return None
        try:
            # Invalid UTF-8 inside JSON strings: read it as the replacement character, as a browser would.
            chunk = orjson.loads(text)
        except orjson.JSONDecodeError:
            return Failure.BAD_JSON, f"event data is not JSON: {text[:200]!r}"
    if not isinstance(chunk, dict):
        return None
    if "error" in chunk:
        return Failure.STREAM_ERROR, orjson.dumps(chunk["error"]).decode()[:ERROR_BODY_BYTES]
    fingerprint = chunk.get("system_fingerprint")
    if isinstance(fingerprint, str):
        state.fingerprint = fingerprint
    if chunk.get("usage") is not None:
        # The last usage a stream reports holds the totals (some servers report it on every chunk).
        state.usage = nlx.usage(chunk) or state.usage
    parts = nlx.choice_parts(chunk)
    if parts is None:
        # A usage chunk (`"choices": []`): neither content nor a role-only chunk.
        return None
    content, reasoning, reason = parts
    if content is not None:
        _on_content(state, content, t_ns)
        if not state.shape_tried and reasoning is None and reason is None:
            state.shape_tried = True
            state.shape = _learn_shape(data, chunk, content)
    if reasoning is not None:
        if state.t_first_reasoning is None:
            state.t_first_reasoning = t_ns
        state.reasoning_chars += len(reasoning)
    if reason is not None:
        state.finish_reason = reason
    elif content is None and reasoning is None:
        state.role_only += 1
    return None


def _on_content(state: _Stream, content: str, t_ns: int) -> None:
    if state.t_first_content is None:
        state.t_first_content = t_ns
    else:
        state.itl_ns.append(t_ns - state.t_last_content)
    state.t_last_content = t_ns
    state.parts.append(content)
    state.chunks += 1


# A string no server sends as content, put in a learned shape's place to check it.
_PROBE = "\x01probe\u2028\U0001f680"


def _learn_shape(data: bytes, chunk: dict[str, Any], content: str) -> tuple[bytes, bytes] | None:
    """The bytes before and after the content string in `data`, a plain content chunk (one choice,
    a delta of content alone, no finish, no usage, no error) that parsed as `chunk`; None when the
    content's bytes are not found once, as orjson writes them, or the bytes around them would not
    read as this chunk with another content."""
    if "error" in chunk or chunk.get("usage") is not None or len(chunk["choices"]) != 1:
        return None
    if len(chunk["choices"][0]["delta"]) != 1:
        return None
    encoded = orjson.dumps(content)
    at = data.find(encoded)
    if at < 0 or data.find(encoded, at + 1) >= 0:
        return None
    prefix, suffix = data[:at], data[at + len(encoded) :]
    try:
        # Parsed again for a copy to change (and bytes that are not UTF-8 around the content refuse).
        expected = orjson.loads(data)
        expected["choices"][0]["delta"]["content"] = _PROBE
        if orjson.loads(prefix + orjson.dumps(_PROBE) + suffix) != expected:
            return None
    except orjson.JSONDecodeError:
        return None
    return prefix, suffix


def _read_some(response: httpx.Response) -> str:
    """The start of a (non-stream) body, for an error example; never the whole of a huge one."""
    pieces: list[bytes] = []
    size = 0
    try:
        for piece in response.iter_bytes():
            pieces.append(piece)
            size += len(piece)
            if size >= ERROR_BODY_BYTES:
                break
    except httpx.HTTPError:
        pass
    return b"".join(pieces)[:ERROR_BODY_BYTES].decode("utf-8", "replace").strip()


def _with_body(prefix: str, body: str) -> str:
    return f"{prefix}: {body}" if body else prefix


def _is_json_error(text: str) -> bool:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return isinstance(value, dict) and "error" in value
