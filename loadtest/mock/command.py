"""`loadtest mock` and `python -m loadtest.mock`: parse the options, then serve.

The server (aiohttp) is imported only once the options are good, so a mistake or `--help` is answered
in a fraction of the second the server takes to load.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from loadtest.mock.config import parse_config


def main(argv: Sequence[str] | None = None) -> int:
    """Run the mock until SIGTERM/SIGINT; 0 on a clean stop, 2 on bad options, 1 if it cannot listen."""
    try:
        config = parse_config(sys.argv[1:] if argv is None else argv, os.environ)
    except ValueError as exc:
        print(f"loadtest mock: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    from loadtest.mock.server import run

    try:
        run(config)
    except OSError as exc:
        print(f"loadtest mock: error: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1
    return 0
