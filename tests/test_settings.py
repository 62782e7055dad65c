"""Settings from the options as Locust parses them: every check, one line naming the fix, in-process."""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import configargparse
import pytest

from loadtest import settings as settings_module
from loadtest.arrivals import ArrivalRate
from loadtest.conversation import Outline, Scenario, forget_loaded
from loadtest.errors import ConfigError
from loadtest.options import add_arguments
from loadtest.pacing import Exponential, Uniform
from loadtest.settings import (
    API_KEY_ENV,
    MOCK_API_KEY,
    MOCK_MODEL,
    Settings,
    check_reachable,
    conversations_path,
    from_options,
    threshold_expressions,
)
from loadtest.stages import Stage
from tests.conftest import LOCUSTFILE, TEST_KEY

HOST = "https://apps.nlx.ai/v1"
NLX = ("--nlx-deployment", "d", "--nlx-channel", "web-en-US")


def parse_options(*args: str, env: dict[str, str] | None = None) -> argparse.Namespace:
    """The options as `locust -f locustfiles/chat.py ARGS` would parse them, with `env` as the only
    environment variables the parser sees."""
    parser = configargparse.ArgumentParser(add_help=False, default_config_files=[])
    add_arguments(parser)
    options = parser.parse_args(list(args), env_vars=env or {})
    options.locustfile = str(LOCUSTFILE)  # Locust's own -f
    return options


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No key or LOADTEST_* variable of the caller's shell (and none left behind by the test), and a
    fresh working directory for the default --report-dir."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith(("NLX_", "LOADTEST_", "OPENAI_")):
            del os.environ[name]
    monkeypatch.chdir(tmp_path)
    yield
    os.environ.clear()
    os.environ.update(saved)


def settings(*args: str, host: str | None = HOST, uses_mock: bool = False, key: bool = True) -> Settings:
    if key:
        os.environ[API_KEY_ENV] = TEST_KEY
    return from_options(parse_options(*args), host, uses_mock=uses_mock)


def config_error(*args: str, host: str | None = HOST, uses_mock: bool = False, key: bool = True) -> str:
    with pytest.raises(ConfigError) as caught:
        settings(*args, host=host, uses_mock=uses_mock, key=key)
    message = str(caught.value)
    assert "\n" not in message
    return message


# -- what the options give -----------------------------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    got = settings(*NLX)
    assert got.pacing == Uniform(1.0, 3.0)  # one default for --think-time, the one users always got
    assert got.abandon == 0.0 and got.fallback is None and got.history == "full"
    assert got.conversations_path == LOCUSTFILE.parent / "conversations.yaml" and got.scenarios
    assert got.report_dir == Path("reports") and (tmp_path / "reports").is_dir()
    assert (got.connect_timeout, got.read_timeout, got.first_byte_timeout, got.idle_timeout) == (
        10,
        60,
        60,
        60,
    )
    assert got.on_turn_error == "stop" and got.transport == "gevent" and got.gc == "auto"
    assert not (got.insecure or got.turn_log or got.threshold_abort or got.strict_client or got.headless)
    assert got.arrival_rate is None and got.max_queue_wait == 10.0 and got.stages is None
    assert got.thresholds == () and got.threshold_warmup == 30.0
    assert got.api == "nlx" and got.model == "" and got.mock_options == ""
    assert got.url == f"{HOST}/d/web-en-US/chat/completions" and got.api_key == TEST_KEY


def test_every_option_reaches_its_setting(tmp_path: Path) -> None:
    got = settings(
        *NLX,
        *("--think-time", "exp:5", "--abandon", "10%", "--fallback-pattern", "sorry", "--history", "last"),
        *("--report-dir", str(tmp_path / "out"), "--connect-timeout", "2", "--read-timeout", "7"),
        *("--idle-timeout", "3", "--on-turn-error", "continue", "--insecure", "--gc", "off"),
        *("--transport", "httpx", "--mock-options", "--ttft const:1ms", "--arrival-rate", "constant:2"),
        *("--stages", "1m:10,30s:0", "--max-queue-wait", "4", "--threshold", "ttft.p95<1s"),
        *("--threshold-abort", "--threshold-warmup", "0", "--strict-client", "--turn-log"),
    )
    assert got.pacing == Exponential(5.0) and got.abandon == 0.1 and got.history == "last"
    assert got.fallback is not None and got.fallback("Sorry, no") is not None and got.fallback("ok") is None
    assert got.report_dir == tmp_path / "out"
    assert (got.connect_timeout, got.read_timeout, got.first_byte_timeout, got.idle_timeout) == (2, 7, 7, 3)
    assert got.on_turn_error == "continue" and got.insecure and got.gc == "off" and got.transport == "httpx"
    assert got.mock_options == "--ttft const:1ms"
    assert got.arrival_rate == ArrivalRate(2.0, "constant") and got.max_queue_wait == 4.0
    assert got.stages == (Stage(60, 10), Stage(30, 0))
    assert [t.expr for t in got.thresholds] == ["ttft.p95<1s"]
    assert got.threshold_abort and got.threshold_warmup == 0.0 and got.strict_client and got.turn_log


def test_options_from_environment_variables() -> None:
    os.environ[API_KEY_ENV] = TEST_KEY
    env = {
        "NLX_DEPLOYMENT": "dep",
        "NLX_CHANNEL": "web-en-GB",
        "LOADTEST_THINK_TIME": "2",
        "LOADTEST_GC": "on",
    }
    got = from_options(parse_options(env=env), HOST, uses_mock=False)
    assert (got.deployment, got.channel, got.pacing, got.gc) == ("dep", "web-en-GB", Uniform(2, 2), "on")


def test_thresholds_from_the_flag_and_the_environment() -> None:
    os.environ["LOADTEST_THRESHOLDS"] = "turn.max<10s; error_rate<1%"
    options = parse_options(*NLX, "--threshold", "ttft.p99<10s")
    assert threshold_expressions(options) == ["ttft.p99<10s", "turn.max<10s; error_rate<1%"]
    got = from_options(options, HOST, uses_mock=True)
    assert [t.expr for t in got.thresholds] == ["ttft.p99<10s", "turn.max<10s", "error_rate<1%"]


def test_a_threshold_list_from_locust_conf_is_a_string_or_a_list() -> None:
    for given in ("ttft.p95<1s", ["ttft.p95<1s"]):
        assert threshold_expressions(argparse.Namespace(threshold=given)) == ["ttft.p95<1s"]


def test_the_mock_fills_in_the_endpoint() -> None:
    got = settings(host="http://127.0.0.1:1", uses_mock=True, key=False)
    assert (got.deployment, got.channel, got.api_key) == ("demo", "web-en-US", MOCK_API_KEY)
    openai = settings("--api", "openai", host="http://127.0.0.1:1", uses_mock=True, key=False)
    assert openai.model == MOCK_MODEL and openai.api_key == MOCK_API_KEY
    assert openai.url == "http://127.0.0.1:1/v1/chat/completions"


def test_openai_sends_a_key_only_when_there_is_one() -> None:
    got = settings("--api", "openai", "--model", "m", "--path", "/chat", key=False)
    assert got.api_key == "" and got.url == HOST + "/chat" and got.deployment == ""
    os.environ["OPENAI_API_KEY"] = "sk-test"
    assert settings("--api", "openai", "--model", "m", key=False).api_key == "sk-test"


def test_openai_requests_ask_for_usage_unless_no_usage() -> None:
    messages = [{"role": "user", "content": "hi"}]
    asked = settings("--api", "openai", "--model", "m")
    assert asked.usage
    assert asked.request_body("c1", messages) == {
        "model": "m",
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    os.environ[API_KEY_ENV] = TEST_KEY
    from_env = from_options(
        parse_options("--api", "openai", "--model", "m", env={"LOADTEST_NO_USAGE": "true"}),
        HOST,
        uses_mock=False,
    )
    assert not from_env.usage
    refused = settings("--api", "openai", "--model", "m", "--no-usage")
    assert not refused.usage and "stream_options" not in refused.request_body("c1", messages)
    # NLX's contract has no stream_options.
    assert "stream_options" not in settings(*NLX).request_body("c1", messages)


def test_values_typed_as_text_by_the_web_ui_are_parsed() -> None:
    # Locust's web UI stores an option whose default is None as the text typed in its field.
    options = parse_options(*NLX)
    options.first_byte_timeout, options.arrival_rate, options.idle_timeout = "5", "3", ""
    got = from_options(options, HOST, uses_mock=True)
    assert got.first_byte_timeout == 5.0 and got.arrival_rate == ArrivalRate(3.0) and got.idle_timeout == 60


def test_headless_is_locusts_own_option() -> None:
    options = parse_options(*NLX)
    options.headless = True
    assert from_options(options, HOST, uses_mock=True).headless


def test_conversations_path_is_beside_the_locustfile_unless_given() -> None:
    assert conversations_path(argparse.Namespace(locustfile="a/b/chat.py")) == Path("a/b/conversations.yaml")
    assert conversations_path(argparse.Namespace(locustfile="a,b")) == Path("a/conversations.yaml")
    assert conversations_path(argparse.Namespace(conversations="x.jsonl")) == Path("x.jsonl")


# -- one line naming the fix ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "key", "expected"),
    [
        # test_plugin.py::test_bad_configuration_is_one_line_at_start
        (
            ("--nlx-deployment", "d", "--nlx-channel", "web"),
            True,
            "has no language suffix: use --nlx-channel web-en-US",
        ),
        (("--nlx-deployment", "d"), True, "missing NLX channel key: pass --nlx-channel"),
        (NLX, False, "NLX_API_KEY is not set"),
        ((*NLX, "--think-time", "soon"), True, "--think-time 'soon'"),
        # test_plugin.py::test_bad_input_is_one_line_naming_the_fix_and_exit_2 (bad threshold)
        ((*NLX, "--threshold", "ttft.p95<fast"), True, "--threshold 'ttft.p95<fast'"),
        # test_verdict.py::test_malformed_threshold_is_one_line_at_start
        ((*NLX, "--threshold", "ttft.p97<800ms"), True, "p97"),
        # test_open_model.py::test_bad_arrival_rate_is_one_line
        ((*NLX, "--arrival-rate", "lots"), True, "--arrival-rate 'lots' is not a rate"),
        # test_openai.py::test_openai_configuration_errors
        (("--api", "openai"), True, "--api openai needs a model name: pass --model NAME"),
        (("--api", "openai", "--model", "m", "--history", "last"), True, "--history last needs server-side"),
        (
            ("--api", "openai", "--model", "m", "--path", "v1/chat"),
            True,
            "--path 'v1/chat' must start with '/'",
        ),
        ((*NLX, "--abandon", "150%"), True, "--abandon '150%' is not a share of conversations"),
        ((*NLX, "--fallback-pattern", "(unclosed"), True, "--fallback-pattern"),
        ((*NLX, "--stages", "1m"), True, "--stages '1m': stage '1m' is not DURATION:USERS"),
        ((*NLX, "--read-timeout", "0"), True, "--read-timeout 0.0 must be a number of seconds > 0"),
        (
            (*NLX, "--first-byte-timeout", "-1"),
            True,
            "--first-byte-timeout -1.0 must be a number of seconds > 0",
        ),
        (
            (*NLX, "--threshold-warmup", "-1"),
            True,
            "--threshold-warmup -1.0 must be a number of seconds >= 0",
        ),
        ((*NLX, "--max-queue-wait", "0"), True, "--max-queue-wait 0.0 must be a number of seconds > 0"),
        (("--nlx-deployment", "a/b", "--nlx-channel", "web-en-US"), True, "contains '/': pass the bare key"),
    ],
)
def test_bad_configuration_is_one_line_naming_the_fix(
    args: tuple[str, ...], key: bool, expected: str
) -> None:
    assert expected in config_error(*args, key=key)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("api", "grpc", "--api 'grpc' is not known: use --api nlx or --api openai"),
        ("history", "some", "--history 'some' is not known: use --history full or --history last"),
        ("transport", "curl", "--transport 'curl' is not known: use gevent or httpx"),
        ("gc", "sometimes", "--gc 'sometimes' is not known: use auto or on or off"),
        ("on_turn_error", "retry", "--on-turn-error 'retry' is not known: use stop or continue"),
        ("connect_timeout", "soon", "--connect-timeout 'soon' must be a number of seconds > 0"),
        ("threshold_warmup", "later", "--threshold-warmup 'later' must be a number of seconds >= 0"),
    ],
)
def test_a_bad_choice_past_the_parser_is_one_line(name: str, value: str, expected: str) -> None:
    # The parser refuses these itself (test below); locust.conf and the web UI's form can still set them.
    options = parse_options(*NLX)
    setattr(options, name, value)
    os.environ[API_KEY_ENV] = TEST_KEY
    with pytest.raises(ConfigError, match=f"^{re.escape(expected)}$"):
        from_options(options, HOST, uses_mock=False)


def test_the_parser_refuses_an_unknown_choice(capsys: pytest.CaptureFixture[str]) -> None:
    # test_transport.py::test_an_unknown_transport_is_a_one_line_error
    with pytest.raises(SystemExit) as exited:
        parse_options(*NLX, "--transport", "curl")
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--transport" in err and "gevent" in err


@pytest.mark.parametrize(
    ("host", "expected"),
    [(None, "no host: pass --host"), ("apps.nlx.ai/v1", "--host 'apps.nlx.ai/v1' must start with http://")],
)
def test_bad_host_is_one_line(host: str | None, expected: str) -> None:
    assert expected in config_error(*NLX, host=host)


def test_unwritable_report_dir_is_one_line() -> None:
    # test_plugin.py::test_bad_input_is_one_line_naming_the_fix_and_exit_2 (unwritable report dir)
    message = config_error(*NLX, "--report-dir", "/proc/no-such-dir/reports")
    assert message.startswith("--report-dir '/proc/no-such-dir/reports' cannot be created (")
    assert message.endswith("): pick a writable folder")


def test_bad_dataset_line_is_one_line(tmp_path: Path) -> None:
    # test_plugin.py::test_bad_input_is_one_line_naming_the_fix_and_exit_2 (bad dataset line)
    path = tmp_path / "bad.jsonl"
    path.write_text('{"name": "ok", "turns": ["hi"]}\n{"name": "broken", "turns": "hi"}\n', encoding="utf-8")
    assert "bad.jsonl:2: " in config_error(*NLX, "--conversations", str(path))


def test_unreachable_host_is_one_line() -> None:
    # test_plugin.py::test_bad_input_is_one_line_naming_the_fix_and_exit_2 (unreachable host)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConfigError, match=r"cannot connect to 127\.0\.0\.1:\d+ .*check the host and port"):
        check_reachable(f"http://127.0.0.1:{port}", 5.0)
    with pytest.raises(ConfigError, match="cannot resolve 'no-such-host.invalid': check the host name"):
        check_reachable("http://no-such-host.invalid", 5.0)


def test_a_reachable_host_passes() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_reachable(f"http://127.0.0.1:{server.getsockname()[1]}", 5.0)


# -- threshold scopes against the conversations file, and quoted scenario names --------------------------

QUOTED_NAMES = """\
scenarios:
  - name: "order status, v2"
    turns: ["Where is my order?", "Thanks"]
  - name: "a; b"
    turns: ["Hi"]
"""


def _conversations(tmp_path: Path) -> str:
    path = tmp_path / "quoted.yaml"
    path.write_text(QUOTED_NAMES, encoding="utf-8")
    return str(path)


def test_a_threshold_scope_is_checked_against_the_conversations_file() -> None:
    message = config_error(*NLX, "--threshold", "ttft{scenario=nope}.p95<1s")
    assert message.startswith("--threshold 'ttft{scenario=nope}.p95<1s': ")
    assert "conversations.yaml has no scenario 'nope': use " in message
    assert all(name in message for name in ("order_status", "booking", "faq_short", "multilingual"))
    message = config_error(*NLX, "--threshold", "error_rate{turn=40}<1%")
    assert "has a turn 40, the longest has " in message


def test_quoted_scenario_names_reach_the_thresholds(tmp_path: Path) -> None:
    got = settings(
        *NLX,
        *("--conversations", _conversations(tmp_path)),
        *("--threshold", 'ttft{scenario="order status, v2"}.p95<1s', "--threshold", "turn{turn=2}.p99<5s"),
    )
    assert [t.scope for t in got.thresholds] == [("scenario", "order status, v2"), ("turn", "2")]
    wrong = config_error(
        *NLX, "--conversations", _conversations(tmp_path), "--threshold", "ttft{turn=3}.p95<1s"
    )
    assert wrong.endswith("quoted.yaml has a turn 3, the longest has 2: use {turn=1} to {turn=2}")


def test_a_transcript_file_allows_turns_up_to_its_longest_transcript(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    transcripts = [[{"role": "user", "content": "a"}], [{"role": "user", "content": "b"}] * 4]
    lines = [json.dumps({"scenario": "refunds", "messages": messages}) for messages in transcripts]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert settings(*NLX, "--conversations", str(path), "--threshold", "ttft{turn=4}.p95<1s").thresholds
    assert "the longest has 4" in config_error(
        *NLX, "--conversations", str(path), "--threshold", "ttft{turn=5}.p95<1s"
    )


def test_settings_keep_the_outline_and_read_the_scenarios_on_first_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "t.jsonl"
    lines = [
        json.dumps({"scenario": "g", "messages": [{"role": "user", "content": f"m{i}"}]}) for i in range(3)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    forget_loaded()
    loads: list[Path] = []
    load = settings_module.load_scenarios

    def counted(at: Path) -> tuple[Scenario, ...]:
        loads.append(at)
        return load(at)

    monkeypatch.setattr(settings_module, "load_scenarios", counted)
    got = settings(*NLX, "--conversations", str(path))
    # A master builds its settings this way and never plays: it holds names and sizes only.
    assert got.outline == (Outline("g", 3.0, 3, 3, 1),)
    assert loads == []
    assert [s.name for s in got.scenarios] == ["g"] and got.scenarios is got.scenarios
    assert loads == [path]


def test_a_semicolon_in_a_quoted_name_survives_loadtest_thresholds(tmp_path: Path) -> None:
    os.environ["LOADTEST_THRESHOLDS"] = 'ttft{scenario="a; b"}.p95<1s; error_rate{scenario="a; b"}<1%'
    got = settings(*NLX, "--conversations", _conversations(tmp_path))
    assert [(t.metric, t.scope) for t in got.thresholds] == [
        ("ttft", ("scenario", "a; b")),
        ("error_rate", ("scenario", "a; b")),
    ]


def _locust_options(config_file: Path, text: str) -> argparse.Namespace:
    """The options as Locust itself reads them from a config file (locust.conf or pyproject.toml)."""
    from locust.argument_parser import get_empty_argument_parser

    config_file.write_text(text, encoding="utf-8")
    parser = get_empty_argument_parser(add_help=False, default_config_files=[str(config_file)])
    add_arguments(parser)
    options, _ = parser.parse_known_args([], env_vars={})
    options.locustfile = str(LOCUSTFILE)
    return options


@pytest.mark.parametrize(
    ("file", "text"),
    [
        (
            "locust.conf",
            'threshold = ttft{scenario="order status, v2"}.p95<1s;error_rate{scenario="a; b"}<1%\n',
        ),
        (
            "locust.conf",
            'threshold = ["ttft{scenario=\\"order status, v2\\"}.p95<1s", '
            '"error_rate{scenario=\\"a; b\\"}<1%"]\n',
        ),
        (
            "pyproject.toml",
            "[tool.locust]\nthreshold = ['ttft{scenario=\"order status, v2\"}.p95<1s', "
            "'error_rate{scenario=\"a; b\"}<1%']\n",
        ),
    ],
)
def test_quoted_names_survive_locust_config_files(tmp_path: Path, file: str, text: str) -> None:
    options = _locust_options(tmp_path / file, text)
    options.nlx_deployment, options.nlx_channel, options.conversations = (
        "d",
        "web-en-US",
        _conversations(tmp_path),
    )
    os.environ[API_KEY_ENV] = TEST_KEY
    got = from_options(options, HOST, uses_mock=False)
    assert [t.scope for t in got.thresholds] == [("scenario", "order status, v2"), ("scenario", "a; b")]


def test_a_locust_conf_list_cut_at_a_comma_names_the_fix(tmp_path: Path) -> None:
    # configargparse splits a [a, b] list at every comma, inside quotes too
    options = _locust_options(
        tmp_path / "locust.conf", 'threshold = [ttft{scenario="order status, v2"}.p95<1s]\n'
    )
    assert options.threshold == ['ttft{scenario="order status', 'v2"}.p95<1s']
    options.nlx_deployment, options.nlx_channel = "d", "web-en-US"
    os.environ[API_KEY_ENV] = TEST_KEY
    with pytest.raises(
        ConfigError, match=r"""unclosed '"'.*write a JSON list \["\.\.\."\] or one threshold per"""
    ):
        from_options(options, HOST, uses_mock=False)
