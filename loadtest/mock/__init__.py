"""The built-in NLX OpenAI Connect mock server (`python -m loadtest.mock`, `loadtest mock`).

Importing the package loads nothing heavy: `loadtest.mock.contract` (the key, its environment
variable, the ready line) is read by `loadtest.settings`, and the server (aiohttp) loads only when one
of its names below is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loadtest.lazy import lazy_exports
from loadtest.mock.contract import API_KEY_ENV, DEFAULT_API_KEY, READY_PREFIX

if TYPE_CHECKING:
    from loadtest.mock.command import main
    from loadtest.mock.config import MockConfig, parse_config
    from loadtest.mock.dist import Distribution, parse_count_dist, parse_duration_dist
    from loadtest.mock.server import create_app, serve
    from loadtest.mock.state import MockState

# Public name -> the module that defines it, imported on first use.
_LAZY = {
    "MockConfig": "loadtest.mock.config",
    "parse_config": "loadtest.mock.config",
    "Distribution": "loadtest.mock.dist",
    "parse_count_dist": "loadtest.mock.dist",
    "parse_duration_dist": "loadtest.mock.dist",
    "create_app": "loadtest.mock.server",
    "main": "loadtest.mock.command",
    "serve": "loadtest.mock.server",
    "MockState": "loadtest.mock.state",
}

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_API_KEY",
    "READY_PREFIX",
    "Distribution",
    "MockConfig",
    "MockState",
    "create_app",
    "main",
    "parse_config",
    "parse_count_dist",
    "parse_duration_dist",
    "serve",
]


__getattr__ = lazy_exports(__name__, _LAZY)
