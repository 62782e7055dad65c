from __future__ import annotations

import random
import statistics
from collections import Counter

import pytest

from loadtest.errors import ConfigError
from loadtest.pacing import (
    Exponential,
    Human,
    Pacing,
    Uniform,
    abandon_after,
    parse_abandon,
    parse_think_time,
)
from loadtest.shares import parse_share

N = 20_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", Uniform(0, 0)),
        ("3", Uniform(3, 3)),
        ("3s", Uniform(3, 3)),
        ("2-8", Uniform(2, 8)),
        ("0.5 - 1.5", Uniform(0.5, 1.5)),
        ("exp:5", Exponential(5)),
        ("exp: 0.25s", Exponential(0.25)),
        ("human", Human()),
        ("human:", Human()),
        ("HUMAN", Human()),
        ("human:read_wpm=240,type_cpm=200,floor=1,jitter=0.25,max=60", Human()),
        ("human: max=30, read_wpm=300", Human(read_wpm=300, cap=30)),
        ("human:jitter=0,floor=0", Human(jitter=0, floor=0)),
    ],
)
def test_think_time_forms(text: str, expected: Pacing) -> None:
    assert parse_think_time(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fast", "use 0, 3 (seconds), 2-8 (uniform), exp:5"),
        ("", "is not a duration"),
        ("-1", "is not a duration"),
        ("1-", "is not a duration"),
        ("8-2", "the range must go low-high, like 2-8"),
        ("exp", "exp needs a mean in seconds > 0"),
        ("exp:0", "exp needs a mean"),
        ("exp:1-2", "exp needs a mean"),
        ("human:speed=3", "unknown setting 'speed': use read_wpm, type_cpm, floor, jitter, max"),
        ("human:floor", "floor needs a number >= 0"),
        ("human:floor=-1", "floor needs a number >= 0"),
        ("human:floor=nan", "floor needs a number >= 0"),
        ("human:read_wpm=0", "read_wpm and type_cpm must be > 0"),
        ("human:jitter=1.5", "jitter must be at most 1"),
        ("human:floor=5,max=2", "max must be at least floor (5)"),
    ],
)
def test_bad_think_time_is_one_line_naming_the_option(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_think_time(text)
    message = str(info.value)
    assert message.startswith("--think-time ")
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize(("low", "high"), [(0, 0), (3, 3), (2, 8), (0.5, 1.5)])
def test_uniform_stays_within_bounds(low: float, high: float) -> None:
    pacing = Uniform(low, high)
    rng = random.Random(3)
    samples = [pacing.before_turn(rng, "reply", "next") for _ in range(N)]
    samples += [pacing.between_conversations(rng) for _ in range(N)]
    assert all(low <= s <= high for s in samples)
    assert statistics.fmean(samples) == pytest.approx((low + high) / 2, abs=0.05)


@pytest.mark.parametrize("pacing", [Uniform(2, 8), Exponential(5)])
def test_fixed_models_do_not_wait_before_the_first_turn(pacing: Pacing) -> None:
    # The wait between conversations comes before it already.
    assert pacing.before_turn(random.Random(0), None, "a long first message " * 10) == 0.0


def test_exponential_mean_and_spread() -> None:
    pacing = Exponential(5)
    rng = random.Random(11)
    samples = [pacing.before_turn(rng, "", "x") for _ in range(N)]
    assert min(samples) >= 0
    assert statistics.fmean(samples) == pytest.approx(5, rel=0.03)
    assert statistics.median(samples) == pytest.approx(5 * 0.6931, rel=0.05)
    between = [pacing.between_conversations(rng) for _ in range(N)]
    assert statistics.fmean(between) == pytest.approx(5, rel=0.03)


def test_human_reads_the_reply_and_types_the_message() -> None:
    human = Human(read_wpm=120, type_cpm=60, floor=0, jitter=0, cap=1000)
    rng = random.Random(0)
    assert human.before_turn(rng, None, "x" * 10) == pytest.approx(10.0)  # first turn: typing only
    assert human.before_turn(rng, "one two three four", "") == pytest.approx(2.0)  # 4 words at 2/s
    assert human.before_turn(rng, "one two\u2028three  four\n", "ab") == pytest.approx(4.0)
    # proportional: twice the words, twice the reading; twice the characters, twice the typing
    assert human.read_seconds("w " * 200) == pytest.approx(2 * human.read_seconds("w " * 100))
    assert human.type_seconds("c" * 80) == pytest.approx(2 * human.type_seconds("c" * 40))


def test_human_defaults() -> None:
    human = Human(jitter=0)
    reply = " ".join(["word"] * 240)  # one minute at 240 wpm
    message = "c" * 100  # half a minute at 200 cpm
    assert human.before_turn(random.Random(0), reply, message) == pytest.approx(60.0)  # 90 s, capped
    assert human.before_turn(random.Random(0), reply[:599], message) == pytest.approx(60.0)
    assert human.before_turn(random.Random(0), " ".join(["w"] * 40), "c" * 20) == pytest.approx(16.0)


@pytest.mark.parametrize("reply", [None, "", "ok"])
def test_human_floor(reply: str | None) -> None:
    human = Human(floor=2, jitter=0)
    assert human.before_turn(random.Random(0), reply, "") == 2.0


def test_human_cap() -> None:
    human = Human(cap=5, jitter=0.5)
    rng = random.Random(2)
    assert all(human.before_turn(rng, "word " * 1000, "x" * 500) == 5.0 for _ in range(100))


def test_human_jitter_bounds_and_mean() -> None:
    human = Human(read_wpm=60, type_cpm=600, floor=0, jitter=0.25, cap=1000)
    rng = random.Random(9)
    base = 10.0  # 5 words read at 1/s, 50 characters typed at 10/s
    samples = [human.before_turn(rng, "a b c d e", "x" * 50) for _ in range(N)]
    assert base * 0.75 <= min(samples) < base * 0.76
    assert base * 1.24 < max(samples) <= base * 1.25
    assert statistics.fmean(samples) == pytest.approx(base, rel=0.01)


def test_human_between_conversations() -> None:
    rng = random.Random(4)
    samples = [Human(floor=2).between_conversations(rng) for _ in range(N)]
    assert all(2 <= s <= 6 for s in samples)
    assert statistics.fmean(samples) == pytest.approx(4, rel=0.02)
    assert Human(floor=0).between_conversations(rng) == 0
    assert Human(floor=10, cap=12).between_conversations(rng) <= 12


@pytest.mark.parametrize(
    ("text", "share"),
    [("10%", 0.1), ("0", 0.0), ("0%", 0.0), ("0.25", 0.25), (" 12.5 % ", 0.125), ("100%", 1.0), ("1", 1.0)],
)
def test_parse_abandon(text: str, share: float) -> None:
    assert parse_abandon(text) == pytest.approx(share)


def test_parse_abandon_takes_numbers() -> None:
    assert parse_abandon(0.3) == 0.3


@pytest.mark.parametrize("text", ["10%", ".5", "5e-2", "12.5 %", "1", 0.25, "1e2%"])
def test_abandon_takes_what_every_share_option_takes(text: str | float) -> None:
    # One rule for every "10% or 0.1" option (loadtest.shares).
    assert parse_abandon(text) == parse_share(text)


@pytest.mark.parametrize("text", ["", "ten", "-5%", "150%", "1.5", "10%%", "nan", "inf", "5 0"])
def test_bad_abandon_names_the_option(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^--abandon .* use a percentage like 10%"):
        parse_abandon(text)


@pytest.mark.parametrize(("share", "n_turns"), [(0.1, 5), (0.3, 2), (0.5, 8)])
def test_abandonment_share_and_turns(share: float, n_turns: int) -> None:
    rng = random.Random(21)
    outcomes = [abandon_after(rng, share, n_turns) for _ in range(N)]
    stopped = [o for o in outcomes if o is not None]
    assert len(stopped) / N == pytest.approx(share, abs=0.015)
    counts = Counter(stopped)
    assert set(counts) == set(range(1, n_turns))
    expected = len(stopped) / (n_turns - 1)
    assert all(abs(c - expected) < 0.15 * expected for c in counts.values())


@pytest.mark.parametrize(("share", "n_turns"), [(1.0, 1), (0.5, 0), (0.0, 5)])
def test_never_abandoned(share: float, n_turns: int) -> None:
    rng = random.Random(0)
    assert all(abandon_after(rng, share, n_turns) is None for _ in range(1000))


def test_always_abandoned() -> None:
    rng = random.Random(0)
    assert all(abandon_after(rng, 1.0, 3) in (1, 2) for _ in range(1000))
