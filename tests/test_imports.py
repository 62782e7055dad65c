"""What importing a part of loadtest loads: Locust first for the plugin, nothing heavy for the rest."""

from __future__ import annotations

import subprocess
import sys

import pytest


def imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sys.modules))"
    done = subprocess.run(
        [sys.executable, "-W", "error::Warning", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return set(done.stdout.split())


def test_the_plugin_imports_locust_before_anything_opens_a_socket() -> None:
    # gevent warns (an error here) when ssl or sockets were imported before Locust patched them.
    assert {"locust", "httpx", "gevent"} <= imported_after("import loadtest.plugin")


@pytest.mark.parametrize(
    "statement",
    ["import loadtest", "import loadtest.mock", "import loadtest.catalog", "import loadtest.settings"],
)
def test_plain_parts_load_neither_gevent_nor_httpx(statement: str) -> None:
    assert not {"gevent", "httpx", "locust"} & imported_after(statement)
