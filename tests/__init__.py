"""loadtest's tests; a package, so that `tests.conftest` is one module for pytest and the tests alike."""
