"""A turn goes straight to the client's transport (`client.TurnSender`): what `httpx.Client.send` did
that a turn still needs (cookies, headers, proxies from the environment, content decoding, closing
the response) holds for both transports, and a redirect is not followed."""

from __future__ import annotations

import gc
import gzip
import threading
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import gevent
import gevent.event
import httpx
import orjson
import pytest

from loadtest.client import TurnResult, make_client, sender_for, stream_turn
from loadtest.options import TRANSPORTS

KEY = "sk-sender-test-key"
PATH = "/dep/web-en-US/chat/completions"
STREAM = (
    b'data: {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": null}]}\n\n'
    b"data: [DONE]\n\n"
)
SSE_HEADERS = [("Content-Type", "text/event-stream")]


def body(text: str) -> dict[str, object]:
    return {"model": "nlx:c", "messages": [{"role": "user", "content": text}], "stream": True}


@dataclass
class Seen:
    """One request as the server read it."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=lambda: list(SSE_HEADERS))
    body: bytes = STREAM


@dataclass
class Server:
    """A local HTTP/1.1 server that keeps what it was sent and answers from `replies` in turn (the
    last one over and over); as a forward proxy it answers itself, and a CONNECT gets a 403."""

    url: str
    seen: list[Seen]
    replies: list[Reply]


def handler_for(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802  (the name http.server calls)
            data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            server.seen.append(Seen("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, data))
            reply = server.replies[min(len(server.seen), len(server.replies)) - 1]
            self.send_response(reply.status)
            for name, value in reply.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        def do_CONNECT(self) -> None:  # noqa: N802
            server.seen.append(Seen("CONNECT", self.path, dict(self.headers.items()), b""))
            self.send_response(403)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    started: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def start(*replies: Reply) -> Server:
        server = Server("", [], list(replies) or [Reply()])
        http = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(server))
        server.url = f"http://127.0.0.1:{http.server_address[1]}"
        thread = threading.Thread(target=http.serve_forever, daemon=True)
        thread.start()
        started.append((http, thread))
        return server

    yield start
    for http, thread in started:
        http.shutdown()
        thread.join()
        http.server_close()


def turns(client: httpx.Client, url: str, texts: list[str], api_key: str = KEY) -> list[TurnResult]:
    return [stream_turn(client, url, body(text), api_key=api_key) for text in texts]


# --- cookies ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_load_balancers_cookie_comes_back_on_the_users_next_requests(
    transport: str, serve: Callable[..., Server]
) -> None:
    sticky = [("Set-Cookie", "AWSALB=first; Path=/"), ("Set-Cookie", "AWSALBCORS=first; Path=/")]
    renewed = [("Set-Cookie", "AWSALB=second; Path=/")]
    server = serve(
        Reply(headers=SSE_HEADERS + sticky), Reply(), Reply(headers=SSE_HEADERS + renewed), Reply()
    )
    with make_client(transport=transport) as client, make_client(transport=transport) as other_user:
        results = turns(client, server.url + PATH, ["a", "b", "c", "d"])
        stranger = turns(other_user, server.url + PATH, ["e"])
    assert all(r.ok for r in results + stranger), [r.detail for r in results + stranger]
    cookies = [seen.headers.get("cookie") for seen in server.seen]
    assert cookies == [
        None,
        "AWSALB=first; AWSALBCORS=first",
        "AWSALB=first; AWSALBCORS=first",
        "AWSALB=second; AWSALBCORS=first",
        None,  # another user, another jar
    ]


def counted(monkeypatch: pytest.MonkeyPatch, jar: httpx.Cookies, name: str) -> list[object]:
    """The arguments of each call of the jar's method `name` from now on."""
    calls: list[object] = []
    method = getattr(jar, name)

    def spy(argument: object) -> None:
        calls.append(argument)
        method(argument)

    monkeypatch.setattr(jar, name, spy)
    return calls


def test_the_jar_is_only_touched_when_a_response_sets_a_cookie(monkeypatch: pytest.MonkeyPatch) -> None:
    replies = iter([[("set-cookie", "AWSALB=x; Path=/")], [], [], [("set-cookie", "AWSALB=y; Path=/")], []])
    sent: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers.get("cookie"))
        return httpx.Response(200, headers=[*SSE_HEADERS, *next(replies)], content=STREAM)

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        extracted = counted(monkeypatch, client.cookies, "extract_cookies")
        set_headers = counted(monkeypatch, client.cookies, "set_cookie_header")
        results = turns(client, "http://lb.example" + PATH, ["a", "b", "c", "d", "e"])
    assert all(r.ok for r in results)
    assert sent == [None, "AWSALB=x", "AWSALB=x", "AWSALB=x", "AWSALB=y"]
    # Read from the jar once per response that set a cookie, never on the turns between.
    assert len(extracted) == 2 and len(set_headers) == 2


def test_a_cookie_for_another_path_or_host_is_not_sent() -> None:
    sent: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append((str(request.url), request.headers.get("cookie")))
        cookie = [("set-cookie", "scoped=1; Path=/other")] if len(sent) == 1 else []
        return httpx.Response(200, headers=[*SSE_HEADERS, *cookie], content=STREAM)

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        turns(client, "http://a.example/other/x", ["a"])
        turns(client, "http://a.example" + PATH, ["b"])
        turns(client, "http://a.example/other/y", ["c"])
        turns(client, "http://b.example/other/z", ["d"])
    assert [cookie for _, cookie in sent] == [None, None, "scoped=1", None]


# --- the request: headers, body, URL -----------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_each_turn_sends_its_own_body_with_the_clients_headers_and_the_bearer(
    transport: str, serve: Callable[..., Server]
) -> None:
    server, elsewhere = serve(), serve()
    with make_client(transport=transport) as client:
        results = [
            *turns(client, server.url + PATH, ["short", "a much longer message than the first"]),
            *turns(client, server.url + PATH, ["new key"], api_key="sk-rotated"),
            *turns(client, elsewhere.url + "/v1/chat/completions", ["moved"], api_key=""),
        ]
    assert all(r.ok for r in results), [r.detail for r in results]
    seen = server.seen + elsewhere.seen
    assert [orjson.loads(s.body)["messages"][0]["content"] for s in seen] == [
        "short", "a much longer message than the first", "new key", "moved"
    ]  # fmt: skip
    for s in seen:
        assert s.method == "POST" and int(s.headers["content-length"]) == len(s.body)
        assert s.headers["user-agent"] == "loadtest"
        assert s.headers["content-type"] == "application/json"
        assert s.headers["accept"] == "text/event-stream"
    assert [s.headers.get("authorization") for s in seen] == [
        f"Bearer {KEY}", f"Bearer {KEY}", "Bearer sk-rotated", None
    ]  # fmt: skip
    assert [s.target for s in seen] == [PATH, PATH, PATH, "/v1/chat/completions"]
    assert [s.headers["host"] for s in seen] == [server.url[7:]] * 3 + [elsewhere.url[7:]]


def test_two_turns_in_flight_on_one_client_send_their_own_bodies() -> None:
    first_waits = gevent.event.Event()
    bodies: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        text = orjson.loads(request.read())["messages"][0]["content"]
        if text == "first":
            first_waits.wait(5)  # the second turn is sent meanwhile, and lets it go on
        else:
            first_waits.set()
        bodies.append(text)
        return httpx.Response(200, headers=SSE_HEADERS, content=STREAM)

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        first = gevent.spawn(stream_turn, client, "http://x.example" + PATH, body("first"), api_key=KEY)
        second = gevent.spawn(stream_turn, client, "http://x.example" + PATH, body("second"), api_key=KEY)
        gevent.joinall([first, second], timeout=10, raise_error=True)
    assert first.value.ok and second.value.ok
    assert bodies == ["second", "first"]


def test_a_closed_client_sends_nothing() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    client = httpx.Client(transport=httpx.MockTransport(handler))
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        stream_turn(client, "http://x.example" + PATH, body("a"), api_key=KEY)
    assert sent == []


# --- proxies from the environment ---------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_http_proxy_from_the_environment_carries_the_turn(
    transport: str, serve: Callable[..., Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = serve()
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with make_client(transport=transport) as client:
        (result,) = turns(client, "http://upstream.invalid" + PATH, ["via proxy"])
    assert result.ok, result.detail
    # A forward proxy gets the whole URL; the bearer goes along, to the upstream.
    (seen,) = proxy.seen
    assert seen.target == "http://upstream.invalid" + PATH
    assert seen.headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_https_proxy_from_the_environment_is_asked_for_a_tunnel_and_no_proxy_is_honoured(
    transport: str, serve: Callable[..., Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy, direct = serve(), serve()
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with make_client(transport=transport, connect_timeout=5) as client:
        (tunnelled,) = turns(client, "https://upstream.invalid" + PATH, ["a"])
        (bypassed,) = turns(client, direct.url + PATH, ["b"])
    # The proxy refused the tunnel: the turn went to it, and no further.
    assert [(s.method, s.target) for s in proxy.seen] == [("CONNECT", "upstream.invalid:443")]
    assert not tunnelled.ok and tunnelled.kind in ("connect", "transport"), tunnelled
    assert bypassed.ok and len(direct.seen) == 1


# --- the response: status, decoding, closing ----------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_redirect_is_not_followed_and_fails_the_turn_with_its_status(
    transport: str, serve: Callable[..., Server]
) -> None:
    target = serve()
    moved = Reply(302, [("Location", target.url + PATH), ("Content-Type", "text/html")], b"<a>moved</a>")
    server = serve(moved)
    with make_client(transport=transport) as client:
        (result,) = turns(client, server.url + PATH, ["a"])
    assert not result.ok and result.kind == "http_302" and result.status == 302
    assert result.detail == f"HTTP 302 to {target.url + PATH}: <a>moved</a>"
    assert len(server.seen) == 1 and target.seen == []


@pytest.mark.parametrize("encoding", ["gzip", "identity"])
def test_an_encoded_stream_is_decoded(encoding: str) -> None:
    events = STREAM.replace(b'"hi"', b'"h\\u00e9llo"')
    content = gzip.compress(events) if encoding == "gzip" else events

    def handler(request: httpx.Request) -> httpx.Response:
        headers = [*SSE_HEADERS, ("Content-Encoding", encoding)]
        return httpx.Response(200, headers=headers, content=iter([content[:7], content[7:]]))

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        (result,) = turns(client, "http://x.example" + PATH, ["a"])
    assert result.ok and result.content == "héllo" and result.done


class Tracked(httpx.SyncByteStream):
    """A response body that records whether it was closed; it may fail after its pieces."""

    def __init__(self, pieces: list[bytes], then: Exception | None = None) -> None:
        self.pieces = pieces
        self.then = then
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        yield from self.pieces
        if self.then is not None:
            raise self.then

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize(
    ("status", "content_type", "pieces", "then", "kind"),
    [
        (200, "text/event-stream", [STREAM], None, None),
        (500, "application/json", [b'{"error": "down"}'], None, "http_500"),
        (200, "text/html", [b"<html>"], None, "content_type"),
        (200, "text/event-stream", [b"data: {not json\n\n", STREAM], None, "bad_json"),
        (200, "text/event-stream", [STREAM[:40]], httpx.ReadError("reset"), "disconnect"),
    ],
)
def test_every_turn_closes_its_response(
    status: int, content_type: str, pieces: list[bytes], then: Exception | None, kind: str | None
) -> None:
    streams: list[Tracked] = []

    def handler(request: httpx.Request) -> httpx.Response:
        streams.append(Tracked(pieces, then))
        return httpx.Response(status, headers={"content-type": content_type}, stream=streams[-1])

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        (result,) = turns(client, "http://x.example" + PATH, ["a"])
    assert result.kind == kind, result.detail
    assert streams[0].closed


@pytest.mark.alone  # the background runs' greenlets make garbage of httpx too (a web UI's polls)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_turn_leaves_nothing_for_the_cycle_collector(transport: str, serve: Callable[..., Server]) -> None:
    server = serve()
    with make_client(transport=transport) as client:
        turns(client, server.url + PATH, ["warm"])
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            results = turns(client, server.url + PATH, ["a", "b", "c"])
            gc.collect()
            # The session's background runs go on in greenlets while the turns wait: only what the
            # turns made counts.
            assert [obj for obj in gc.garbage if _made_by_a_turn(obj)] == []
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    assert all(r.ok for r in results)


_TURN_PACKAGES = {"loadtest", "httpx", "httpcore", "h11", "geventhttpclient"}


def _made_by_a_turn(obj: object) -> bool:
    if isinstance(obj, types.FrameType):
        return any(f"/{package}/" in obj.f_code.co_filename for package in _TURN_PACKAGES)
    return str(getattr(type(obj), "__module__", "")).split(".")[0] in _TURN_PACKAGES


def test_one_sender_per_client_and_it_does_not_keep_the_client() -> None:
    client = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    assert sender_for(client) is sender_for(client)
    other = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    assert sender_for(other) is not sender_for(client)
    from loadtest import client as module

    gc.collect()  # a client of an earlier test, in a cycle, would go with this one's
    before = len(module._SENDERS)
    del client
    gc.collect()
    assert len(module._SENDERS) == before - 1
