"""GeventTransport against real sockets: streaming, keep-alive, closes and broken responses."""

from __future__ import annotations

import gzip
import resource
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import gevent
import httpx
import pytest

from loadtest.client import TurnResult, make_client, stream_turn
from loadtest.mock.tls import server_context
from loadtest.nlx import request_body
from loadtest.options import TRANSPORTS
from loadtest.phases import Connection, PhaseTrace
from loadtest.transport import GeventTransport
from tests.conftest import FAST, NLX, TEST_KEY
from tests.harness import Run, config_error, turns_at_least
from tests.mockthread import KEY, ThreadedMock, mock_in_thread

CHUNK = b'data: {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": null}]}\n\n'
DONE = b"data: [DONE]\n\n"


def chunked(*pieces: bytes) -> bytes:
    return b"".join(map(frame, pieces)) + b"0\r\n\r\n"


def frame(piece: bytes) -> bytes:
    """One piece of a chunked body, without the end of it."""
    return b"%x\r\n%s\r\n" % (len(piece), piece)


def stream_head(extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
        + extra
        + b"\r\n"
    )


def read_request(conn: socket.socket) -> bytes | None:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        if not piece:
            return None
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += conn.recv(65536)
    return head


Handler = Callable[[socket.socket, bytes, int], bool]


@dataclass
class Server:
    """Serves each request on each connection with `handler(conn, head, n)`; False closes the connection."""

    handler: Handler
    url: str = ""
    connections: int = 0
    heads: list[bytes] = field(default_factory=list)
    conns: list[socket.socket] = field(default_factory=list)


class Serve(Protocol):
    def __call__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> Server: ...


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Starts servers on 127.0.0.1 (https with a `tls` context) for the test."""
    listeners: list[socket.socket] = []
    threads: list[threading.Thread] = []
    servers: list[Server] = []

    def start(handler: Handler, tls: ssl.SSLContext | None = None) -> Server:
        listener = socket.create_server(("127.0.0.1", 0))
        scheme = "https" if tls else "http"
        server = Server(
            handler, url=f"{scheme}://127.0.0.1:{listener.getsockname()[1]}/d/web-en-US/chat/completions"
        )

        def connection(raw: socket.socket) -> None:
            try:
                conn = tls.wrap_socket(raw, server_side=True) if tls else raw
            except OSError:  # a client that refused the certificate
                raw.close()
                return
            with conn:
                while True:
                    try:
                        head = read_request(conn)
                    except OSError:  # closed at teardown while waiting (gevent raises, threads read b"")
                        return
                    if head is None:
                        return
                    server.heads.append(head)
                    if not server.handler(conn, head, len(server.heads)):
                        return

        def accept() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                server.connections += 1
                server.conns.append(conn)
                thread = threading.Thread(target=connection, args=(conn,), daemon=True)
                thread.start()

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        listeners.append(listener)
        threads.append(thread)
        servers.append(server)
        return server

    yield start
    for listener in listeners:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        listener.close()
    for thread in threads:
        thread.join(timeout=5)
    for server in servers:
        for conn in server.conns:
            conn.close()


def post(client: httpx.Client, url: str) -> tuple[int, bytes, httpx.Headers]:
    with client.stream("POST", url, content=b'{"x": 1}', headers={"Content-Type": "application/json"}) as r:
        return r.status_code, b"".join(r.iter_bytes()), r.headers


def turn(client: httpx.Client, url: str, *, idle_timeout: float | None = None) -> TurnResult:
    return stream_turn(
        client, url, request_body("c", []), api_key="sk-transport-test", idle_timeout=idle_timeout
    )


def client_for(**kwargs: object) -> httpx.Client:
    return httpx.Client(transport=GeventTransport(**kwargs), timeout=10)  # type: ignore[arg-type]


def test_keep_alive_reuses_one_connection(serve: Callable[[Handler], Server]) -> None:
    def handler(conn: socket.socket, head: bytes, n: int) -> bool:
        conn.sendall(stream_head() + chunked(CHUNK, DONE))
        return True

    server = serve(handler)
    with client_for() as client:
        for _ in range(3):
            assert post(client, server.url)[:2] == (200, CHUNK + DONE)
    assert server.connections == 1 and len(server.heads) == 3
    first = server.heads[0].split(b"\r\n")
    assert first[0] == b"POST /d/web-en-US/chat/completions HTTP/1.1"
    assert b"content-length: 8" in [line.lower() for line in first]


def test_connection_close_and_expiry_open_new_connections(serve: Callable[[Handler], Server]) -> None:
    def close_each(conn: socket.socket, head: bytes, n: int) -> bool:
        conn.sendall(stream_head(b"Connection: close\r\n") + chunked(CHUNK))
        return False

    server = serve(close_each)
    with client_for() as client:
        for _ in range(2):
            assert post(client, server.url)[:2] == (200, CHUNK)
    assert server.connections == 2

    def keep(conn: socket.socket, head: bytes, n: int) -> bool:
        conn.sendall(stream_head() + chunked(CHUNK))
        return True

    server = serve(keep)
    with client_for(keepalive_expiry=0) as client:
        for _ in range(2):
            assert post(client, server.url)[:2] == (200, CHUNK)
    assert server.connections == 2


@pytest.mark.parametrize("close", ["fin", "rst"])
def test_a_connection_the_server_closed_while_idle_is_not_reused(
    serve: Callable[[Handler], Server], close: str
) -> None:
    closed = threading.Event()

    def answer_then_close(conn: socket.socket, head: bytes, n: int) -> bool:
        # Keep-alive promised, then closed while idle, as servers do after their idle timeout (some
        # load balancers with a reset).
        conn.sendall(stream_head() + chunked(CHUNK))
        if close == "rst":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
        else:
            conn.shutdown(socket.SHUT_WR)
        closed.set()
        return False

    server = serve(answer_then_close)
    with client_for() as client:
        assert post(client, server.url)[:2] == (200, CHUNK)
        assert closed.wait(10)
        # Wait until the FIN has reached the idle socket (no sleep: select returns when it has).
        transport = client._transport
        assert isinstance(transport, GeventTransport)
        [[(sock, _)]] = transport._idle.values()
        assert select.select([sock], [], [], 10)[0]
        assert post(client, server.url)[:2] == (200, CHUNK)
    assert server.connections == 2


def test_keep_alive_with_descriptors_past_1023(serve: Callable[[Handler], Server]) -> None:
    # Thousands of users hold thousands of sockets; select() cannot look at a descriptor past 1023,
    # and an idle check built on it took every kept connection for closed.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(2048, hard), hard))
    fillers = [socket.socket() for _ in range(1030)]
    try:

        def keep(conn: socket.socket, head: bytes, n: int) -> bool:
            conn.sendall(stream_head() + chunked(CHUNK))
            return True

        server = serve(keep)
        with client_for() as client:
            for _ in range(3):
                assert post(client, server.url)[:2] == (200, CHUNK)
            transport = client._transport
            assert isinstance(transport, GeventTransport)
            [[(sock, _)]] = transport._idle.values()
            assert sock.fileno() > 1023
        assert server.connections == 1
    finally:
        for filler in fillers:
            filler.close()


def test_body_pieces_arrive_as_they_are_sent(serve: Callable[[Handler], Server]) -> None:
    release = threading.Event()

    def slow(conn: socket.socket, head: bytes, n: int) -> bool:
        conn.sendall(stream_head() + frame(CHUNK))
        # The second piece only goes once the client has the first: a transport that buffered
        # would wait here until the release times out.
        release.wait(10)
        conn.sendall(chunked(DONE))
        return True

    server = serve(slow)
    with client_for() as client, client.stream("POST", server.url, content=b"{}") as response:
        pieces = response.iter_raw()
        assert next(pieces) == CHUNK
        assert not release.is_set()
        release.set()
        assert b"".join(pieces) == DONE


def test_the_idle_timeout_counts_from_the_last_read(serve: Callable[[Handler], Server]) -> None:
    done = threading.Event()

    def trickle_then_stall(conn: socket.socket, head: bytes, n: int) -> bool:
        conn.sendall(stream_head())
        for _ in range(6):  # a read every 0.1 s: longer in all than the idle timeout, never idle
            conn.sendall(frame(CHUNK))
            time.sleep(0.1)
        done.wait(10)
        return False

    server = serve(trickle_then_stall)
    with make_client() as client:
        result = turn(client, server.url, idle_timeout=0.25)
    done.set()
    assert not result.ok and result.kind == "idle_timeout" and result.content == "hi" * 6
    assert result.t_last_event_ns is not None
    silence_s = (result.t_end_ns - result.t_last_event_ns) / 1e9
    assert 0.25 <= silence_s < 1.0, silence_s


def test_a_turn_that_ends_early_leaves_no_watchdog_behind(serve: Callable[[Handler], Server]) -> None:
    done = threading.Event()

    def error_then_silence(conn: socket.socket, head: bytes, n: int) -> bool:
        error = b'data: {"error": {"message": "upstream failed"}}\n\n'
        conn.sendall(stream_head() + frame(error))
        done.wait(10)
        return False

    server = serve(error_then_silence)
    with make_client() as client:
        result = turn(client, server.url, idle_timeout=0.1)
        assert result.kind == "stream_error"
        # The turn stopped reading with its response open: a watchdog left running would throw
        # its ReadTimeout into this greenlet during the next wait.
        gevent.sleep(0.3)
    done.set()


def test_a_cut_stream_fails_as_a_disconnect(serve: Callable[[Handler], Server]) -> None:
    def cut(conn: socket.socket, head: bytes, n: int) -> bool:
        conn.sendall(stream_head() + frame(CHUNK))
        return False

    server = serve(cut)
    with make_client() as client:
        result = turn(client, server.url)
    assert not result.ok and result.kind == "disconnect" and result.content == "hi"
    assert "incomplete chunked read" in result.detail


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (b"", "Server disconnected without sending a response"),
        (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-", "Server disconnected without sending a response"),
        (b"NOT HTTP AT ALL\r\n\r\n", "invalid HTTP response"),
    ],
)
def test_no_or_broken_response_is_a_remote_protocol_error(
    serve: Callable[[Handler], Server], reply: bytes, error: str
) -> None:
    def broken(conn: socket.socket, head: bytes, n: int) -> bool:
        conn.sendall(reply)
        return False

    server = serve(broken)
    with client_for() as client, pytest.raises(httpx.RemoteProtocolError, match=error):
        post(client, server.url)


def test_http_10_body_until_close_and_gzip_and_interim_response(serve: Callable[[Handler], Server]) -> None:
    body = CHUNK * 50 + DONE

    def old(conn: socket.socket, head: bytes, n: int) -> bool:
        conn.sendall(
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\nContent-Encoding: gzip\r\n"
            b"X-Twice: a\r\nX-Twice: b\r\n\r\n" + gzip.compress(body)
        )
        return False

    server = serve(old)
    with client_for() as client:
        status, content, headers = post(client, server.url)
    assert status == 200 and content == body
    assert headers.get_list("x-twice") == ["a", "b"]
    with make_client() as client:
        result = turn(client, server.url)
    assert result.ok and result.content == "hi" * 50 and result.done


def test_connect_refused_is_a_connect_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with client_for() as client, pytest.raises(httpx.ConnectError):
        post(client, f"http://127.0.0.1:{port}/x")


def test_make_client_refuses_an_unknown_transport() -> None:
    with pytest.raises(ValueError, match="gevent, httpx"):
        make_client(transport="curl")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_locust_run_on_each_transport(
    transport: str, thread_mock: Callable[..., ThreadedMock], in_process: Callable[..., Run]
) -> None:
    mock = thread_mock(*FAST)
    run = in_process(
        f"--host {mock.url} {NLX} -u 4 -r 4 --think-time 0 --stop-timeout 30 --transport {transport}",
        until=turns_at_least(20),
        env={"NLX_API_KEY": TEST_KEY},
    )
    assert run.exit_code == 0, run.output[-3000:]
    summary = run.summary()
    assert summary["run"]["transport"] == transport
    counts = summary["counts"]
    assert counts["turns_ok"] > 10 and counts["turns_ok"] == mock.stats()["turns_completed"]
    assert (
        f"HTTP transport</dt><dd>{transport}</dd>"
        in (run.report_dir / summary["run"]["id"] / "report.html").read_text()
    )


def test_an_unknown_transport_is_a_one_line_error() -> None:
    message = config_error(f"{NLX} --transport curl")
    assert "--transport" in message and "gevent" in message and "\n" not in message


# --- connection phases: what each transport tells a PhaseTrace -------------------------------------


@pytest.fixture(scope="module")
def tls_context() -> ssl.SSLContext:
    """A server context with a self-signed certificate for 127.0.0.1 (clients need verify=False): the
    one `loadtest mock --tls` makes."""
    return server_context("127.0.0.1")


def keep_alive(conn: socket.socket, head: bytes, n: int) -> bool:
    conn.sendall(stream_head() + chunked(CHUNK, DONE))
    return True


def traced(client: httpx.Client, url: str) -> PhaseTrace:
    """One request with a PhaseTrace, its body read; raises what the request raised."""
    trace = PhaseTrace()
    with client.stream("POST", url, content=b"{}", extensions={"trace": trace}) as response:
        assert response.status_code == 200
        response.read()
    return trace


REUSED = Connection(new=False, dns_ns=None, connect_ns=None, tls_ns=None)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_new_connection_has_its_phases_and_a_reused_one_none(
    serve: Serve, tls_context: ssl.SSLContext, transport: str, scheme: str
) -> None:
    server = serve(keep_alive, tls_context if scheme == "https" else None)
    with make_client(transport=transport, verify=False) as client:
        first = traced(client, server.url).connection()
        second = traced(client, server.url).connection()
    assert server.connections == 1
    assert first is not None and first.new and first.dns_ns is None  # an IP address: nothing to resolve
    assert first.connect_ns is not None and first.connect_ns > 0
    if scheme == "https":
        assert first.tls_ns is not None and first.tls_ns > 0
    else:
        assert first.tls_ns is None
    assert second == REUSED


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_host_name_is_resolved_apart_by_the_gevent_transport(serve: Serve, transport: str) -> None:
    server = serve(keep_alive)
    # localhost may resolve to ::1 first, where nothing listens: the next address is tried.
    url = server.url.replace("127.0.0.1", "localhost")
    with make_client(transport=transport) as client:
        first = traced(client, url).connection()
    assert first is not None and first.new and first.connect_ns is not None
    if transport == "gevent":
        assert first.dns_ns is not None and first.dns_ns > 0
    else:
        assert first.dns_ns is None  # httpcore resolves inside its connect: not measured


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_server_that_closes_after_each_response_gives_a_new_connection_every_turn(transport: str) -> None:
    with mock_in_thread(*FAST, "--fault", "idle_close=100%") as mock:
        url = mock.url + "/dep1/web-en-US/chat/completions"
        with make_client(transport=transport) as client:
            body = request_body("c", [{"role": "user", "content": "hi"}])
            results = [stream_turn(client, url, body, api_key=KEY) for _ in range(3)]
        served = mock.stats()
    assert served["connections"] == 3 and all(result.ok for result in results)
    for result in results:
        assert result.connection is not None and result.connection.new
        assert result.connection.connect_ns is not None and result.connection.connect_ns > 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_connection_that_fails_to_open_is_none(
    serve: Serve, tls_context: ssl.SSLContext, transport: str
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{s.getsockname()[1]}/x"
    waits: list[int] = []
    trace = PhaseTrace(waits.append)
    with make_client(transport=transport) as client, pytest.raises(httpx.ConnectError):
        client.post(refused, extensions={"trace": trace})
    assert trace.connection() is None and len(waits) == 1
    server = serve(keep_alive, tls_context)
    trace = PhaseTrace()
    with make_client(transport=transport) as client, pytest.raises(httpx.ConnectError, match="CERTIFICATE"):
        client.post(server.url, extensions={"trace": trace})  # nobody vouches for the certificate
    assert trace.connection() is None


def test_the_gevent_transport_tries_each_address_in_turn(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve(keep_alive)
    port = int(server.url.split(":")[2].split("/")[0])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        refused = s.getsockname()[1]
    addresses: list[tuple[Any, ...]] = []
    real = gevent.socket.getaddrinfo

    def resolve(host: str, port: int, *args: Any) -> list[tuple[Any, ...]]:
        # Other greenlets of the session (background runs) resolve their own hosts meanwhile.
        return addresses if host == "chat.example" else real(host, port, *args)

    monkeypatch.setattr(gevent.socket, "getaddrinfo", resolve)
    url = server.url.replace("127.0.0.1", "chat.example")
    entry = (socket.AF_INET, socket.SOCK_STREAM, 6, "")
    addresses[:] = [(*entry, ("127.0.0.1", refused)), (*entry, ("127.0.0.1", port))]
    with client_for() as client:
        first = traced(client, url).connection()
    assert first is not None and first.new and first.dns_ns is not None and server.connections == 1
    # Every address refused: the last one's error, as socket.create_connection raises it.
    addresses[:] = [(*entry, ("127.0.0.1", refused))]
    events: list[str] = []
    with client_for() as client, pytest.raises(httpx.ConnectError, match="refused"):
        client.post(url, extensions={"trace": lambda name, info: events.append(name)})
    assert events[-2:] == ["connection.connect_tcp.started", "connection.connect_tcp.failed"]
    addresses.clear()
    with client_for() as client, pytest.raises(httpx.ConnectError, match="empty list"):
        client.post(url)


def test_the_gevent_transport_maps_a_failed_resolution_to_a_connect_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = gevent.socket.getaddrinfo

    def no_such_name(host: str, *args: Any) -> list[tuple[Any, ...]]:
        if host != "chat.example":  # another greenlet's host (a background run's)
            return real(host, *args)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(gevent.socket, "getaddrinfo", no_such_name)
    events: list[str] = []
    with client_for() as client, pytest.raises(httpx.ConnectError, match="not known"):
        client.post("http://chat.example/x", extensions={"trace": lambda name, info: events.append(name)})
    assert events == ["connection.acquired", "connection.resolve.started", "connection.resolve.failed"]
