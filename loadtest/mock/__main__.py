"""`python -m loadtest.mock [options]`: run the NLX mock server."""

from loadtest.mock.command import main

if __name__ == "__main__":
    raise SystemExit(main())
