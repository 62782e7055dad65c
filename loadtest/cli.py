"""`loadtest` command: `loadtest mock ...` runs the mock server, `loadtest report SUMMARY` re-renders,
`loadtest compare BASELINE NEW` compares two runs, `loadtest calibrate` measures the generator's own
added latency, `loadtest conversations check FILE` checks a conversations file."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import NoReturn

USAGE = """usage: loadtest COMMAND [ARGS]

commands:
  mock [OPTIONS]        run the built-in NLX mock server (loadtest mock --help)
  report SUMMARY.json   render report.html beside a summary.json again
  compare BASELINE NEW  compare two runs: compare.html, Markdown, exit 4 on a regression
                        (loadtest compare --help)
  options [--markdown]  list the options loadtest adds to locust, with their environment variables
                        (--markdown: the README's option table)
  calibrate [OPTIONS]   how much latency the load generator itself adds, measured against the mock
                        (loadtest calibrate --help)
  conversations check FILE [--render N]
                        check a conversations file without a run, and show what its conversations
                        send (loadtest conversations check --help)

To run a load test: locust -f locustfiles/chat.py (see README.md)."""

EXIT_BAD_INPUT = 2  # as verdict.EXIT_CODES (not imported: `loadtest --help` stays fast)
EXIT_REGRESSION = 4
EXIT_TOO_MUCH_OVERHEAD = 1


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
    if command == "compare":
        return _compare(rest)
    if command == "options":
        return _options(rest)
    if command == "calibrate":
        return _calibrate(rest)
    if command == "conversations":
        return _conversations(rest)
    print(
        f"loadtest: error: unknown command {command!r}: use mock, report, compare, options, calibrate or "
        "conversations",
        file=sys.stderr,
    )
    return EXIT_BAD_INPUT


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line that points at --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _options(argv: list[str]) -> int:
    # `locust --help` prints before it imports the locustfile, so it cannot show our options
    # (locust#2917): print them from the same table here, without importing Locust.
    import configargparse  # type: ignore[import-untyped]  # Locust's parser underneath, without Locust

    from loadtest.options import add_arguments, markdown_table

    parser = _Parser(prog="loadtest options", description="List the options loadtest adds to locust.")
    parser.add_argument("--markdown", action="store_true", help="print the README's option table")
    if parser.parse_args(argv).markdown:
        print(markdown_table(), end="")
        return 0
    listing = configargparse.ArgumentParser(
        prog="locust -f locustfiles/chat.py",
        usage="%(prog)s [locust options] [loadtest options]",
        add_help=False,
        add_env_var_help=True,
        add_config_file_help=False,
    )
    add_arguments(listing)
    listing.print_help()
    print("\nAlso read from locust.conf and pyproject.toml [tool.locust].")
    print("The API key comes from the NLX_API_KEY environment variable only.")
    return 0


def _report(argv: list[str]) -> int:
    from loadtest.errors import ConfigError
    from loadtest.report.compare import load_summary
    from loadtest.report.html import render_html

    parser = _Parser(prog="loadtest report")
    parser.add_argument("summary", type=Path, help="a summary.json written by a run, or its run folder")
    parser.add_argument("-o", "--output", type=Path, default=None, help="default: report.html beside it")
    ns = parser.parse_args(argv)
    try:
        summary = load_summary(ns.summary)
    except ConfigError as exc:
        print(f"loadtest report: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    folder = ns.summary if ns.summary.is_dir() else ns.summary.parent
    output = ns.output or folder / "report.html"
    try:
        output.write_text(render_html(summary), encoding="utf-8")
    except OSError as exc:
        print(f"loadtest report: error: cannot write {output}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(output)
    return 0


COMPARE_HELP = """Compare a new run with a baseline: compare.html with both runs side by side, and a Markdown
table for a pull-request comment (on stdout, or in --markdown FILE). A one-line verdict goes to stderr.

exit codes: 0 no regression, 4 a regression beyond the tolerance, 2 bad input."""


def _compare(argv: list[str]) -> int:
    from loadtest.errors import ConfigError
    from loadtest.report.compare import (
        DEFAULT_TOLERANCE,
        check_comparable,
        compare,
        headline,
        load_summary,
        parse_tolerance,
        render_markdown,
        rule,
    )
    from loadtest.report.html import render_compare_html

    parser = _Parser(
        prog="loadtest compare",
        description=COMPARE_HELP,
        epilog=textwrap.fill(rule(None), 100),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("baseline", type=Path, help="the baseline run: its summary.json or its folder")
    parser.add_argument("new", type=Path, help="the run to judge: its summary.json or its folder")
    parser.add_argument(
        "--tolerance",
        default=DEFAULT_TOLERANCE,
        help="how much worse counts as a regression: 10%% or 0.1 (default %(default)s)",
    )
    parser.add_argument(
        "-o", "--output", type=Path, default=Path("compare.html"), help="the HTML (default compare.html)"
    )
    parser.add_argument("--markdown", type=Path, default=None, help="write the Markdown here, not to stdout")
    ns = parser.parse_args(argv)
    try:
        tolerance = parse_tolerance(ns.tolerance)
        baseline = load_summary(ns.baseline)
        new = load_summary(ns.new)
        check_comparable(baseline, ns.baseline)
    except ConfigError as exc:
        print(f"loadtest compare: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT

    comparison = compare(baseline, new, tolerance)
    markdown = render_markdown(comparison, baseline, new)
    written = [(ns.output, render_compare_html(comparison, baseline, new))]
    if ns.markdown is not None:
        written.append((ns.markdown, markdown))
    for path, text in written:
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"loadtest compare: error: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
    if ns.markdown is None:
        print(markdown)
    else:
        print("\n".join(str(path) for path, _ in written))

    if comparison.regressed:
        found = "; ".join(comparison.regressions)
        print(f"loadtest compare: {headline(comparison)}: {found} ({ns.output})", file=sys.stderr)
        return EXIT_REGRESSION
    print(f"loadtest compare: {headline(comparison)} ({ns.output})", file=sys.stderr)
    return 0


CALIBRATE_HELP = """Measure the latency the load generator itself adds. Runs a real headless locust process
on the locustfile against the built-in mock (one-turn conversations, no think time), then prints the
generator's TTFT and turn-latency percentiles minus the mock's own server-side ones, the generator's
CPU and memory, and a one-line verdict. With two CPUs or more, the mock and the generator run on one
CPU each.

exit codes: 0 the added p95 is within --max-added-ms, 1 it is not (or no turn completed), 2 bad input."""


def _calibrate(argv: list[str]) -> int:
    from loadtest import calibrate
    from loadtest.errors import ConfigError, LoadtestError

    defaults = calibrate.Options()
    parser = _Parser(
        prog="loadtest calibrate",
        description=CALIBRATE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--users", type=int, default=defaults.users, help="concurrent users (default 100)")
    parser.add_argument("--seconds", type=int, default=defaults.seconds, help="run time (default 20)")
    parser.add_argument("--ttft", default=defaults.ttft, help="the mock's TTFT (default %(default)s)")
    parser.add_argument(
        "--itl", default=defaults.itl, help="the mock's inter-chunk time (default %(default)s)"
    )
    parser.add_argument(
        "--chunks", default=defaults.chunks, help="content chunks per reply (default %(default)s)"
    )
    parser.add_argument(
        "-f",
        "--locustfile",
        type=Path,
        default=None,
        help="a locustfile that uses loadtest's plugin (default: locustfiles/chat.py)",
    )
    parser.add_argument(
        "--max-added-ms",
        type=float,
        default=defaults.max_added_ms,
        help="exit 1 when the generator adds more than this at p95 (default %(default)g)",
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin the mock and the generator to CPUs of their own"
    )
    ns = parser.parse_args(argv)
    options = calibrate.Options(
        users=ns.users,
        seconds=ns.seconds,
        ttft=ns.ttft,
        itl=ns.itl,
        chunks=ns.chunks,
        locustfile=ns.locustfile,
        max_added_ms=ns.max_added_ms,
        pin=not ns.no_pin,
    )
    try:
        result = calibrate.calibrate(options, progress=print)
    except ConfigError as exc:
        print(f"loadtest calibrate: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except LoadtestError as exc:
        print(f"loadtest calibrate: error: {exc}", file=sys.stderr)
        return EXIT_TOO_MUCH_OVERHEAD
    print("\n".join(calibrate.report_lines(result)))
    return EXIT_TOO_MUCH_OVERHEAD if result.too_much else 0


CHECK_HELP = """Check a conversations file (YAML or JSONL) as a run would at start, without running: one
line saying what it holds, or one line saying what is wrong and where (file:line). With --render N,
then N conversations as they would be sent: picked by weight, variables drawn.

exit codes: 0 the file is good, 2 it is not (or bad arguments)."""


def _conversations(argv: list[str]) -> int:
    parser = _Parser(prog="loadtest conversations", description="Work with conversations files.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="check")
    check = actions.add_parser(
        "check",
        help="check a file, and show rendered conversations",
        description=CHECK_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("file", type=Path, help="the conversations file (.yaml, .yml or .jsonl)")
    check.add_argument(
        "--render", type=int, default=0, metavar="N", help="print N conversations as they would be sent"
    )
    check.add_argument("--seed", type=int, default=None, help="draw the same conversations each time")
    ns = parser.parse_args(argv)
    if ns.render < 0:
        check.error(f"--render {ns.render}: give a number of conversations, 0 or more")
    return _check_conversations(ns.file, ns.render, ns.seed)


def _check_conversations(path: Path, render: int, seed: int | None) -> int:
    import random

    from loadtest.conversation import Outline, choose, load_scenarios, sample, scenario_outline
    from loadtest.errors import ConfigError

    try:
        scenarios = load_scenarios(path) if render else ()
        outline = tuple(Outline.of(s) for s in scenarios) if render else scenario_outline(path)
    except ConfigError as exc:
        print(f"loadtest conversations check: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    transcripts = sum(o.transcripts for o in outline)
    print(
        f"{path}: ok: {_count(len(outline), 'scenario')}, {_count(sum(o.turns for o in outline), 'turn')}, "
        f"{_count(transcripts, 'transcript')}"
    )
    rng = random.Random(seed)
    for number in range(1, render + 1):
        scenario = choose(scenarios, rng)
        print(f"\n--- conversation {number}: {scenario.name}")
        for message in sample(scenario, rng):
            lines = message["content"].split("\n")
            print(f"{message['role']}: {lines[0]}")
            for line in lines[1:]:
                print(f"  {line}")
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


if __name__ == "__main__":
    raise SystemExit(main())
