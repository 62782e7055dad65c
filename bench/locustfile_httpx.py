"""Baseline for bench/capacity.py: plain httpx under gevent, one-turn chat streams.

    BENCH_OUT=out.json NLX_API_KEY=... locust -f bench/locustfile_httpx.py --headless --host MOCK_URL

One httpx.Client per user (as loadtest has), one `client.stream(...)` per turn, `iter_raw()` split
on blank lines by hand (no iter_lines, no SSE library). TTFT and turn latency are timed here with
perf_counter_ns, recorded in microsecond HDR histograms and written to BENCH_OUT as JSON at the end
(the first BENCH_WARMUP_S seconds left out).
"""

import locust  # noqa: F401, I001  (first: gevent patches sockets before httpx is imported)

import ssl
import time

import httpx
from baseline import HEADERS, PATH, body, content_of, record, register
from locust import User, constant, events, task

SSL_CONTEXT = ssl.create_default_context()


class ChatUser(User):
    wait_time = constant(0)

    def on_start(self) -> None:
        # One SSL context for all users, as loadtest has: httpx builds one per client otherwise.
        self.client = httpx.Client(base_url=self.host, timeout=60, verify=SSL_CONTEXT)

    def on_stop(self) -> None:
        self.client.close()

    @task
    def turn(self) -> None:
        t_start = time.perf_counter_ns()
        t_first = t_done = None
        error: Exception | None = None
        try:
            with self.client.stream("POST", PATH, content=body(), headers=HEADERS) as response:
                tail = b""
                for raw in response.iter_raw():
                    t_read = time.perf_counter_ns()
                    *complete, tail = (tail + raw).split(b"\n\n")
                    for event in complete:
                        data = event[6:] if event.startswith(b"data: ") else b""
                        if data == b"[DONE]":
                            t_done = t_read
                        elif data and content_of(data) and t_first is None:
                            t_first = t_read
        except httpx.HTTPError as exc:
            error = exc
        if error is None and (t_first is None or t_done is None):
            error = RuntimeError("incomplete stream")
        self.environment.events.request.fire(
            request_type="CHAT",
            name="turn",
            response_time=(time.perf_counter_ns() - t_start) / 1e6,
            response_length=0,
            exception=error,
            context={},
        )
        record(t_start, None if error is not None else t_first, t_done)


register(events, "bench-httpx.json")
