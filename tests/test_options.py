"""The table of options, and what is generated from it: Locust's arguments, Settings, the README's table."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from loadtest import cli
from loadtest.options import OPTIONS, THRESHOLD, Option, add_arguments, markdown_table
from loadtest.settings import Settings
from tests.conftest import ROOT, locust_env

# Settings fields that no single option gives: the host (Locust's), what the endpoint and the mock
# decide together (the key), the scripts loaded from --conversations, and Locust's own --headless.
DERIVED_FIELDS = {"host", "uses_mock", "api_key", "outline", "headless"}


def locust_parser(config_files: list[str] | None = None) -> Any:
    """Locust's own parser with all of Locust's options, then ours (no config files read unless given)."""
    from locust.argument_parser import get_empty_argument_parser, setup_parser_arguments

    parser = get_empty_argument_parser(add_help=False, default_config_files=config_files or [])
    setup_parser_arguments(parser)
    add_arguments(parser)
    return parser


def action_of(parser: Any, option: Option[Any]) -> Any:
    [action] = [a for a in parser._actions if option.flag in a.option_strings]
    return action


def test_flags_env_vars_and_settings_are_unique() -> None:
    for attribute in ("flag", "env_var", "field"):
        values = [getattr(option, attribute) for option in OPTIONS]
        assert len(values) == len(set(values)), attribute


def test_every_option_is_in_locusts_parser_with_its_env_var_and_in_its_web_ui() -> None:
    parser = locust_parser()
    for option in OPTIONS:
        action = action_of(parser, option)
        assert action.dest == option.dest and action.default == option.default, option.flag
        assert action.choices == (list(option.choices) if option.choices else None), option.flag
        if option.kind == "append":
            assert action.env_var is None  # read and split at ';' by Option.raw, not by the parser
        else:
            assert action.env_var == option.env_var, option.flag
    # Grouped custom options are left out of Locust's web UI (locust#2560).
    assert {option.dest for option in OPTIONS} <= set(parser.args_included_in_web_ui)


def test_locusts_parser_reads_our_env_vars() -> None:
    parser = locust_parser()
    env = {"LOADTEST_THINK_TIME": "exp:5", "LOADTEST_MAX_QUEUE_WAIT": "4", "LOADTEST_INSECURE": "true"}
    options = parser.parse_args(["--threshold", "ttft.p95<1s", "--threshold", "turn.p99<2s"], env_vars=env)
    assert options.think_time == "exp:5" and options.max_queue_wait == 4.0 and options.insecure is True
    assert options.threshold == ["ttft.p95<1s", "turn.p99<2s"]


def test_the_web_ui_listens_on_loopback_unless_told_otherwise(tmp_path: Path) -> None:
    assert locust_parser().parse_args([]).web_host == "127.0.0.1"
    assert locust_parser().parse_args(["--web-host", "*"]).web_host == "*"
    assert locust_parser().parse_args([], env_vars={"LOCUST_WEB_HOST": "0.0.0.0"}).web_host == "0.0.0.0"
    conf = tmp_path / "locust.conf"
    conf.write_text("web-host = 10.1.2.3\n")
    assert locust_parser([str(conf)]).parse_args([]).web_host == "10.1.2.3"
    # A master binds its worker port where it is told, as before.
    assert locust_parser().parse_args(["--master"]).master_bind_host == "*"


def test_the_threshold_env_var_adds_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(THRESHOLD.env_var, "ttft.p99<2s;error_rate<1%")
    options = argparse.Namespace(threshold=["turn.p95<3s"])
    assert [t.expr for t in THRESHOLD.read(options)] == ["turn.p95<3s", "ttft.p99<2s", "error_rate<1%"]


def test_settings_has_a_field_for_every_option() -> None:
    fields = {field.name for field in dataclasses.fields(Settings)}
    options = {option.field for option in OPTIONS}
    assert options <= fields, options - fields
    assert fields - options == DERIVED_FIELDS, "a Settings field that no option gives: add it to the table"


def test_every_default_is_a_valid_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the default --report-dir is created
    for option in OPTIONS:
        option.read(argparse.Namespace())  # raises ConfigError when a default is not a valid value
    assert (tmp_path / "reports").is_dir()


def test_help_shows_a_percent_sign_once() -> None:
    text = locust_parser().format_help()
    assert "users leave early, after a random turn: 10% or 0.1" in " ".join(text.split())
    assert "%%" not in text


def test_the_readme_table_is_loadtest_options_markdown() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("\n### Options\n") :]
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    table = "\n".join(lines[start:end]) + "\n"
    assert table == markdown_table(), "README.md's option table: paste `loadtest options --markdown`"


def test_loadtest_options_markdown_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["options", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert out == markdown_table()
    assert out.count("\n") == len(OPTIONS) + 2  # header, rule, one row each
    assert "| `--history full\\|last` | `LOADTEST_HISTORY` | `full` |" in out
    assert "| `--threshold EXPR` | `LOADTEST_THRESHOLDS` (`;`-separated) | |" in out
    assert "| `--insecure` | `LOADTEST_INSECURE` | off |" in out


def test_loadtest_options_lists_our_options_with_their_env_vars() -> None:
    loadtest = str(Path(sys.executable).with_name("loadtest"))
    done = subprocess.run([loadtest, "options"], capture_output=True, text=True, timeout=60, env=locust_env())
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())  # help lines wrap anywhere
    for option in OPTIONS:
        assert option.flag in text
        assert option.env_var in text
    assert "The API key comes from the NLX_API_KEY environment variable only." in text
