"""`loadtest conversations check FILE [--render N]`: a file checked without a run, and what it sends."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.cli import main
from loadtest.conversation import forget_loaded

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "locustfiles"
PROG = "loadtest conversations check"

ORDERS = """\
variables:
  city: [Paris, Lyon]
scenarios:
  - name: order
    system: "Customer in {{city}}"
    turns:
      - "Order {{order = number: 10000-99999}}"
      - "Line one about {{order}}\\nline two"
"""


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    forget_loaded()


def _check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["conversations", "check", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("name", "summary"),
    [
        ("conversations.yaml", "ok: 4 scenarios, 10 turns, 0 transcripts"),
        ("transcripts.jsonl", "ok: 3 scenarios, 12 turns, 5 transcripts"),
    ],
)
def test_a_good_file_is_one_line_and_exit_0(
    capsys: pytest.CaptureFixture[str], name: str, summary: str
) -> None:
    code, out, err = _check(capsys, str(SAMPLES / name))
    assert (code, out, err) == (0, f"{SAMPLES / name}: {summary}\n", "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "scenarios:\n  - name: a\n    turns: [yes]\n",
            "c.yaml:3: scenario 'a' turn 1 must be a non-empty string",
        ),
        (
            "scenarios:\n  - name: a\n    weight: .nan\n    turns: [hi]\n",
            "c.yaml:3: scenario 'a' weight must be",
        ),
        (
            "scenarios:\n  - name: a\n    turns: ['{{order}}']\n",
            "c.yaml:3: scenario 'a' turn 1: unknown variable",
        ),
    ],
)
def test_a_bad_file_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    code, out, err = _check(capsys, str(path), "--render", "2")
    assert (code, out) == (2, "")
    assert err.startswith(f"{PROG}: error: {tmp_path}/{expected}")
    assert err.count("\n") == 1


def test_a_file_that_is_not_utf8_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes('{"name": "a", "turns": ["caf\xe9"]}\n'.encode("cp1252"))
    code, _, err = _check(capsys, str(path))
    assert (code, err) == (2, f"{PROG}: error: {path}:1: not UTF-8 (byte 0xE9): save the file as UTF-8\n")


def test_render_shows_what_each_conversation_sends(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(ORDERS)
    code, out, err = _check(capsys, str(path), "--render", "3")
    assert (code, err) == (0, "")
    summary, *conversations = out.split("\n\n")
    assert summary == f"{path}: ok: 1 scenario, 2 turns, 0 transcripts"
    assert len(conversations) == 3
    for text in conversations:
        match = re.fullmatch(
            r"--- conversation \d: order\n"
            r"system: Customer in (Paris|Lyon)\n"
            r"user: Order (\d{5})\n"
            r"user: Line one about (\d{5})\n"
            r"  line two\n?",
            text,
        )
        assert match is not None, text
        assert match[2] == match[3]


def test_render_with_a_seed_is_the_same_each_time(capsys: pytest.CaptureFixture[str]) -> None:
    sample = str(SAMPLES / "conversations.yaml")
    outputs = {_check(capsys, sample, "--render", "5", "--seed", "7")[1] for _ in range(2)}
    assert len(outputs) == 1
    (out,) = outputs
    assert out.count("--- conversation") == 5 and "{{" not in out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), "loadtest conversations: error: the following arguments are required: check"),
        (("lint",), "loadtest conversations: error: argument check: invalid choice: 'lint'"),
        (("check",), f"{PROG}: error: the following arguments are required: file"),
        (("check", "c.yaml", "--render", "-1"), f"{PROG}: error: --render -1: give a number"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], expected: str
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["conversations", *args])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.startswith(expected) and err.endswith("--help)\n") and err.count("\n") == 1


def test_the_command_is_listed_and_imports_no_locust() -> None:
    code = (
        "import sys\n"
        "from loadtest.cli import main\n"
        "assert main(['--help']) == 0\n"
        f"assert main(['conversations', 'check', {str(SAMPLES / 'conversations.yaml')!r}]) == 0\n"
        "print(sorted(m for m in ('gevent', 'locust', 'httpx') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "conversations check FILE [--render N]" in out
    assert out.rstrip().endswith("[]")
