"""The mock server in a thread of the test process, for tests that drive it in-process.

The thread is an OS thread running an asyncio loop of its own, also when Locust (imported first by
tests/conftest.py, or by any test module of this pytest process) has patched the process for gevent:
a patched `threading.Thread` would be a greenlet, which the mock's loop would block, and a patched
`selectors.DefaultSelector` would run gevent's hub inside asyncio's. So the thread, its locks and its
selector are the originals (`gevent.monkey.get_original` gives the current ones when nothing is
patched). The test's side may block on those locks: the mock does not need the test's thread to run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from gevent import monkey

from loadtest.mock.config import MockConfig, parse_config
from loadtest.mock.server import serve

_start_new_thread: Callable[..., int] = monkey.get_original("_thread", "start_new_thread")
_allocate_lock: Callable[[], Any] = monkey.get_original("_thread", "allocate_lock")
_Selector: Callable[[], Any] = monkey.get_original("selectors", "DefaultSelector")

KEY = "thread-key-5e1c"
STARTUP_S = 15.0
# Where a failure inside the mock is logged: a handler's exception (aiohttp), a callback's (asyncio).
_LOGGERS = ("aiohttp", "asyncio")


class _ErrorLog(logging.Handler):
    """Keeps what is logged at WARNING and above, traceback included."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class ThreadedMock:
    """A mock serving from a thread of this process; `url` includes its prefix, `base` does not.

    `errors` are the warnings and errors logged while it ran (where a child process would print a traceback).
    """

    def __init__(self, config: MockConfig) -> None:
        self.config = config
        self.url = ""
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = _allocate_lock()
        self._ready.acquire()
        self._done = _allocate_lock()
        self._done.acquire()
        # Plain HTTP to 127.0.0.1: no certificates to load, which would cost more than the request.
        self.http = httpx.Client(verify=False, timeout=10)
        self._log = _ErrorLog()

    @property
    def base(self) -> str:
        return "/".join(self.url.split("/", 3)[:3])

    @property
    def errors(self) -> list[str]:
        return self._log.lines

    def start(self) -> None:
        for name in _LOGGERS:
            logging.getLogger(name).addHandler(self._log)
        _start_new_thread(self._run, ())
        if not self._ready.acquire(timeout=STARTUP_S):
            raise RuntimeError(f"the mock did not start within {STARTUP_S} s")
        if self._error is not None:
            raise RuntimeError("the mock did not start") from self._error

    def _run(self) -> None:
        loop = asyncio.SelectorEventLoop(_Selector())
        try:
            loop.run_until_complete(self._serve(loop))
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            self._error = exc
            if self._ready.locked():
                self._ready.release()
        finally:
            loop.close()
            self._done.release()

    async def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop, self._stop = loop, asyncio.Event()

        def ready(url: str) -> None:
            self.url = url
            self._ready.release()

        await serve(self.config, stop=self._stop, ready=ready)

    def stop(self) -> None:
        self.http.close()
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        stopped = self._done.acquire(timeout=STARTUP_S)
        for name in _LOGGERS:
            logging.getLogger(name).removeHandler(self._log)
        if not stopped:
            raise RuntimeError(f"the mock did not stop within {STARTUP_S} s")
        if self._error is not None:
            raise RuntimeError("the mock failed") from self._error

    def get(self, path: str) -> Any:
        """GET url + path (`/_mock/stats`), as JSON."""
        return self.http.get(self.url + path).json()

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = self.get("/_mock/stats")
        return data

    def conversation(self, conversation_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self.get(f"/_mock/conversations/{conversation_id}")
        return data

    def reset(self) -> None:
        assert self.http.post(self.url + "/_mock/reset").status_code == 200


@contextmanager
def mock_in_thread(*args: str, api_key: str = KEY) -> Iterator[ThreadedMock]:
    """A mock with these command-line options, on 127.0.0.1 and a free port, for the `with` block;
    stopped at its end, which fails if the mock logged a warning or an error."""
    config = parse_config(["--host", "127.0.0.1", "--port", "0", "--api-key", api_key, *args], {})
    mock = ThreadedMock(config)
    mock.start()
    try:
        yield mock
    finally:
        mock.stop()
    assert not mock.errors, "\n".join(mock.errors)
