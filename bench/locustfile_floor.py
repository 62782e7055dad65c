"""Floor for bench/capacity.py: the least a gevent load generator can do per streamed turn.

    BENCH_OUT=out.json NLX_API_KEY=... locust -f bench/locustfile_floor.py --headless --host MOCK_URL

One kept-alive socket per user and one read per arrival, waited for in gevent's loop: no HTTP
parser, no SSE decoder, no JSON, no Locust request events. The first content chunk and [DONE] are
told by their bytes, the end of the response by the last chunk's terminator, so it only works
against the mock's HTTP/1.1 chunked replies. A tool that parses what it reads cannot use less CPU
per turn on this machine: the gap between it and the others is what their parsing and bookkeeping
cost.
"""

import socket
import time
from urllib.parse import urlsplit

import gevent
from baseline import HEADERS, PATH, body, record, register
from locust import User, constant, events, task

END = b"0\r\n\r\n"
CONTENT = b'"content":"'
EMPTY = b'"content":""'
DONE = b"data: [DONE]"


class ChatUser(User):
    wait_time = constant(0)

    def on_start(self) -> None:
        url = urlsplit(self.host)
        self.address = (url.hostname or "127.0.0.1", url.port or 80)
        self.head = (
            f"POST {PATH} HTTP/1.1\r\nHost: {url.netloc}\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in HEADERS.items())
        ).encode()
        self.sock: gevent.socket.socket | None = None

    def on_stop(self) -> None:
        if self.sock is not None:
            self.sock.close()

    @task
    def turn(self) -> None:
        if self.sock is None:
            self.sock = gevent.socket.create_connection(self.address)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        payload = body()
        t_start = time.perf_counter_ns()
        t_first = t_done = None
        self.sock.sendall(self.head + b"Content-Length: %d\r\n\r\n" % len(payload) + payload)
        while data := self.sock.recv(65536):
            t_read = time.perf_counter_ns()
            if t_first is None and CONTENT in data and data.count(CONTENT) > data.count(EMPTY):
                t_first = t_read
            if t_done is None and DONE in data:
                t_done = t_read
            if data.endswith(END):
                break
        else:
            self.sock.close()
            self.sock = None
        record(t_start, t_first, t_done)


register(events, "bench-floor.json")
