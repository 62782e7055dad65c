"""Baseline for bench/capacity.py: plain httpx under gevent, one-turn chat streams.

    BENCH_OUT=out.json NLX_API_KEY=... locust -f bench/locustfile_httpx.py --headless --host MOCK_URL

One httpx.Client per user (as loadtest has), one `client.stream(...)` per turn, `iter_raw()` split
on blank lines by hand (no iter_lines, no SSE library). TTFT and turn latency are timed here with
perf_counter_ns, recorded in microsecond HDR histograms and written to BENCH_OUT as JSON at the end
(the first BENCH_WARMUP_S seconds left out).
"""

import locust  # noqa: F401, I001  (first: gevent patches sockets before httpx is imported)

import os
import ssl
import time
import urllib.request
import uuid

import gevent
import httpx
import orjson
from hdrh.histogram import HdrHistogram
from locust import User, constant, events, task

PATH = os.environ.get("BENCH_PATH", "/demo/web-en-US/chat/completions")
HEADERS = {
    "Authorization": f"Bearer {os.environ.get('NLX_API_KEY', '')}",
    "Content-Type": "application/json",
    "Accept": "text/event-stream",
}
SSL_CONTEXT = ssl.create_default_context()
TTFT = HdrHistogram(1, 3_600_000_000, 3)
TURN = HdrHistogram(1, 3_600_000_000, 3)
COUNTS = {"turns_ok": 0, "turns_failed": 0}


class ChatUser(User):
    wait_time = constant(0)

    def on_start(self) -> None:
        # One SSL context for all users, as loadtest has: httpx builds one per client otherwise.
        self.client = httpx.Client(base_url=self.host, timeout=60, verify=SSL_CONTEXT)

    def on_stop(self) -> None:
        self.client.close()

    @task
    def turn(self) -> None:
        body = {
            "model": f"nlx:{uuid.uuid4()}",
            "messages": [{"role": "user", "content": "Hi"}],
            "stream": True,
        }
        t_start = time.perf_counter_ns()
        t_first = t_done = None
        error: Exception | None = None
        try:
            with self.client.stream("POST", PATH, content=orjson.dumps(body), headers=HEADERS) as response:
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
        if error is not None or t_first is None or t_done is None:
            COUNTS["turns_failed"] += 1
            return
        COUNTS["turns_ok"] += 1
        TTFT.record_value((t_first - t_start) // 1000)
        TURN.record_value((t_done - t_start) // 1000)


def content_of(data: bytes) -> str | None:
    content: str | None = orjson.loads(data)["choices"][0]["delta"].get("content")
    return content


@events.test_start.add_listener
def forget_warmup(environment, **_: object) -> None:
    # After BENCH_WARMUP_S, this file and the mock forget what they measured, at the same moment.
    def forget(deadline: float) -> None:
        # Against the clock: after a busy start gevent's loop time lags, and its timers fire early.
        while (delay := deadline - time.monotonic()) > 0:
            gevent.sleep(delay)
        TTFT.reset()
        TURN.reset()
        COUNTS.update(turns_ok=0, turns_failed=0)
        request = urllib.request.Request(environment.host + "/_mock/reset", method="POST")
        urllib.request.urlopen(request, timeout=30).close()

    gevent.spawn(forget, time.monotonic() + float(os.environ.get("BENCH_WARMUP_S", "0")))


@events.test_stop.add_listener
def write_samples(**_: object) -> None:
    out = {"ttft": TTFT.encode().decode(), "turn": TURN.encode().decode(), **COUNTS}
    with open(os.environ.get("BENCH_OUT", "bench-httpx.json"), "wb") as f:
        f.write(orjson.dumps(out))
