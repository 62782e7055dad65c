"""`loadtest` command: `loadtest mock ...` runs the mock server, `loadtest report SUMMARY` re-renders."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

USAGE = """usage: loadtest COMMAND [ARGS]

commands:
  mock [OPTIONS]        run the built-in NLX mock server (loadtest mock --help)
  report SUMMARY.json   render report.html beside a summary.json again
  options               list the options loadtest adds to locust, with their environment variables

To run a load test: locust -f locustfiles/chat.py (see README.md)."""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command, rest = args[0], args[1:]
    if command == "mock":
        from loadtest.mock import main as mock_main

        return mock_main(rest)
    if command == "report":
        return _report(rest)
    if command == "options":
        return _options()
    print(f"loadtest: error: unknown command {command!r}: use mock or report", file=sys.stderr)
    return 2


def _options() -> int:
    # `locust --help` prints before it imports the locustfile, so it cannot show our options
    # (locust#2917): print them from the same definition here.
    from locust.argument_parser import LocustArgumentParser

    from loadtest.plugin import add_arguments

    parser = LocustArgumentParser(
        prog="locust -f locustfiles/chat.py",
        usage="%(prog)s [locust options] [loadtest options]",
        add_help=False,
        add_env_var_help=True,
        add_config_file_help=False,
    )
    add_arguments(parser)
    parser.print_help()
    print("\nAlso read from locust.conf and pyproject.toml [tool.locust].")
    print("The API key comes from the NLX_API_KEY environment variable only.")
    return 0


def _report(argv: list[str]) -> int:
    from loadtest.report.html import render_html

    parser = argparse.ArgumentParser(prog="loadtest report")
    parser.add_argument("summary", type=Path, help="a summary.json written by a run")
    parser.add_argument("-o", "--output", type=Path, default=None, help="default: report.html beside it")
    ns = parser.parse_args(argv)
    try:
        summary = orjson.loads(ns.summary.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        print(f"loadtest: error: cannot read {ns.summary}: {exc}", file=sys.stderr)
        return 2
    output = ns.output or ns.summary.with_name("report.html")
    output.write_text(render_html(summary), encoding="utf-8")
    print(output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
