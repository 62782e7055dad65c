"""Connection phases of one request, from the events of httpx's `trace` extension.

httpcore reports its work through the `trace` request extension as `<prefix>.<step>.started`,
`.complete` and `.failed` events; GeventTransport sends the same names for the same steps, plus
the ones httpcore cannot see apart:

    connection.acquired {"reused": bool}   gevent only: the request has its connection (or will open one)
    connection.resolve.*                   gevent only: name resolution (none for an IP address)
    connection.connect_tcp.*               TCP connect (httpcore: name resolution included)
    connection.start_tls.*                 TLS handshake, https only
    http11.send_request_headers.started    the first event on a kept-alive connection (httpcore)

`PhaseTrace` turns one request's events into a `Connection` and records the time the request
waited for a connection from the pool. It does no I/O, so a test can feed it any sequence.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Connection", "PhaseTrace"]


@dataclass(slots=True)
class Connection:
    """The connection a request went out on; times in ns, None where not measured."""

    new: bool  # opened for this request (False: a kept-alive one reused)
    dns_ns: int | None  # name resolution (None: an IP address, or httpx's transport, which hides it)
    connect_ns: int | None  # TCP connect (new only)
    tls_ns: int | None  # TLS handshake (new https only)


class PhaseTrace:
    """An httpx `trace` extension for one request: its connection and its wait for one.

    Create it just before sending: `client.stream(..., extensions={"trace": PhaseTrace(f)})`.
    httpcore's pool emits no event of its own; the first event of a request comes from the connection
    it was given (`connection.connect_tcp.started` for a new one, `http11.send_request_headers.started`
    for a kept-alive one), so the pool wait is the time from creation to that first event.
    GeventTransport sends `connection.acquired` at the same point. A request that fails before it has
    a connection records no wait, and a connection that failed to open is no connection (None).
    Once the request is on its connection, each event costs a call and a test.
    """

    __slots__ = (
        "_on_pool_wait", "_t0", "_waiting", "_settled", "_new", "_mark", "_dns", "_connect", "_tls", "_open"
    )  # fmt: skip

    def __init__(self, on_pool_wait: Callable[[int], None] | None = None) -> None:
        self._on_pool_wait = on_pool_wait
        self._waiting = True
        self._settled = False
        self._new: bool | None = None
        self._mark = 0
        self._dns: int | None = None
        self._connect: int | None = None
        self._tls: int | None = None
        # A new connection is open once every step that started has completed.
        self._open = False
        self._t0 = time.perf_counter_ns()

    def __call__(self, name: str, info: Any) -> None:
        if self._settled:
            return
        step = _STEPS.get(name)
        if step is None and not self._waiting:
            return
        now = time.perf_counter_ns()
        if self._waiting:
            self._waiting = False
            if self._on_pool_wait is not None:
                self._on_pool_wait(now - self._t0)
        if step is not None:
            step(self, now, info)

    def connection(self) -> Connection | None:
        """The request's connection; None if it had none (it failed before, or while opening one)."""
        if self._new is None:
            return None
        if not self._new:
            return Connection(new=False, dns_ns=None, connect_ns=None, tls_ns=None)
        if not self._open or self._connect is None:
            return None
        return Connection(new=True, dns_ns=self._dns, connect_ns=self._connect, tls_ns=self._tls)

    # One method per event; `now` is the event's perf_counter_ns.

    def _acquired(self, now: int, info: Any) -> None:
        self._new = not info["reused"]
        self._settled = not self._new

    def _sending(self, now: int, info: Any) -> None:
        # httpcore's first event on a kept-alive connection; on a new one the connect came first.
        # The request is on its connection now: httpcore moves a request to another connection only
        # before it has sent anything.
        if self._new is None:
            self._new = False
        self._settled = True

    def _resolve_started(self, now: int, info: Any) -> None:
        self._start(now)
        self._dns = None

    def _resolve_complete(self, now: int, info: Any) -> None:
        self._dns = now - self._mark
        self._open = True

    def _connect_started(self, now: int, info: Any) -> None:
        # httpcore retries a failed connect (`retries`), and its pool may move a request to a new
        # connection: the last attempt is the one the request went out on.
        self._start(now)
        self._connect = self._tls = None

    def _connect_complete(self, now: int, info: Any) -> None:
        self._connect = now - self._mark
        self._open = True

    def _tls_started(self, now: int, info: Any) -> None:
        self._start(now)
        self._tls = None

    def _tls_complete(self, now: int, info: Any) -> None:
        self._tls = now - self._mark
        self._open = True

    def _failed(self, now: int, info: Any) -> None:
        self._open = False

    def _start(self, now: int) -> None:
        self._new = True
        self._open = False
        self._mark = now


_Step = Callable[[PhaseTrace, int, Any], None]
_STEPS: dict[str, _Step] = {
    "connection.acquired": PhaseTrace._acquired,
    "connection.resolve.started": PhaseTrace._resolve_started,
    "connection.resolve.complete": PhaseTrace._resolve_complete,
    "connection.resolve.failed": PhaseTrace._failed,
    "connection.connect_tcp.started": PhaseTrace._connect_started,
    "connection.connect_tcp.complete": PhaseTrace._connect_complete,
    "connection.connect_tcp.failed": PhaseTrace._failed,
    "connection.start_tls.started": PhaseTrace._tls_started,
    "connection.start_tls.complete": PhaseTrace._tls_complete,
    "connection.start_tls.failed": PhaseTrace._failed,
    "http11.send_request_headers.started": PhaseTrace._sending,
    "http2.send_request_headers.started": PhaseTrace._sending,
}
