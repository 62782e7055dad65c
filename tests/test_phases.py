"""PhaseTrace from synthetic event sequences, as httpcore and GeventTransport send them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest

from loadtest.health import pool_wait_trace
from loadtest.phases import Connection, PhaseTrace

RESPONSE = [
    "http11.send_request_body.started",
    "http11.send_request_body.complete",
    "http11.receive_response_headers.started",
    "http11.receive_response_headers.complete",
    "http11.receive_response_body.started",
    "http11.receive_response_body.complete",
    "http11.response_closed.started",
    "http11.response_closed.complete",
]
# httpcore's events for a request on a new connection, on a kept-alive one, and GeventTransport's.
HTTPX_NEW = [
    "connection.connect_tcp.started",
    "connection.connect_tcp.complete",
    "http11.send_request_headers.started",
    "http11.send_request_headers.complete",
    *RESPONSE,
]
HTTPX_NEW_TLS = [
    "connection.connect_tcp.started",
    "connection.connect_tcp.complete",
    "connection.start_tls.started",
    "connection.start_tls.complete",
    "http11.send_request_headers.started",
    "http11.send_request_headers.complete",
    *RESPONSE,
]
HTTPX_REUSED = ["http11.send_request_headers.started", "http11.send_request_headers.complete", *RESPONSE]
GEVENT_NEW_TLS = [
    "connection.acquired",
    "connection.resolve.started",
    "connection.resolve.complete",
    "connection.connect_tcp.started",
    "connection.connect_tcp.complete",
    "connection.start_tls.started",
    "connection.start_tls.complete",
]


@pytest.fixture
def clock() -> Iterator[list[int]]:
    """perf_counter_ns as PhaseTrace sees it: each call returns the next of 1000, 1010, 1030, 1060, …
    (steps of 10, 20, 30, …), so every interval says which events it lies between."""
    calls: list[int] = []

    def tick() -> int:
        calls.append(1000 + 5 * len(calls) * (len(calls) + 1))
        return calls[-1]

    with mock.patch("loadtest.phases.time.perf_counter_ns", tick):
        yield calls


def feed(trace: PhaseTrace, names: list[str], reused: bool = False) -> PhaseTrace:
    for name in names:
        info: dict[str, Any] = {"reused": reused} if name == "connection.acquired" else {}
        trace(name, info)
    return trace


def test_a_new_http_connection_has_its_connect_time(clock: list[int]) -> None:
    waits: list[int] = []
    trace = feed(PhaseTrace(waits.append), HTTPX_NEW)
    # Stamps: creation 1000, connect started 1010, complete 1030, headers 1060; the response's events
    # take none.
    assert waits == [10]
    assert trace.connection() == Connection(new=True, dns_ns=None, connect_ns=20, tls_ns=None)
    assert len(clock) == 4


def test_a_new_https_connection_has_its_tls_time(clock: list[int]) -> None:
    trace = feed(PhaseTrace(), HTTPX_NEW_TLS)
    # connect 1010 → 1030, TLS 1060 → 1100.
    assert trace.connection() == Connection(new=True, dns_ns=None, connect_ns=20, tls_ns=40)


def test_gevent_events_give_resolution_connect_and_tls(clock: list[int]) -> None:
    waits: list[int] = []
    trace = feed(PhaseTrace(waits.append), GEVENT_NEW_TLS)
    # acquired 1010; resolve 1030 → 1060, connect 1100 → 1150, TLS 1210 → 1280.
    assert waits == [10]
    assert trace.connection() == Connection(new=True, dns_ns=30, connect_ns=50, tls_ns=70)


def test_a_reused_connection_has_no_phases(clock: list[int]) -> None:
    waits: list[int] = []
    trace = feed(PhaseTrace(waits.append), HTTPX_REUSED)
    assert waits == [10]
    assert trace.connection() == Connection(new=False, dns_ns=None, connect_ns=None, tls_ns=None)
    gevent = feed(PhaseTrace(waits.append), ["connection.acquired"], reused=True)
    assert gevent.connection() == Connection(new=False, dns_ns=None, connect_ns=None, tls_ns=None)


def test_a_request_that_fails_before_a_connection_has_none(clock: list[int]) -> None:
    waits: list[int] = []
    assert PhaseTrace(waits.append).connection() is None  # e.g. a pool timeout: no event at all
    assert waits == []
    failed_connect = ["connection.connect_tcp.started", "connection.connect_tcp.failed"]
    assert feed(PhaseTrace(waits.append), failed_connect).connection() is None
    failed_tls = [*HTTPX_NEW_TLS[:3], "connection.start_tls.failed"]
    assert feed(PhaseTrace(), failed_tls).connection() is None
    # GeventTransport raising during a step (before it or before TLS): no .failed needed.
    for cut in (1, 2, 3, 4, 6):
        assert feed(PhaseTrace(), GEVENT_NEW_TLS[:cut]).connection() is None, GEVENT_NEW_TLS[:cut]
    assert feed(PhaseTrace(), ["connection.acquired", "connection.resolve.failed"]).connection() is None
    assert len(waits) == 1  # the failed connect still waited for its place in the pool


def test_a_connect_retried_counts_the_attempt_that_opened(clock: list[int]) -> None:
    retried = [
        "connection.connect_tcp.started",
        "connection.connect_tcp.failed",
        "connection.retry.started",
        "connection.retry.complete",
        *HTTPX_NEW,
    ]
    # The second connect: started at the 4th stamp (1060), complete at the 5th (1100); retry events
    # take no stamp.
    assert feed(PhaseTrace(), retried).connection() == Connection(
        new=True, dns_ns=None, connect_ns=40, tls_ns=None
    )


def test_pool_wait_trace_is_the_same_wait() -> None:
    waits: list[int] = []
    trace = pool_wait_trace(waits.append)
    assert isinstance(trace, PhaseTrace)
    feed(trace, HTTPX_REUSED)
    assert len(waits) == 1 and waits[0] >= 0
