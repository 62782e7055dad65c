"""Stages of a ramp, `--stages "1m:10,5m:50,1m:0"`: parsed without importing Locust (see shapes.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from loadtest.errors import ConfigError

# Locust's run-time forms (20, 20s, 3m, 1h30m); importing Locust here would monkey-patch the importer.
_TIMESPAN = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s?)?$")


def parse_timespan(text: str) -> int:
    match = _TIMESPAN.match(text)
    if not text or match is None:
        raise ValueError(text)
    return sum(int(match.group(k) or 0) * f for k, f in (("h", 3600), ("m", 60), ("s", 1)))


@dataclass(frozen=True, slots=True)
class Stage:
    seconds: float
    users: int


def parse_stages(text: str) -> list[Stage]:
    stages = []
    for part in (p.strip() for p in str(text).split(",")):
        duration, sep, users = part.partition(":")
        try:
            if not sep:
                raise ValueError
            seconds, count = float(parse_timespan(duration.strip())), int(users.strip())
        except ValueError:
            raise ConfigError(
                f"--stages {text!r}: stage {part!r} is not DURATION:USERS: "
                "write e.g. --stages 1m:10,5m:50,1m:0"
            ) from None
        if seconds <= 0 or count < 0:
            raise ConfigError(f"--stages {text!r}: stage {part!r} needs a duration > 0 and users >= 0")
        stages.append(Stage(seconds, count))
    if not stages:
        raise ConfigError("--stages is empty: write e.g. --stages 1m:10,5m:50,1m:0")
    return stages
