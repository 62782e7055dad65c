"""TLS verification stays on unless --insecure: against a real TLS server with a self-signed certificate."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from loadtest.client import TurnResult, make_client, stream_turn
from loadtest.mock.tls import server_context
from loadtest.nlx import request_body
from loadtest.options import TRANSPORTS

STREAM = (
    b'data: {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": null}]}\n\n'
    b"data: [DONE]\n\n"
)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802  (the name http.server calls)
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(STREAM)))
        self.end_headers()
        self.wfile.write(STREAM)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def tls_server() -> Iterator[str]:
    # A certificate nobody vouches for: the one `loadtest mock --tls` makes for itself.
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = server_context("127.0.0.1")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}/d/web-en-US/chat/completions"
    server.shutdown()
    thread.join()
    server.server_close()


def turn(url: str, *, verify: bool, transport: str) -> TurnResult:
    with make_client(verify=verify, connect_timeout=5, transport=transport) as client:
        return stream_turn(client, url, request_body("c", [{"role": "user", "content": "x"}]), api_key="k")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_certificate_nobody_vouches_for_fails_the_turn(tls_server: str, transport: str) -> None:
    result = turn(tls_server, verify=True, transport=transport)
    assert not result.ok and result.kind == "connect" and "CERTIFICATE_VERIFY_FAILED" in result.detail


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_insecure_skips_the_check(tls_server: str, transport: str) -> None:
    result = turn(tls_server, verify=False, transport=transport)
    assert result.ok and result.content == "hi" and result.done
