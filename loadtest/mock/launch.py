"""Start the mock server in a child process and learn its URL from its first line of output.

The child's stderr comes through a pipe: when it cannot start, its one error line (`ERROR_PREFIX`)
becomes the ConfigError raised here, so the program that started it says it once, in its own words;
once it runs, a thread passes whatever it writes there on to this process's stderr.

The mock listens on loopback unless told otherwise (`MockAddress`): a Locust master bound beyond
loopback asks for more, since its workers may be on other machines (`for_workers`).
"""

from __future__ import annotations

import ctypes
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO
from urllib.parse import urlsplit

from loadtest.errors import ConfigError, LoadtestError
from loadtest.mock.contract import ERROR_PREFIX, READY_PREFIX

LOOPBACK = "127.0.0.1"
ALL_INTERFACES = "0.0.0.0"
# Locust's --master-bind-host values that mean every interface (`*` is its default).
_EVERY_INTERFACE = ("*", "", "0.0.0.0", "::")
# Connecting a UDP socket to this address (TEST-NET-2, RFC 5737) picks the route to it, and so the
# source address of the default route; nothing is sent.
_ROUTE_PROBE = ("198.51.100.1", 9)


@dataclass(frozen=True)
class MockAddress:
    """Where the mock listens, and the host its URL names for clients (None: its own choice)."""

    listen: str = LOOPBACK
    advertise: str | None = None


def for_workers(master_bind_host: str) -> MockAddress:
    """Where a Locust master's mock serves its workers, which may run on other machines: it listens
    where the master does (`--master-bind-host`), and its URL names that address; bound to every
    interface, this machine's address on its default route, where other machines most likely reach
    it (`--master-bind-host ADDRESS` picks another)."""
    if master_bind_host in _EVERY_INTERFACE:
        return MockAddress(ALL_INTERFACES, outward_address())
    return MockAddress(master_bind_host, master_bind_host)


def outward_address() -> str:
    """This machine's IPv4 address on its default route; without one, its host name's address."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(_ROUTE_PROBE)
            address: str = probe.getsockname()[0]
            return address
        except OSError:
            pass
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return LOOPBACK


def is_loopback(host: str) -> bool:
    return host == "localhost" or host.startswith("127.") or host in ("::1", "[::1]")


@dataclass
class MockProcess:
    url: str
    process: subprocess.Popen[str]
    stderr_relay: threading.Thread | None = None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.stderr_relay is not None:
            # The pipe ends with the process: whatever it wrote last is out before stop returns.
            self.stderr_relay.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def start_mock(
    args: Sequence[str] | str = (),
    *,
    env: Mapping[str, str] | None = None,
    address: MockAddress | None = None,
) -> MockProcess:
    """Run `python -m loadtest.mock --host ADDRESS --port 0 ARGS` and wait until it says where it
    listens; its URL names `address.advertise` when given, unless ARGS pick the host themselves.

    ConfigError with the mock's own message when it refuses its options or address; LoadtestError
    when it fails otherwise (what it printed goes to stderr first).
    """
    address = address or MockAddress()
    argv = shlex.split(args) if isinstance(args, str) else list(args)
    own_host = any(arg == "--host" or arg.startswith("--host=") for arg in argv)
    process = subprocess.Popen(
        [sys.executable, "-m", "loadtest.mock", "--host", address.listen, "--port", "0", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=dict(os.environ if env is None else env),
        preexec_fn=_die_with_parent,
    )
    assert process.stdout is not None and process.stderr is not None
    line = process.stdout.readline()
    if not line.startswith(READY_PREFIX):
        raise _start_failure(process, line)
    relay = threading.Thread(target=_relay, args=(process.stderr,), name="loadtest-mock-stderr", daemon=True)
    relay.start()
    url = line[len(READY_PREFIX) :].strip()
    if address.advertise is not None and not own_host:
        url = with_host(url, address.advertise)
    return MockProcess(url=url, process=process, stderr_relay=relay)


def with_host(url: str, host: str) -> str:
    """`url` with its host replaced (an IPv6 address in brackets), port and path kept."""
    parts = urlsplit(url)
    name = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return parts._replace(netloc=f"{name}:{parts.port}" if parts.port else name).geturl()


def _relay(stream: IO[str]) -> None:
    with stream:
        for line in stream:
            sys.stderr.write(line)
            sys.stderr.flush()


def _start_failure(process: subprocess.Popen[str], line: str) -> LoadtestError:
    """The error for a mock that did not print its ready line; the process is gone afterwards."""
    if line:  # it printed something else and may still be running: it is of no use
        process.kill()
    assert process.stdout is not None and process.stderr is not None
    with process.stdout, process.stderr:
        err = process.stderr.read()
    process.wait()
    *before, last = err.rstrip("\n").split("\n")
    if last.startswith(ERROR_PREFIX):
        sys.stderr.write("".join(f"{text}\n" for text in before))
        return ConfigError(f"the built-in mock: {last.removeprefix(ERROR_PREFIX)}")
    sys.stderr.write(err)
    said = f": {line.strip()}" if line.strip() else ""
    return LoadtestError(f"the mock server did not start (exit code {process.returncode}){said}")


def _die_with_parent() -> None:
    """In the mock's process before it starts: on Linux, end it with SIGTERM when the process that
    started it dies, however it dies (SIGKILL included), so the mock never outlives its run."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the run's own stop ends the mock
