"""Baseline for bench/capacity.py: Locust's FastHttpUser (geventhttpclient), one-turn chat streams.

    BENCH_OUT=out.json NLX_API_KEY=... locust -f bench/locustfile_fasthttp.py --headless --host MOCK_URL

The body is read one SSE event at a time straight from geventhttpclient's response
(`readline(b"\\n\\n")`, which returns as soon as an event's bytes have arrived; `read(n)` would wait
for n bytes). TTFT and turn latency are timed here with perf_counter_ns, recorded in microsecond
HDR histograms and written to BENCH_OUT as JSON at the end of the run (the first BENCH_WARMUP_S
seconds left out).
"""

import time

from baseline import HEADERS, PATH, body, content_of, record, register
from locust import FastHttpUser, constant, events, task


class ChatUser(FastHttpUser):
    wait_time = constant(0)

    @task
    def turn(self) -> None:
        t_start = time.perf_counter_ns()
        t_first = t_done = None
        response = self.client.post(PATH, data=body(), headers=HEADERS, stream=True, name="turn")
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
        record(t_start, t_first, t_done)


register(events, "bench-fasthttp.json")
