"""What the baseline locustfiles of bench/capacity.py share: the request, the HDR histograms they
time into, the warm-up reset and the JSON they leave for the bench (BENCH_OUT)."""

import os
import time
import urllib.request
import uuid
from typing import Any

import gevent
import orjson
from hdrh.histogram import HdrHistogram

PATH = os.environ.get("BENCH_PATH", "/demo/web-en-US/chat/completions")
HEADERS = {
    "Authorization": f"Bearer {os.environ.get('NLX_API_KEY', '')}",
    "Content-Type": "application/json",
    "Accept": "text/event-stream",
}
TTFT = HdrHistogram(1, 3_600_000_000, 3)
TURN = HdrHistogram(1, 3_600_000_000, 3)
COUNTS = {"turns_ok": 0, "turns_failed": 0}
STOPPING = False


def body() -> bytes:
    return orjson.dumps(
        {"model": f"nlx:{uuid.uuid4()}", "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    )


def content_of(data: bytes) -> str | None:
    content: str | None = orjson.loads(data)["choices"][0]["delta"].get("content")
    return content


def record(t_start: int, t_first: int | None, t_done: int | None) -> None:
    """One turn: timed when it got both a first content chunk and [DONE], else failed."""
    if STOPPING:
        return  # it ended behind Locust's burst of stopping users (see register)
    if t_first is None or t_done is None:
        COUNTS["turns_failed"] += 1
        return
    COUNTS["turns_ok"] += 1
    TTFT.record_value((t_first - t_start) // 1000)
    TURN.record_value((t_done - t_start) // 1000)


def register(events: Any, default_out: str) -> None:
    @events.test_start.add_listener
    def forget_warmup(environment: Any, **_: object) -> None:
        # After BENCH_WARMUP_S, this process and the mock forget what they measured, at the same moment.
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

    @events.test_stopping.add_listener
    def stop_recording(**_: object) -> None:
        # Locust stops its users in one burst of greenlets, thousands at a time: a turn that ends
        # behind that burst would count the stop's own delay (loadtest calibrate does the same).
        global STOPPING
        STOPPING = True

    @events.test_stop.add_listener
    def write_samples(**_: object) -> None:
        out = {"ttft": TTFT.encode().decode(), "turn": TURN.encode().decode(), **COUNTS}
        with open(os.environ.get("BENCH_OUT", default_out), "wb") as f:
            f.write(orjson.dumps(out))
