"""`loadtest mock` and `python -m loadtest.mock`: parse the options, then serve.

The server (aiohttp) is imported only once the options are good, so a mistake or `--help` is answered
in a fraction of the second the server takes to load. A mistake, or an address it cannot listen on, is
one line on stderr starting with `ERROR_PREFIX`, and exit code 2: `launch.start_mock` passes that line on.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from collections.abc import Sequence

from loadtest.mock.config import MockConfig, parse_config
from loadtest.mock.contract import ERROR_PREFIX

EXIT_BAD_INPUT = 2

# What to do when the address cannot be bound, by errno.
_LISTEN_FIXES = {
    errno.EADDRINUSE: "another process listens there: stop it, or choose another --port (0 lets the "
    "system pick a free one)",
    errno.EACCES: "ports below 1024 need privileges: choose --port 1024 or above (0 lets the system "
    "pick a free one)",
    errno.EADDRNOTAVAIL: "that address is not on this machine: use --host 127.0.0.1, or 0.0.0.0 for every "
    "interface",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the mock until SIGTERM/SIGINT; 0 on a clean stop, 2 on bad options or if it cannot listen."""
    try:
        config = parse_config(sys.argv[1:] if argv is None else argv, os.environ)
    except ValueError as exc:
        return _fail(str(exc))
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    from loadtest.mock.server import run

    try:
        run(config)
    except OSError as exc:
        return _fail(listen_error(exc, config))
    return 0


def listen_error(exc: OSError, config: MockConfig) -> str:
    """Why the mock cannot listen on its address, and the fix, in one line."""
    where = f"{config.host}:{config.port}"
    if isinstance(exc, socket.gaierror):
        return (
            f"cannot listen on {where}: --host {config.host!r} is not a known address; "
            "use an IP address such as 127.0.0.1"
        )
    # aiohttp's message repeats the address in a long sentence: the system's short one reads better.
    reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
    fix = _LISTEN_FIXES.get(exc.errno or 0)
    return f"cannot listen on {where}: {reason}" + (f"; {fix}" if fix else "")


def _fail(message: str) -> int:
    print(ERROR_PREFIX + message, file=sys.stderr)
    return EXIT_BAD_INPUT
