from __future__ import annotations

import random
import statistics

import pytest

from loadtest.arrivals import ArrivalRate, Schedule
from loadtest.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "rate", "process"),
    [
        ("5", 5.0, "poisson"),
        ("poisson:2.5", 2.5, "poisson"),
        ("constant:0.5", 0.5, "constant"),
        ("10/s", 10, "poisson"),
    ],
)
def test_parse(text: str, rate: float, process: str) -> None:
    assert ArrivalRate.parse(text) == ArrivalRate(rate, process)


@pytest.mark.parametrize("text", ["0", "-1", "fast", "uniform:5", ""])
def test_bad_rate_names_the_option(text: str) -> None:
    with pytest.raises(ConfigError, match="--arrival-rate"):
        ArrivalRate.parse(text)


def test_poisson_gaps_are_exponential_with_the_right_mean() -> None:
    schedule = Schedule(ArrivalRate(20.0), 0, random.Random(11))
    times = [next(schedule) for _ in range(40_000)]
    gaps = [b - a for a, b in zip([0, *times], times, strict=False)]
    mean = statistics.fmean(gaps) / 1e9
    assert abs(mean - 0.05) < 0.05 * 0.02  # within 2 %
    # exponential: standard deviation equals the mean
    assert abs(statistics.pstdev(gaps) / 1e9 - 0.05) < 0.05 * 0.03
    assert times == sorted(times)


def test_constant_arrivals_never_drift() -> None:
    schedule = Schedule(ArrivalRate(3.0, "constant"), 1_000, random.Random(1))
    times = [next(schedule) for _ in range(3000)]
    assert abs(times[-1] - (1_000 + 1000 * 1_000_000_000)) <= 3000  # rounding of 1/3 s, no drift


def test_share_splits_the_rate_across_workers() -> None:
    assert ArrivalRate(9.0, "constant").share(3) == ArrivalRate(3.0, "constant")
