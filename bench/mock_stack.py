"""Which server stack for the NLX mock: aiohttp, or uvicorn with Starlette? Measure both.

    python bench/mock_stack.py [--duration 5] [--steps 50,200,500]

Starts two equivalent SSE servers in child processes pinned to CPU 0 (the real aiohttp mock, and a
uvicorn + Starlette StreamingResponse server with the same schedule: TTFT 50 ms, 20 content chunks
10 ms apart, absolute deadlines), then drives each from this process, pinned to CPU 1, with an
aiohttp client holding N concurrent streams for a few seconds per step. Per step it prints
streams/s, client-side chunk lateness versus the schedule (same measure for both servers),
server-side schedule error (both servers record it), server CPU seconds and client CPU use.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from hdrh.histogram import HdrHistogram

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-key"
TTFT_S = 0.050
ITL_S = 0.010
CHUNKS = 20
PATH = "/bench/chan-en-US/chat/completions"
READY = "listening on "
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- the Starlette server (runs in a child process: `mock_stack.py --serve-starlette`) ---------


def serve_starlette() -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    schedule_error = HdrHistogram(1, 3_600_000_000, 3)

    async def sleep_until(loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        delay = deadline - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)

    async def chat(request: Request) -> Response:
        loop = asyncio.get_running_loop()
        start = loop.time()
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return JSONResponse({"error": {"message": "Unauthorized - Invalid Bearer Token"}}, 401)
        body = orjson.loads(await request.body())
        if not isinstance(body, dict) or not str(body.get("model", "")).startswith("nlx"):
            return JSONResponse({"error": {"message": "bad model"}}, 400)
        base = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": "bench",
            "system_fingerprint": "bench",
        }

        def event(delta: dict[str, str], finish: str | None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return b"data: " + orjson.dumps({**base, "choices": [choice]}) + b"\n\n"

        async def events() -> AsyncIterator[bytes]:
            yield event({"role": "assistant", "content": ""}, None)
            for i in range(CHUNKS):
                deadline = start + TTFT_S + i * ITL_S
                await sleep_until(loop, deadline)
                yield event({"content": f"piece {i} café 日本語 "}, None)
                # The write happens when the generator resumes; measure there, as late as aiohttp's.
                schedule_error.record_value(max(0, round((loop.time() - deadline) * 1e6)))
            yield event({}, "stop")
            yield b"data: [DONE]\n\n"

        headers = {"Cache-Control": "no-cache", "X-Conversation-Id": "bench"}
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    async def stats(request: Request) -> Response:
        h = schedule_error
        summary = {
            "count": h.get_total_count(),
            "p50": h.get_value_at_percentile(50) / 1000,
            "p99": h.get_value_at_percentile(99) / 1000,
        }
        return JSONResponse({"schedule_error_ms": summary})

    async def reset(request: Request) -> Response:
        schedule_error.reset()
        return JSONResponse({"reset": True})

    app = Starlette(
        routes=[
            Route(PATH, chat, methods=["POST"]),
            Route("/_mock/stats", stats),
            Route("/_mock/reset", reset, methods=["POST"]),
        ]
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    print(f"uvicorn {READY}http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    server.run(sockets=[sock])


# --- child processes ---------------------------------------------------------------------------


def _pin(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


@dataclass
class Child:
    name: str
    url: str
    process: subprocess.Popen[str]

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_child(name: str, argv: list[str], cpu: int | None) -> Child:
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        preexec_fn=lambda: _pin(cpu),
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 20)
    line = process.stdout.readline() if ready else ""
    if READY not in line:
        process.kill()
        raise SystemExit(f"{name} did not start: {line!r}")
    return Child(name, line.split(READY, 1)[1].strip(), process)


# --- the client --------------------------------------------------------------------------------


@dataclass
class Step:
    streams: int = 0
    failures: int = 0
    chunks: int = 0


async def one_stream(
    session: aiohttp.ClientSession, url: str, body: bytes, lateness: HdrHistogram, step: Step
) -> bool:
    loop = asyncio.get_running_loop()
    sent = loop.time()
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    events = 0
    tail = b""
    async with session.post(url + PATH, data=body, headers=headers) as response:
        if response.status != 200:
            await response.read()
            return False
        async for data in response.content.iter_any():
            now = loop.time()
            found = (tail + data).count(b"\n\n")
            tail = data[-1:]
            for index in range(events, events + found):
                if 1 <= index <= CHUNKS:  # event 0 is the role chunk, 1..20 carry content
                    deadline = sent + TTFT_S + (index - 1) * ITL_S
                    lateness.record_value(max(0, round((now - deadline) * 1e6)))
                    step.chunks += 1
            events += found
    return events == CHUNKS + 3


async def drive(url: str, concurrency: int, duration: float) -> tuple[Step, HdrHistogram, float]:
    """Hold `concurrency` streams open for `duration` seconds; count streams finished in that window."""
    lateness = HdrHistogram(1, 3_600_000_000, 3)
    step = Step()
    body = orjson.dumps({"model": "nlx", "messages": [{"role": "user", "content": "hello"}], "stream": True})
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await session.post(url + "/_mock/reset")
        loop = asyncio.get_running_loop()
        began = loop.time()
        end = began + duration
        cpu_before = time.process_time()

        async def worker(i: int) -> None:
            # Spread the first requests over one stream length so schedules do not move in lockstep.
            await asyncio.sleep(i / concurrency * (TTFT_S + CHUNKS * ITL_S))
            while loop.time() < end:
                try:
                    ok = await one_stream(session, url, body, lateness, step)
                except (TimeoutError, aiohttp.ClientError):
                    ok = False
                if loop.time() <= end:
                    if ok:
                        step.streams += 1
                    else:
                        step.failures += 1

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        client_cpu = (time.process_time() - cpu_before) / (loop.time() - began)
    return step, lateness, client_cpu


async def server_schedule_error(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(url + "/_mock/stats") as response:
        stats: dict[str, Any] = orjson.loads(await response.read())
    return dict(stats["schedule_error_ms"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--steps", default="50,200,500")
    parser.add_argument("--serve-starlette", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_starlette:
        serve_starlette()
        return 0

    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    steps = [int(s) for s in args.steps.split(",")]
    children = [
        start_child(
            "aiohttp",
            [sys.executable, "-m", "loadtest.mock", "--api-key", KEY, "--ttft", f"const:{TTFT_S * 1000:g}ms"]
            + ["--itl", f"const:{ITL_S * 1000:g}ms", "--chunks", f"const:{CHUNKS}"],
            server_cpu,
        ),
        start_child("starlette", [sys.executable, __file__, "--serve-starlette"], server_cpu),
    ]
    _pin(client_cpu)
    print(
        f"server CPU {server_cpu}, client CPU {client_cpu}; {args.duration:g} s per step; "
        f"schedule: TTFT {TTFT_S * 1000:g} ms, {CHUNKS} chunks {ITL_S * 1000:g} ms apart"
    )
    header = (
        f"{'server':<10}{'conc':>5}{'streams':>8}{'stream/s':>9}{'fail':>5}{'late p50':>9}{'late p99':>9}"
        f"{'srv p50':>8}{'srv p99':>8}{'srv CPU s':>10}{'srv CPU':>8}{'cli CPU':>8}"
    )
    print(header)
    print("-" * len(header))
    results: dict[tuple[str, int], tuple[float, float, float]] = {}
    try:
        for concurrency in steps:
            for child in children:
                cpu_before = child.cpu_seconds()
                step, lateness, cli_cpu = asyncio.run(drive(child.url, concurrency, args.duration))
                cpu = child.cpu_seconds() - cpu_before
                server = asyncio.run(server_schedule_error(child.url))
                rate = step.streams / args.duration
                p50 = lateness.get_value_at_percentile(50) / 1000
                p99 = lateness.get_value_at_percentile(99) / 1000
                results[(child.name, concurrency)] = (rate, p99, cpu)
                print(
                    f"{child.name:<10}{concurrency:>5}{step.streams:>8}{rate:>9.1f}{step.failures:>5}"
                    f"{p50:>9.1f}{p99:>9.1f}{server['p50']:>8.1f}{server['p99']:>8.1f}"
                    f"{cpu:>10.2f}{cpu / args.duration:>8.0%}{cli_cpu:>8.0%}",
                    flush=True,
                )
    finally:
        for child in children:
            child.stop()
    print("late: client-side chunk arrival minus schedule; srv: server-side write minus deadline (ms);")
    print("CPU: share of one core over the step")
    top = max(steps)
    a_rate, a_p99, a_cpu = results[("aiohttp", top)]
    s_rate, s_p99, s_cpu = results[("starlette", top)]
    a_ms = 1000 * a_cpu / max(1.0, a_rate * args.duration)
    s_ms = 1000 * s_cpu / max(1.0, s_rate * args.duration)
    winner = "aiohttp" if (a_p99, -a_rate) <= (s_p99, -s_rate) else "uvicorn+starlette"
    print(
        f"conclusion: at {top} streams aiohttp served {a_rate:.0f} streams/s (p99 lateness {a_p99:.1f} ms, "
        f"{a_ms:.2f} CPU ms/stream), uvicorn+starlette {s_rate:.0f} streams/s (p99 {s_p99:.1f} ms, "
        f"{s_ms:.2f} CPU ms/stream): {winner} keeps the schedule better"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
