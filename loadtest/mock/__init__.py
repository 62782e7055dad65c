"""The built-in NLX OpenAI Connect mock server (`python -m loadtest.mock`, `loadtest mock`)."""

from loadtest.mock.dist import Distribution, parse_count_dist, parse_duration_dist
from loadtest.mock.server import READY_PREFIX, MockConfig, create_app, main, parse_config, serve
from loadtest.mock.state import MockState

__all__ = [
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
