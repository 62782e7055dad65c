"""What the mock and the programs that start it agree on: the key, where it comes from, the ready line
and the error line.

Plain constants, importing nothing: `loadtest.settings` and `loadtest.mock.launch` read them without
loading aiohttp, httpx or gevent.
"""

from __future__ import annotations

from typing import Final

# The environment variable that holds the NLX API key, for the load test and the mock alike.
API_KEY_ENV: Final = "NLX_API_KEY"
# The mock's key when neither --api-key nor NLX_API_KEY gives one: it guards nothing, it only
# exercises the Authorization header.
DEFAULT_API_KEY: Final = "nlx-mock-key"
# The mock's first line on stdout is this prefix and its URL; a parent process reads it to connect.
READY_PREFIX: Final = "loadtest-mock listening on "
# When it cannot start (bad options, an address it cannot listen on), it prints one line on stderr with
# this prefix and the fix instead, and exits with code 2.
ERROR_PREFIX: Final = "loadtest mock: error: "
