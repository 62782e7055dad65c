"""An httpx transport on gevent sockets and geventhttpclient's C HTTP/1.1 parser.

httpx stays the client API (requests, responses, timeouts, errors, content decoding); this replaces
only httpcore and h11 underneath, which cost more CPU per streamed chunk than everything else in a
turn together (see `bench/capacity.py`). It speaks HTTP/1.1 only, keeps idle connections per
origin, and maps every failure onto the httpx exception httpcore would have raised, so callers
cannot tell the two apart. Like the rest of Locust it relies on gevent: sockets and TLS are
gevent's, whether or not the process is monkey-patched.

Requests are never retried: a chat turn is a POST that a stateful endpoint may already have taken.
"""

from __future__ import annotations

import errno
import ipaddress
import select
import time
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import gevent.monkey
import gevent.socket
import gevent.ssl
import httpx
from geventhttpclient.response import HTTPParseError, HTTPResponse

__all__ = ["GeventTransport"]

BLOCK_SIZE = 64 * 1024
_Origin = tuple[bytes, str, int]
_Trace = Callable[[str, Any], None]

_CONTEXTS: dict[bool, gevent.ssl.SSLContext] = {}


def _tls_context(verify: bool) -> gevent.ssl.SSLContext:
    """One context per process and mode: building one loads the CA bundle, which takes milliseconds."""
    context = _CONTEXTS.get(verify)
    if context is None:
        context = gevent.ssl.create_default_context()
        if not verify:
            context.check_hostname = False
            context.verify_mode = gevent.ssl.CERT_NONE
        _CONTEXTS[verify] = context
    return context


class _Response(HTTPResponse):
    """The parser's state for one response; body bytes collect in `pieces` as they are parsed."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        super().__init__(method="POST")

    def _on_body(self, buf: bytearray) -> None:
        self.pieces.append(bytes(buf))


class _Body(httpx.SyncByteStream):
    """The response body, one piece per socket read, as the bytes arrive."""

    def __init__(
        self,
        transport: GeventTransport,
        origin: _Origin,
        sock: gevent.socket.socket,
        parsed: _Response,
        timeouts: dict[str, float | None],
    ) -> None:
        self._transport = transport
        self._origin = origin
        self._sock: gevent.socket.socket | None = sock
        self._parsed = parsed
        self._timeouts = timeouts
        self._watchdog: _Watchdog | None = None

    def __iter__(self) -> Iterator[bytes]:
        parsed = self._parsed
        sock = self._sock
        if parsed.pieces:
            yield b"".join(parsed.pieces)
            parsed.pieces.clear()
        if parsed.message_complete or sock is None:
            return
        # The read timeout as the caller set it for the body (it may differ from the headers'). A
        # socket timeout would start and stop a timer at every read; one watchdog per response,
        # re-armed only when it fires, bounds the silence between reads the same way.
        watchdog = self._watchdog = _Watchdog(self._timeouts.get("read"))
        sock.settimeout(None)
        try:
            while not parsed.message_complete:
                _receive(sock, parsed)
                watchdog.last = time.monotonic()
                if parsed.pieces:
                    yield b"".join(parsed.pieces) if len(parsed.pieces) > 1 else parsed.pieces[0]
                    parsed.pieces.clear()
        finally:
            watchdog.stop()

    def close(self) -> None:
        # A reader that stopped early leaves the generator suspended: its watchdog must not fire later.
        if self._watchdog is not None:
            self._watchdog.stop()
        sock, self._sock = self._sock, None
        if sock is None:
            return
        parsed = self._parsed
        if parsed.message_complete and not parsed.should_close():
            self._transport._keep(self._origin, sock)
        else:
            sock.close()


class _Watchdog:
    """Throws `httpx.ReadTimeout` into the reading greenlet once `seconds` pass without a read.

    The caller stamps `last` after each read; the timer wakes once per `seconds` and, when reads
    came meanwhile, sleeps again for what is left, so reads cost a clock call and nothing more.
    """

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.last = time.monotonic()
        self._greenlet = gevent.getcurrent()
        self._timer: Any = None
        if seconds is not None:
            self._arm(seconds)

    def _arm(self, after: float) -> None:
        self._timer = gevent.get_hub().loop.timer(max(after, 0.0))
        self._timer.start(self._check)

    def _check(self) -> None:
        assert self.seconds is not None
        self._timer.close()
        left = self.last + self.seconds - time.monotonic()
        if left > 0:
            self._arm(left)
            return
        self._timer = None
        if not self._greenlet.dead:
            self._greenlet.throw(httpx.ReadTimeout("timed out"))

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.close()
            self._timer = None


class GeventTransport(httpx.BaseTransport):
    """HTTP/1.1 over gevent sockets, parsed in C; idle connections kept per origin.

    `max_keepalive` idle connections are kept per origin, each for at most `keepalive_expiry`
    seconds; one a server closed while idle is noticed and dropped before it is reused. Given a
    `trace` extension, it reports how it got the connection under httpcore's event names plus its
    own (`connection.acquired`, `connection.resolve.*`: see loadtest/phases.py); without one, the
    tracing costs a test per new connection and per request.
    """

    def __init__(
        self, *, verify: bool = True, max_keepalive: int = 1, keepalive_expiry: float = 30.0
    ) -> None:
        self._context = _tls_context(verify)
        self._max_keepalive = max_keepalive
        self._expiry_ns = int(keepalive_expiry * 1e9)
        self._idle: dict[_Origin, list[tuple[gevent.socket.socket, int]]] = {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        port = url.port or (443 if url.scheme == "https" else 80)
        origin: _Origin = (url.raw_scheme, url.host, port)
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        trace: _Trace | None = request.extensions.get("trace")

        sock = self._reuse(origin)
        if trace is not None:
            trace("connection.acquired", {"reused": sock is not None})
        if sock is None:
            sock = self._connect(origin, timeouts.get("connect"), trace)
        head = [b"%s %s HTTP/1.1\r\n" % (request.method.encode("ascii"), url.raw_path)]
        head += [b"%s: %s\r\n" % pair for pair in request.headers.raw]
        head.append(b"\r\n")
        head.append(request.read())
        parsed = _Response()
        try:
            sock.settimeout(timeouts.get("write"))
            try:
                sock.sendall(b"".join(head))
            except TimeoutError as exc:
                raise httpx.WriteTimeout(str(exc) or "timed out") from exc
            except OSError as exc:
                if exc.errno not in (errno.EPIPE, errno.ECONNRESET):
                    raise httpx.WriteError(str(exc)) from exc
                # The server may have answered and closed before reading all we sent: read its answer.
            sock.settimeout(timeouts.get("read"))
            self._read_head(sock, parsed)
        except BaseException:
            sock.close()
            raise
        headers = list(parsed.items())
        return httpx.Response(
            parsed.status_code,
            headers=headers,
            stream=_Body(self, origin, sock, parsed, timeouts),
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (parsed.status_message or "").encode("latin-1", "replace"),
            },
        )

    def close(self) -> None:
        idle, self._idle = self._idle, {}
        for entries in idle.values():
            for sock, _ in entries:
                sock.close()

    def _read_head(self, sock: gevent.socket.socket, parsed: _Response) -> None:
        # Interim 1xx responses come before the final one on the same connection.
        while not parsed.headers_complete or parsed.status_code < 200:
            _receive(sock, parsed)

    def _connect(self, origin: _Origin, timeout: float | None, trace: _Trace | None) -> gevent.socket.socket:
        scheme, host, port = origin
        sock = _open(host, port, timeout, trace)
        sock.setsockopt(gevent.socket.IPPROTO_TCP, gevent.socket.TCP_NODELAY, 1)
        if scheme != b"https":
            return sock
        if trace is not None:
            trace("connection.start_tls.started", {"server_hostname": host, "timeout": timeout})
        try:
            tls = self._context.wrap_socket(sock, server_hostname=host)
        except TimeoutError as exc:
            sock.close()
            raise _failed(trace, "start_tls", httpx.ConnectTimeout(str(exc) or "timed out")) from exc
        except OSError as exc:  # ssl.SSLError, certificate errors included
            sock.close()
            raise _failed(trace, "start_tls", httpx.ConnectError(str(exc))) from exc
        if trace is not None:
            trace("connection.start_tls.complete", {"return_value": tls})
        return tls

    def _reuse(self, origin: _Origin) -> gevent.socket.socket | None:
        idle = self._idle.get(origin)
        now = time.monotonic_ns()
        while idle:
            sock, since = idle.pop()
            if now - since < self._expiry_ns and _still_open(sock):
                return sock
            sock.close()
        return None

    def _keep(self, origin: _Origin, sock: gevent.socket.socket) -> None:
        idle = self._idle.setdefault(origin, [])
        if len(idle) >= self._max_keepalive:
            sock.close()
            return
        idle.append((sock, time.monotonic_ns()))


# One read buffer for the process. recv(BLOCK_SIZE) allocates 64 KiB per read and shrinks it to what
# came, which over hours leaves the allocator's heap fragmented (bench/soak.py grew 0.13 MB a minute);
# copying out only the bytes read does not. Sharing it is safe under gevent: the read fills it and
# the copy empties it with no switch to another greenlet between them.
_BUFFER = bytearray(BLOCK_SIZE)
_VIEW = memoryview(_BUFFER)


def _receive(sock: gevent.socket.socket, parsed: _Response) -> None:
    """Read once from the socket into the parser; what goes wrong is raised as httpx would."""
    try:
        data = _VIEW[: sock.recv_into(_BUFFER)].tobytes()
    except TimeoutError as exc:
        raise httpx.ReadTimeout(str(exc) or "timed out") from exc
    except OSError as exc:
        raise httpx.ReadError(str(exc)) from exc
    if not data and (not parsed.headers_complete or parsed.status_code < 200):
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
    try:
        # b"" tells the parser the connection ended, which completes a body read to the close.
        parsed.feed(data)
    except HTTPParseError as exc:
        detail = _incomplete(parsed) if not data else f"invalid HTTP response: {exc}"
        raise httpx.RemoteProtocolError(detail) from exc
    if not data and not parsed.message_complete:
        raise httpx.RemoteProtocolError(_incomplete(parsed))


def _incomplete(parsed: _Response) -> str:
    # h11's words, so that error examples read the same whichever transport ran.
    if parsed.content_length is None:
        return "peer closed connection without sending complete message body: incomplete chunked read"
    return "peer closed connection without sending complete message body"


def _open(host: str, port: int, timeout: float | None, trace: _Trace | None) -> gevent.socket.socket:
    """A TCP connection to the first of the host's addresses that takes one, as
    `socket.create_connection` opens it (`timeout` for each address), with resolution apart."""
    addresses = _resolve(host, port, trace)
    if trace is not None:
        trace("connection.connect_tcp.started", {"host": host, "port": port, "timeout": timeout})
    error = OSError("getaddrinfo returns an empty list")
    for address in addresses:
        try:
            sock = _connect_to(address, timeout)
        except OSError as exc:
            error = exc
            continue
        if trace is not None:
            trace("connection.connect_tcp.complete", {"return_value": sock})
        return sock
    # The last address's error, as create_connection raises it.
    if isinstance(error, TimeoutError):
        raise _failed(trace, "connect_tcp", httpx.ConnectTimeout(str(error) or "timed out")) from error
    raise _failed(trace, "connect_tcp", httpx.ConnectError(str(error))) from error


def _connect_to(address: tuple[Any, ...], timeout: float | None) -> gevent.socket.socket:
    family, kind, proto, _, where = address
    sock = gevent.socket.socket(family, kind, proto)
    try:
        sock.settimeout(timeout)
        sock.connect(where)
    except BaseException:
        sock.close()
        raise
    return sock


def _resolve(host: str, port: int, trace: _Trace | None) -> list[tuple[Any, ...]]:
    """The host's addresses from gevent's resolver; an IP address resolves to itself, untraced."""
    if trace is None or _is_ip(host):
        return _addresses(host, port, None)
    trace("connection.resolve.started", {"host": host, "port": port})
    addresses = _addresses(host, port, trace)
    trace("connection.resolve.complete", {"return_value": addresses})
    return addresses


def _addresses(host: str, port: int, trace: _Trace | None) -> list[tuple[Any, ...]]:
    try:
        return list(gevent.socket.getaddrinfo(host, port, 0, gevent.socket.SOCK_STREAM))
    except TimeoutError as exc:
        raise _failed(trace, "resolve", httpx.ConnectTimeout(str(exc) or "timed out")) from exc
    except OSError as exc:  # socket.gaierror: no such name, no answer
        raise _failed(trace, "resolve", httpx.ConnectError(str(exc))) from exc


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _failed(trace: _Trace | None, step: str, exc: httpx.TransportError) -> httpx.TransportError:
    """`exc`, after telling the trace that `step` failed with it, as httpcore does."""
    if trace is not None:
        trace(f"connection.{step}.failed", {"exception": exc})
    return exc


# The real poll(), not gevent's: the check must not wait, and select() fails for descriptors past 1023.
_poll = gevent.monkey.get_original("select", "poll")


def _still_open(sock: gevent.socket.socket) -> bool:
    """An idle connection has nothing to read: if it has, the server closed it (or broke protocol)."""
    poller = _poll()
    try:
        poller.register(sock.fileno(), select.POLLIN)
        return not poller.poll(0)
    except (OSError, ValueError):
        return False
