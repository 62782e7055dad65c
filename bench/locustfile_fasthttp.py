"""Baseline for bench/capacity.py: Locust's FastHttpUser (geventhttpclient), one-turn chat streams.

    BENCH_OUT=out.json NLX_API_KEY=... locust -f bench/locustfile_fasthttp.py --headless --host MOCK_URL

The body is read one SSE event at a time straight from geventhttpclient's response
(`readline(b"\\n\\n")`, which returns as soon as an event's bytes have arrived; `read(n)` would wait
for n bytes). TTFT and turn latency are timed here with perf_counter_ns, recorded in microsecond
HDR histograms and written to BENCH_OUT as JSON at the end of the run (the first BENCH_WARMUP_S
seconds left out).
"""

import os
import time
import urllib.request
import uuid

import gevent
import orjson
from hdrh.histogram import HdrHistogram
from locust import FastHttpUser, constant, events, task

PATH = os.environ.get("BENCH_PATH", "/demo/web-en-US/chat/completions")
HEADERS = {
    "Authorization": f"Bearer {os.environ.get('NLX_API_KEY', '')}",
    "Content-Type": "application/json",
    "Accept": "text/event-stream",
}
TTFT = HdrHistogram(1, 3_600_000_000, 3)
TURN = HdrHistogram(1, 3_600_000_000, 3)
COUNTS = {"turns_ok": 0, "turns_failed": 0}


class ChatUser(FastHttpUser):
    wait_time = constant(0)

    @task
    def turn(self) -> None:
        body = {
            "model": f"nlx:{uuid.uuid4()}",
            "messages": [{"role": "user", "content": "Hi"}],
            "stream": True,
        }
        t_start = time.perf_counter_ns()
        t_first = t_done = None
        response = self.client.post(PATH, data=orjson.dumps(body), headers=HEADERS, stream=True, name="turn")
        raw = response._response  # noqa: SLF001  (the public read(n) blocks until n bytes)
        try:
            while response.status_code == 200 and raw is not None and (event := raw.readline(b"\n\n")):
                t_read = time.perf_counter_ns()
                data = event[6:].strip() if event.startswith(b"data: ") else b""
                if data == b"[DONE]":
                    t_done = t_read
                elif data and content_of(data) and t_first is None:
                    t_first = t_read
        except Exception:  # a broken stream is a failed turn, whatever broke it
            t_done = None
        if t_first is None or t_done is None:
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
    with open(os.environ.get("BENCH_OUT", "bench-fasthttp.json"), "wb") as f:
        f.write(orjson.dumps(out))
