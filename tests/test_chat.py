"""Conversations written in Python (loadtest.chat): flows in a locustfile's own tasks, measured as the
conversations file's scenarios are. In this process against a mock in a thread (tests/harness.py); one
real `--processes 2` run mixes flows and scenarios."""

from __future__ import annotations

import importlib.util
import re
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import locust
import pytest
from locust import task
from locust.event import Events

from loadtest.chat import Reply
from loadtest.errors import ConfigError
from loadtest.plugin import NLXChatUser, plays
from loadtest.report.turns import read_turns
from loadtest.settings import Plays, from_options
from tests import harness
from tests.conftest import (
    FAST,
    NLX,
    TEST_KEY,
    Finish,
    LocustRun,
    Mock,
    background,
    free_port,
    locust_env,
    start_background_mock,
    start_locust,
)
from tests.harness import Run, parse
from tests.mockthread import ThreadedMock

ROOT = Path(__file__).resolve().parents[1]
BOT = ROOT / "locustfiles" / "bot.yaml"
KEYED = {"NLX_API_KEY": TEST_KEY}
InProcess = Callable[..., Run]
# What the flows of the users below saw, for the test that ran them to read.
SEEN: list[Any] = []


@pytest.fixture
def flows(monkeypatch: pytest.MonkeyPatch, in_process: InProcess) -> Iterator[Callable[..., Run]]:
    """Run like `in_process` with `user_class` as the locustfile's user."""

    def run(user_class: type, cmdline: str, *, until: Callable[[Any], bool], timeout: float = 30) -> Run:
        monkeypatch.setattr(harness, "ChatUser", user_class)
        return in_process(cmdline, until=until, env=KEYED, timeout=timeout)

    SEEN.clear()
    yield run
    SEEN.clear()


def counted(name: str, at_least: int) -> Callable[[Any], bool]:
    def reached(environment: Any) -> bool:
        return int(environment.loadtest.metrics.counts[name]) >= at_least

    return reached


def conversations_of(mock: ThreadedMock) -> list[dict[str, Any]]:
    return [mock.conversation(cid) for cid in mock.get("/_mock/conversations")["ids"]]


# -- a flow, as a scenario ------------------------------------------------------------------------------


class BranchingUser(NLXChatUser):
    """Branches on the mock's reply (its words include "order" about one time in two: over 16
    conversations both branches are taken but about once in 10,000 runs)."""

    @task
    def support(self) -> None:
        with self.conversation("support", system="Be brief.") as chat:
            first = chat.say("Hello")
            chat.think(0.2)
            second = chat.say("About my order?" if "order" in first.text.lower() else "Something else.")
            SEEN.append((first, second))


def test_a_flow_is_measured_reported_and_branches_on_the_reply_served(
    thread_mock: Callable[..., ThreadedMock], flows: Callable[..., Run], tmp_path: Path
) -> None:
    mock = thread_mock(*FAST)
    # A locustfile with no conversations file beside it: its users play flows only.
    locustfile = tmp_path / "flows.py"
    run = flows(
        BranchingUser,
        f"-f {locustfile} --host {mock.url} {NLX} -u 8 -r 8 --think-time 0 --stop-timeout 30 --turn-log",
        until=counted("conversations_completed", 16),
    )
    assert run.exit_code == 0, run.output[-3000:]
    summary = run.summary()
    support = summary["by_scenario"]["support"]
    assert support["counts"]["conversations_completed"] >= 16
    assert support["counts"]["turns_ok"] == summary["counts"]["turns_ok"] == mock.stats()["turns_completed"]
    assert set(summary["by_turn"]) == {"1", "2"}
    # The pause of think() is in the conversation's time, and is no lateness (a busy machine may wake
    # a greenlet a few ms late, never the 200 ms of the pause).
    assert support["conversation_ms"]["min"] >= 200
    second_turns = [t for t in read_turns(run.latest("summary.json").resolve().parent) if t["turn"] == 2]
    assert second_turns and max(t["late_us"] for t in second_turns) < 100_000
    # Each turn is one Locust request, named by its place in the conversation.
    stats = run.environment.runner.stats
    assert stats.get("turn 2", "CHAT").num_requests == summary["by_turn"]["2"]["counts"]["turns"]
    # What say() returned is what the mock served, and the branch followed it.
    served = {c["turns"][0]["reply"]: c for c in conversations_of(mock) if len(c["turns"]) == 2}
    branches = set()
    for first, second in SEEN:
        assert isinstance(first, Reply) and first.ok and first.kind is None and first.turn == 1
        assert 20 <= first.ttft_ms <= first.latency_ms and 2 <= first.chunks <= 8
        conversation = served[first.text]
        assert conversation["turns"][1]["reply"] == second.text
        sent = conversation["turns"][1]["messages"]
        assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
        assert sent[2]["content"] == first.text  # the history carries the reply as streamed
        branches.add(sent[3]["content"])
        assert ("order" in first.text.lower()) == (sent[3]["content"] == "About my order?")
    assert len(branches) == 2, "the replies took one branch only"


class FailingUser(NLXChatUser):
    @task
    def failing(self) -> None:
        with self.conversation("failing") as chat:
            reply = chat.say("one")
            SEEN.append(reply)  # reached only with --on-turn-error continue
            chat.say("two")


@pytest.mark.parametrize("on_error", ["stop", "continue"])
def test_a_failed_turn_ends_the_conversation_or_is_returned_as_on_turn_error_says(
    on_error: str, thread_mock: Callable[..., ThreadedMock], flows: Callable[..., Run]
) -> None:
    mock = thread_mock(*FAST, "--fault", "http_500=100%")
    run = flows(
        FailingUser,
        f"--host {mock.url} {NLX} -u 2 -r 2 --think-time 0 --on-turn-error {on_error}",
        until=counted("conversations_failed", 4),
    )
    counts = run.summary()["by_scenario"]["failing"]["counts"]
    assert counts["conversations_completed"] == 0 and counts["conversations_failed"] >= 4
    if on_error == "stop":
        assert SEEN == [] and counts["turns_failed"] == counts["conversations_failed"]
    else:
        assert SEEN and all(not r.ok and r.kind == "http_500" and r.status == 500 for r in SEEN)
        assert counts["turns_failed"] >= 2 * counts["conversations_failed"]
    assert not run.environment.runner.exceptions  # ConversationOver never reaches Locust


class EndingsUser(NLXChatUser):
    """One conversation of each way to end but completing, in turn."""

    @task
    def endings(self) -> None:
        with self.conversation("checked") as chat:
            SEEN.append(chat.say("hi", expect={"contains": "no mock reply says this"}))
        with self.conversation("walked_away") as chat:
            chat.say("hi")
            chat.abandon()
            SEEN.append("after abandon")  # never reached
        with self.conversation("broken") as chat:
            chat.say("hi")
            raise KeyError("the flow's own bug")


def test_a_failed_check_an_abandon_and_an_error_of_the_flow_end_conversations(
    thread_mock: Callable[..., ThreadedMock], flows: Callable[..., Run]
) -> None:
    mock = thread_mock(*FAST)
    run = flows(
        EndingsUser,
        f"--host {mock.url} {NLX} -u 1 -r 1 --think-time 0 --on-turn-error continue",
        until=counted("conversations_failed", 4),
    )
    by_scenario = run.summary()["by_scenario"]
    checked = by_scenario["checked"]
    assert checked["counts"]["turns_failed"] == checked["counts"]["conversations_failed"] >= 2
    assert checked["errors"] == {"assertion": checked["counts"]["turns_failed"]}
    assert "reply does not contain 'no mock reply says this'" in checked["examples"]["assertion"]
    assert all(not r.ok and r.kind == "assertion" and r.text for r in SEEN)  # the reply came all the same
    walked = by_scenario["walked_away"]["counts"]
    assert walked["conversations_abandoned"] >= 2 and walked["turns_failed"] == 0
    assert by_scenario["broken"]["counts"]["conversations_failed"] >= 1
    # The flow's own error goes to Locust, as any task's does.
    assert any("KeyError" in key for key in map(str, run.environment.runner.exceptions.values()))


# -- mixing flows and the conversations file -----------------------------------------------------------


class MixedUser(NLXChatUser):
    tasks = {NLXChatUser.scripted_conversation: 1}

    @task
    def flow(self) -> None:
        with self.conversation("flow") as chat:
            chat.say("hello")


class ScriptsUser(NLXChatUser):
    pass


class FlowsUser(NLXChatUser):
    @task
    def flow(self) -> None:
        pass


def test_what_users_play() -> None:
    assert ScriptsUser.tasks == [NLXChatUser.scripted_conversation]
    assert plays([ScriptsUser]) == Plays(scripts=True, flows=False)
    assert plays([FlowsUser]) == Plays(scripts=False, flows=True)
    assert plays([MixedUser]) == Plays(scripts=True, flows=True)
    assert plays([ScriptsUser, FlowsUser]) == Plays(scripts=True, flows=True)
    assert NLXChatUser.tasks == []  # the abstract base plays nothing itself


def test_a_user_class_mixes_flows_and_scenarios(
    thread_mock: Callable[..., ThreadedMock], flows: Callable[..., Run], tmp_path: Path
) -> None:
    mock = thread_mock(*FAST)
    conversations = tmp_path / "c.yaml"
    conversations.write_text("scenarios:\n  - name: scripted\n    turns: [one, two]\n")
    run = flows(
        MixedUser,
        f"--host {mock.url} {NLX} -u 4 -r 4 --think-time 0 --conversations {conversations}",
        until=lambda env: all(
            env.loadtest.metrics.counts[f"conversations_completed{{scenario={name}}}"] >= 2
            for name in ("scripted", "flow")
        ),
    )
    assert run.exit_code == 0, run.output[-3000:]
    assert {"scripted", "flow"} <= set(run.summary()["by_scenario"])


def _settings_error(args: str, wanted: Plays) -> str:
    events = Events()
    from loadtest.plugin import register

    register(events)
    options = parse(events, shlex.split(args))
    try:
        from_options(options, "http://127.0.0.1:9", uses_mock=True, plays=wanted)
    except ConfigError as exc:
        return str(exc)
    return ""


def test_only_users_that_play_the_file_need_it(tmp_path: Path) -> None:
    locustfile = f"-f {tmp_path / 'flows.py'}"
    flows_only, scripts = Plays(scripts=False, flows=True), Plays(scripts=True, flows=False)
    assert _settings_error(locustfile, flows_only) == ""
    assert _settings_error(locustfile, scripts) == (
        f"{tmp_path / 'conversations.yaml'}: conversations file not found (set --conversations PATH)"
    )
    # A file named on the command line must be there, whoever plays it.
    named = f"{locustfile} --conversations {tmp_path / 'named.yaml'}"
    assert "named.yaml: conversations file not found" in _settings_error(named, flows_only)
    # Flows name their conversations as they run: a threshold may name one the file lacks.
    scoped = f"{locustfile} --threshold 'ttft{{scenario=order_status}}.p95<1s'"
    assert _settings_error(scoped, flows_only) == ""


def load_locustfile(path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A locustfile's module, its `register(events)` given events of its own (not Locust's, which
    every in-process run of this process would otherwise carry)."""
    spec = importlib.util.spec_from_file_location(f"locustfile_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with monkeypatch.context() as patch:
        patch.setattr(locust, "events", Events())
        spec.loader.exec_module(module)
    return module


def test_the_custom_example_takes_both_branches_against_the_bot(
    monkeypatch: pytest.MonkeyPatch, thread_mock: Callable[..., ThreadedMock], flows: Callable[..., Run]
) -> None:
    locustfile = ROOT / "locustfiles" / "custom.py"
    custom = load_locustfile(locustfile, monkeypatch)
    assert plays([custom.ShopUser]) == Plays(scripts=False, flows=True)
    mock = thread_mock("--bot", str(BOT), *FAST)
    run = flows(
        custom.ShopUser,
        f"-f {locustfile} --host {mock.url} {NLX} -u 8 -r 8 --think-time 0",
        until=lambda env: (
            counted("conversations_completed{scenario=order_status}", 16)(env)
            and counted("conversations_completed{scenario=booking}", 2)(env)
        ),
    )
    assert run.exit_code == 0, run.output[-3000:]
    summary = run.summary()
    assert summary["counts"]["turns_failed"] == 0  # the bot's answers met every expect
    order, booking = summary["by_scenario"]["order_status"], summary["by_scenario"]["booking"]
    assert order["turn_ms"]["count"] == order["counts"]["turns_ok"] >= 48
    assert booking["conversation_ms"]["min"] >= 1000  # its think(1.0)
    assert {"1", "2", "3"} <= set(summary["by_turn"])
    asked = set()
    for conversation in conversations_of(mock):
        turns = conversation["turns"]
        if turns[0]["messages"][-1]["content"] != "Hi, where is my order?" or len(turns) < 2:
            continue
        question = turns[0]["reply"].endswith("What is your order number?")
        assert turns[1]["messages"][-1]["content"].startswith("It's ") and (
            turns[1]["messages"][-1]["content"][5:10].isdigit() == question
        )
        asked.add(question)
    assert asked == {True, False}


# -- one real run: flows and reply_is scenarios in one user class, a master and two workers --------------

MIXED_LOCUSTFILE = """\
from locust import events, task

from loadtest.plugin import NLXChatUser, register

register(events)


class MixedUser(NLXChatUser):
    tasks = {NLXChatUser.scripted_conversation: 1}

    @task
    def order_flow(self):
        with self.conversation("order_flow") as chat:
            reply = chat.say("Hi, where is my order? (flow)")
            if "order number" in reply.text.lower():
                chat.say(f"It's {self.rng.randint(10000, 99999)}.", expect={"contains": "ships"})
            else:
                chat.say("It's the running shoes.")
"""
MIXED_CONVERSATIONS = """\
scenarios:
  - name: order_yaml
    turns:
      - "Hi, where is my order? (yaml)"
      - reply_is:
          - {contains: "order number", user: "It's {{number: 10000-99999}}.", expect: {contains: ships}}
          - {default: "It's the running shoes."}
"""


@dataclass
class MixedRun(LocustRun):
    served: list[dict[str, Any]]  # every conversation the mock received


@background
def mixed_processes_run(folder: Path) -> Finish:
    """`--processes 2` of a locustfile whose one user class plays a flow and a reply_is scenario,
    against a mock playing locustfiles/bot.yaml (it asks for the order number half of the time)."""
    folder.mkdir(parents=True, exist_ok=True)
    locustfile = folder / "mixed.py"
    locustfile.write_text(MIXED_LOCUSTFILE)
    (folder / "conversations.yaml").write_text(MIXED_CONVERSATIONS)
    mock = start_background_mock("--bot", str(BOT), *FAST)
    port = free_port()  # not Locust's 5557: other runs of the session have masters too
    args = f"--processes 2 --master-bind-port {port} --master-port {port} -u 4 -r 4 -t 3s --think-time 0"
    args += f" --stop-timeout 30 --host {mock.url} {NLX}"
    run = start_locust(shlex.split(args), folder, env=locust_env(NLX_API_KEY=TEST_KEY), locustfile=locustfile)

    def finish() -> MixedRun:
        try:
            done = run()
            served = served_conversations(mock)
        finally:
            mock.process.stop()
        return MixedRun(done.returncode, done.stdout, done.stderr, done.report_dir, served)

    return finish


def served_conversations(mock: Mock) -> list[dict[str, Any]]:
    ids = httpx.get(f"{mock.url}/_mock/conversations", timeout=10).json()["ids"]
    return [mock.conversation(cid) for cid in ids]


def test_flows_and_scenarios_mix_across_worker_processes(mixed_processes_run: MixedRun) -> None:
    run = mixed_processes_run
    summary = run.summary()
    # On a loaded machine Locust can mark a worker missing at the end of so short a run, which the run
    # reports as incomplete (exit 5, a known race, see the README's reliability notes); anything else
    # is a failure of the mix.
    reasons = {reason["kind"] for reason in summary["reasons"]}
    assert run.returncode == 0 or (run.returncode == 5 and reasons == {"workers_lost"}), run.output[-3000:]
    assert summary["run"]["workers"] == 2
    assert summary["counts"]["turns_failed"] == 0  # every answer to "order number" got "ships"
    for name in ("order_flow", "order_yaml"):
        entry = summary["by_scenario"][name]
        assert entry["counts"]["conversations_completed"] > 0 and entry["turn_ms"]["count"] > 0
    assert set(summary["by_turn"]) == {"1", "2"}
    # Each flow took the branch the reply it was served asked for, and both branches were taken.
    branches: dict[str, set[bool]] = {"flow": set(), "yaml": set()}
    for conversation in run.served:
        turns = conversation["turns"]
        if len(turns) != 2 or not turns[1]["delivered"]:
            continue
        origin = "flow" if turns[0]["messages"][-1]["content"].endswith("(flow)") else "yaml"
        asked = "order number" in turns[0]["reply"].lower()
        answer = turns[1]["messages"][-1]["content"]
        assert (re.fullmatch(r"It's \d{5}\.", answer) is not None) == asked, (turns[0]["reply"], answer)
        branches[origin].add(asked)
    assert branches == {"flow": {True, False}, "yaml": {True, False}}
