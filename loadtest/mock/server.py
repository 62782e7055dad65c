"""The NLX OpenAI Connect mock: an aiohttp server streaming chat.completion.chunk events on a schedule.

    POST {prefix}/{deploymentKey}/{channelKey}/chat/completions   the contract's endpoint
    POST {prefix}/chat/completions                                generic OpenAI route (any model, stateless);
                                                                  /v1/chat/completions without a prefix
    GET  [{prefix}]/_mock/stats                                   counters and server-side histograms
    POST [{prefix}]/_mock/reset                                   forget everything
    GET  [{prefix}]/_mock/conversations                           the conversation ids seen, in order
    GET  [{prefix}]/_mock/conversations/{id}                      what one conversation sent and got

So an OpenAI client's base URL is the mock's URL when it has a prefix (`--prefix /v1`: the client is
given `http://host/v1` and posts `/v1/chat/completions`), and the URL + `/v1` when it has none. With
`--tls` it serves HTTPS, with a certificate it makes at start (`tls.py`), and its URL is `https://...`.

With `--fault KIND=RATE` a chat request may get one fault instead of its normal answer (see
`faults.py`), counted in the stats under `faults`. The parts: `command` and `config` (the command
line), `routes` (handlers), `validation` (request bodies), `answers` (JSON answers), `stream` and
`ticker` (the stream of a turn), `fastpath` (streams without faults, straight from the socket),
`usage` (the usage chunk), `connection` (faults below HTTP), `state` (what the stats report), `tls`
(the certificate).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import math
import platform
import selectors
import signal
import ssl
import sys
import threading
from collections.abc import Callable

from aiohttp import web

from loadtest.mock.config import MockConfig
from loadtest.mock.contract import READY_PREFIX
from loadtest.mock.fastpath import FastServer, FastSite, serves
from loadtest.mock.routes import ChatRoutes, StateRoutes
from loadtest.mock.state import MockState

# Open streams get this long to finish after SIGTERM before they are cut.
_SHUTDOWN_GRACE_S = 1.0
_MAX_BODY = 64 * 1024 * 1024

STATE_KEY = web.AppKey("state", MockState)
CHAT_KEY = web.AppKey("chat", ChatRoutes)


def create_app(config: MockConfig, state: MockState | None = None) -> web.Application:
    """The aiohttp application; `app[STATE_KEY]` is its MockState."""
    state = state if state is not None else MockState()
    state.fault_kinds = tuple(config.faults.rates)
    state.max_conversations = config.max_conversations
    chat = ChatRoutes(config, state)
    mock = StateRoutes(state)
    app = web.Application(client_max_size=_MAX_BODY)
    app[STATE_KEY] = state
    app[CHAT_KEY] = chat
    app.router.add_post(config.openai_path, chat.openai)
    app.router.add_post(config.nlx_path, chat.nlx)
    for root in dict.fromkeys([config.prefix, ""]):
        app.router.add_get(f"{root}/_mock/stats", mock.stats)
        app.router.add_post(f"{root}/_mock/reset", mock.reset)
        app.router.add_get(f"{root}/_mock/conversations", mock.conversation_ids)
        app.router.add_get(f"{root}/_mock/conversations/{{conversation_id:.+}}", mock.conversation)
    return app


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


async def serve(
    config: MockConfig,
    *,
    stop: asyncio.Event | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Listen, announce the URL, and run until `stop` is set or (in the main thread) SIGTERM/SIGINT.

    The URL goes to `ready`, or by default to stdout as the single line `READY_PREFIX + url`.
    """
    stop = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT) if threading.current_thread() is threading.main_thread() else ()
    # Installed before the ready line, so a parent may signal as soon as it has read it.
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_GRACE_S)
    fast: FastServer | None = None
    try:
        await runner.setup()
        assert runner.server is not None
        if serves(config):
            fast = FastServer(config, app[CHAT_KEY], runner.server)
            site: web.TCPSite = FastSite(
                runner, fast, config.host, config.port, ssl_context=_tls_context(config)
            )
        else:
            site = web.TCPSite(runner, config.host, config.port, ssl_context=_tls_context(config))
        await site.start()
        scheme = "https" if config.tls else "http"
        url = f"{scheme}://{_url_host(config.host)}:{runner.addresses[0][1]}{config.prefix}"
        if ready is None:
            print(READY_PREFIX + url, flush=True)
        else:
            ready(url)
        await stop.wait()
    finally:
        if fast is None:
            await runner.cleanup()
        else:
            await asyncio.gather(runner.cleanup(), fast.shutdown(_SHUTDOWN_GRACE_S))
        for signum in signals:
            loop.remove_signal_handler(signum)


def _tls_context(config: MockConfig) -> ssl.SSLContext | None:
    if not config.tls:
        return None
    # Loaded only for --tls: `cryptography` takes a tenth of a second to import.
    from loadtest.mock.tls import server_context

    return server_context(config.host)


class _PreciseSelector(selectors.DefaultSelector):
    """Waits in epoll for the whole milliseconds before the next deadline, then polls.

    epoll waits in whole milliseconds and the selectors round a timeout up, so a chunk due in 2.3 ms
    went out at 3 ms or later; waiting 2 ms and polling through the rest sends it on time.
    """

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout > 0:
            whole_ms = math.floor(timeout * 1e3)
            # Half a millisecond under, so the selector's own rounding up lands on the whole one.
            timeout = (whole_ms - 0.5) * 1e-3 if whole_ms else 0
        return super().select(timeout)


def _precise_loop() -> asyncio.AbstractEventLoop:
    return asyncio.SelectorEventLoop(_PreciseSelector())


# glibc's mallopt parameter, and the size from which malloc maps memory of its own (glibc's default).
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 128 * 1024


def _fix_mmap_threshold() -> None:
    """Keep glibc's malloc giving blocks of 128 KiB and more their own mapping, returned when freed.

    glibc raises that threshold to the size of each mapped block freed (up to 32 MB), so after a
    few large request bodies the same sizes come from the heap instead, where what stays allocated
    around them keeps the freed space from going back to the system: a mock serving for hours would
    grow while what it remembers stays bounded. Setting the threshold stops glibc moving it.
    Elsewhere (musl, macOS) there is no such threshold to fix.
    """
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)


def run(config: MockConfig) -> None:
    """Serve until SIGTERM/SIGINT, without the garbage collector; OSError if it cannot listen.

    The collector paused the mock for milliseconds, with 10,000 connections open for hundreds: each
    collection looks through the live objects of every stream and connection. The mock makes no
    reference cycles when it serves a request (a test keeps it so), so reference counting frees
    what it makes; the modules' objects are frozen, and the collector stays off. What is left over
    is asyncio's own: a closed connection's transport and socket hold each other, about a kilobyte
    that stays until the mock exits.

    (Not uvloop, though its C loop costs less CPU: its clock and timers have millisecond resolution,
    so chunks would go out up to a millisecond early and the schedule error could not be measured.)
    """
    _fix_mmap_threshold()
    gc.collect()
    gc.freeze()
    gc.disable()
    with asyncio.Runner(loop_factory=_precise_loop if config.precise_timers else None) as runner:
        runner.run(serve(config))
