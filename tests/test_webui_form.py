"""The web UI's start form: loadtest's fields (labels, order, what is left out) and the check of a start,
with the values posted as the form posts them; then on Locust's own web UI, in this process."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from locust import User, constant, task
from locust.env import Environment
from locust.event import Events

from loadtest import webui_form
from loadtest.errors import ConfigError
from loadtest.options import MOCK_OPTIONS, NO_PROGRESS, OPTIONS, STAGES, THINK_TIME, THRESHOLD
from loadtest.settings import Plays
from tests.test_options import locust_parser

MOCK_URL = "http://127.0.0.1:5999"
CONVERSATIONS = "scenarios:\n  - name: two_turns\n    turns: [one, two]\n"


# --- Locust's front end, as it treats a custom field's key (webui/src/utils/string.ts) ------------------


def camel(key: str) -> str:
    """How the page receives a key (every key of the template arguments is camel-cased)."""
    return re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), key)


def snake(key: str) -> str:
    """How the form posts a field: snake_case, unless the key starts with a capital letter."""
    if key[0] == key[0].upper():
        return key
    return re.sub(r"([a-z0-9])([A-Z0-9])", r"\1_\2", key).lower()


def title(key: str) -> str:
    """The field's label before its help text."""
    spaced = re.sub(r"([a-z0-9])([A-Z0-9])", r"\1 \2", key)
    return spaced[:1].upper() + spaced[1:]


def form_body(extra_options: dict[str, Any]) -> dict[str, str]:
    """What the form posts for its custom fields as it opens: each field's value, empty ones included."""
    body = {}
    for key, entry in extra_options.items():
        value = entry["default_value"]
        text = (
            ("true" if value else "false") if isinstance(value, bool) else "" if value is None else str(value)
        )
        body[snake(camel(key))] = text
    return body


def parsed(*argv: str) -> argparse.Namespace:
    options: argparse.Namespace = locust_parser().parse_args(["-f", "chat.py", *argv])
    return options


@pytest.fixture
def conversations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # the default --report-dir is created here
    path = tmp_path / "conversations.yaml"
    path.write_text(CONVERSATIONS)
    return path


# --- the fields -------------------------------------------------------------------------------------


def test_the_form_shows_each_label_as_written_and_posts_it_unchanged() -> None:
    for option in OPTIONS:
        assert option.label, option.flag
        assert title(camel(option.label)) == option.label, option.label
        assert snake(camel(option.label)) == option.label, option.label
    labels = [option.label for option in OPTIONS]
    assert len(set(labels)) == len(labels)
    assert {"API", "Garbage collector", "NLX channel key", "Think time"} <= set(labels)


def test_each_field_fits_on_its_line_without_percent_signs_doubled() -> None:
    # Label and help share one line, cut at the field's width (about 90 characters at 1280 px).
    for option in webui_form.FORM_OPTIONS:
        assert option.hint, option.flag
        assert len(f"{option.label} ({option.hint})") <= 80, option.flag
        assert "%%" not in option.hint


def test_fields_come_in_the_order_of_the_options_and_what_cannot_change_is_left_out() -> None:
    fields = webui_form.extra_options(parsed(), {"other_plugin": {"default_value": 1}})
    expected = [o.label for o in OPTIONS if o not in (MOCK_OPTIONS, STAGES, NO_PROGRESS)]
    assert list(fields) == [*expected, "other_plugin"]
    assert fields["other_plugin"] == {"default_value": 1}
    assert fields["API"]["choices"] == ["nlx", "openai"] and fields["API"]["default_value"] == "nlx"
    assert fields["Think time"]["help_text"] == THINK_TIME.hint


def test_fields_show_the_value_the_next_run_uses() -> None:
    options = parsed("--think-time", "2-8", "--connect-timeout", "5", "--insecure")
    options.threshold = ["ttft.p95<1s", "turn.p99<3s"]
    fields = webui_form.extra_options(options, {})
    shown = {key: entry["default_value"] for key, entry in fields.items()}
    assert shown["Think time"] == "2-8"
    assert shown["Connect timeout"] == "5" and shown["Read timeout"] == "60"
    assert shown["First byte timeout"] == ""  # not set: the read timeout applies
    assert shown["Skip TLS verification"] is True and shown["Turn log"] is False
    assert shown["Thresholds"] == "ttft.p95<1s;turn.p99<3s"


# --- reading a start --------------------------------------------------------------------------------


def test_posted_values_read_as_the_command_line_reads_them() -> None:
    values = webui_form.posted_values(
        {
            "Think time": "0.5-1",
            "First byte timeout": "",  # empty: not given, the default
            "Connect timeout": "2.5",
            "Read timeout": "",
            "Skip TLS verification": "true",
            "Turn log": "false",
            "Thresholds": "ttft.p95<1s;turn.p99<3s",
            "history": "last",  # by its dest, as scripts post
            "user_count": "3",  # Locust's own
        }
    )
    assert values == {
        "think_time": "0.5-1",
        "first_byte_timeout": None,
        "connect_timeout": 2.5,
        "read_timeout": 60.0,
        "insecure": True,
        "turn_log": False,
        "threshold": ["ttft.p95<1s;turn.p99<3s"],
        "history": "last",
    }
    assert [t.expr for t in THRESHOLD.read(argparse.Namespace(**values))] == ["ttft.p95<1s", "turn.p99<3s"]


def check(options: argparse.Namespace, form: dict[str, str], **kwargs: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {"current_host": MOCK_URL, "mock_url": MOCK_URL, "running": False, **kwargs}
    return webui_form.checked_values(options, form, MOCK_URL, **arguments)


def test_the_body_the_form_sends_as_it_opens_is_valid_and_changes_nothing(conversations: Path) -> None:
    options = parsed("--conversations", str(conversations))
    body = form_body(webui_form.extra_options(options, {}))
    assert body["First byte timeout"] == "" and body["Skip TLS verification"] == "false"
    values = check(options, body)
    assert set(values) == {o.dest for o in webui_form.FORM_OPTIONS}
    assert all(
        webui_form.shown(o, values[o.dest]) == webui_form.shown(o, getattr(options, o.dest))
        for o in webui_form.FORM_OPTIONS
    )


BAD_VALUES = [
    ("Connect timeout", "soon", "--connect-timeout 'soon' must be a number of seconds > 0"),
    ("First byte timeout", "-1", "--first-byte-timeout -1.0 must be a number of seconds > 0"),
    ("History", "sometimes", "--history 'sometimes' is not known: use --history full or --history last"),
    ("Think time", "slow", "--think-time"),
    ("Thresholds", "ttft.p95<", "ttft.p95<"),
    ("Conversations file", "missing.yaml", "missing.yaml: conversations file not found"),
    ("Skip TLS verification", "yes", "--insecure 'yes' must be true or false"),
    ("mock_options", "--ttft const:1ms", "--mock-options is read when locust starts"),
    ("stages", "1m:10", "--stages is read when locust starts"),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_each_kind_of_bad_value_refuses_the_start_with_one_line(
    conversations: Path, field: str, value: str, message: str
) -> None:
    options = parsed("--conversations", str(conversations))
    body = {**form_body(webui_form.extra_options(options, {})), field: value}
    before = dict(vars(options))
    with pytest.raises(ConfigError) as refused:
        check(options, body)
    text = str(refused.value)
    assert message in text and "\n" not in text
    assert vars(options) == before  # nothing is set by a refused start


def test_a_running_test_keeps_its_options(conversations: Path) -> None:
    options = parsed("--conversations", str(conversations))
    body = form_body(webui_form.extra_options(options, {}))
    assert check(options, body, running=True)  # Locust's Edit posts every field back: no change, fine
    with pytest.raises(
        ConfigError, match=r"^History, Think time: loadtest's options apply from the next start"
    ):
        check(options, {**body, "Think time": "5", "History": "last"}, running=True)


def test_the_mock_is_not_pointed_at_another_host(conversations: Path) -> None:
    options = parsed("--conversations", str(conversations))
    with pytest.raises(ConfigError, match="runs against its built-in mock"):
        webui_form.checked_values(
            options, {}, "https://apps.nlx.ai/v1", current_host=MOCK_URL, mock_url=MOCK_URL, running=False
        )


def test_a_new_host_is_checked_as_at_start_up(conversations: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NLX_API_KEY", "k")
    options = parsed(
        "--conversations", str(conversations), *("--nlx-deployment", "d", "--nlx-channel", "w-en-US")
    )
    with pytest.raises(ConfigError, match="cannot connect to 127.0.0.1:9"):
        webui_form.checked_values(
            options, {}, "http://127.0.0.1:9", current_host="http://127.0.0.1:8", mock_url=None, running=False
        )


# --- on Locust's own web UI, in this process ----------------------------------------------------------


class IdleUser(User):
    wait_time = constant(60)

    @task
    def idle(self) -> None:
        pass


@pytest.fixture
def locust_web_ui(conversations: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Locust's WebUI (no server: Flask's test client) with loadtest's options parsed as from the command
    line and the start form installed, for a process running the mock at MOCK_URL."""
    # The WebUI parses the command line for the custom fields it builds; loadtest's come from parsed_options.
    monkeypatch.setattr(sys, "argv", ["locust"])
    environment = Environment(user_classes=[IdleUser], events=Events(), host=MOCK_URL)
    environment.parsed_options = parsed("--conversations", str(conversations), "--think-time", "0")
    runner = environment.create_local_runner()
    ui = environment.create_web_ui("127.0.0.1", 0, delayed_start=True)
    webui_form.install(ui, lambda: MOCK_URL)
    try:
        yield ui
    finally:
        runner.quit()


def page_fields(client: Any) -> dict[str, Any]:
    page = client.get("/").get_data(as_text=True)
    found = re.search(r"window\.templateArgs = (.*)$", page, re.MULTILINE)
    assert found, page[-2000:]
    fields: dict[str, Any] = json.loads(found.group(1))["extra_options"]
    return fields


def test_the_page_lists_loadtests_fields_in_order(locust_web_ui: Any) -> None:
    fields = page_fields(locust_web_ui.app.test_client())
    assert list(fields) == [o.label for o in webui_form.FORM_OPTIONS]
    assert fields["Think time"]["default_value"] == "0"


def test_a_bad_value_gets_locusts_own_refusal_and_no_run(
    locust_web_ui: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = locust_web_ui.app.test_client()
    body = {"user_count": "1", "spawn_rate": "1", "host": MOCK_URL, **form_body(page_fields(client))}
    answer = client.post("/swarm", data={**body, "Connect timeout": "", "Read timeout": "soon"})
    assert answer.status_code == 200
    assert answer.get_json() == {
        "success": False,
        "message": "--read-timeout 'soon' must be a number of seconds > 0",
        "host": MOCK_URL,
    }
    assert locust_web_ui.environment.runner.state == "ready"
    assert "loadtest: the test did not start: --read-timeout 'soon'" in caplog.text
    assert "Traceback" not in caplog.text


def test_a_start_stores_the_forms_values_for_the_run(locust_web_ui: Any) -> None:
    client = locust_web_ui.app.test_client()
    body = {"user_count": "1", "spawn_rate": "1", "host": MOCK_URL, **form_body(page_fields(client))}
    body.update({"Think time": "0.5-1", "History": "last", "Connect timeout": "", "Turn log": "true"})
    # A cleared number field under its dest, as a script posts it: Locust's own handler would convert it
    # with the type of the value it replaces, float(""), and answer with a traceback.
    body["read_timeout"] = ""
    answer = client.post("/swarm", data=body)
    assert answer.get_json()["success"] is True, answer.get_json()
    options = locust_web_ui.environment.parsed_options
    assert (options.think_time, options.history, options.connect_timeout) == ("0.5-1", "last", 10.0)
    assert options.read_timeout == 60.0
    assert options.turn_log is True and options.num_users == 1
    assert page_fields(client)["Think time"]["default_value"] == "0.5-1"  # "New" shows the last run's


def test_a_locustfile_of_flows_only_starts_without_a_conversations_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default --report-dir is created here
    options = parsed()
    options.locustfile = str(tmp_path / "flows.py")  # no conversations.yaml beside it
    body = form_body(webui_form.extra_options(options, {}))
    with pytest.raises(ConfigError, match="conversations file not found"):
        check(options, body)  # users that play the file need it
    assert check(options, body, plays=Plays(scripts=False, flows=True))
