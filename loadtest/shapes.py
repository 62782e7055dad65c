"""Ramp shapes for Locust's LoadTestShape: `--stages "1m:10,5m:50,1m:0"`.

Each stage is `DURATION:USERS`: over DURATION the user count moves to USERS, spawning (or stopping)
users at the rate that gets there by the end of the stage; after the last stage the run ends.
Durations take Locust's forms (`30s`, `5m`, `1h30m`). Use it from a locustfile next to the user class:

    from loadtest.shapes import StagesShape

    class Ramp(StagesShape):
        pass
"""

from __future__ import annotations

from locust import LoadTestShape

from loadtest.errors import ConfigError
from loadtest.options import STAGES
from loadtest.stages import Stage


class StagesShape(LoadTestShape):
    """Users ramp through the stages of `--stages`; the run ends after the last one."""

    abstract = True

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._stages: tuple[Stage, ...] | None = None

    def stages(self) -> tuple[Stage, ...]:
        if self._stages is None:
            options = self.runner.environment.parsed_options if self.runner is not None else None
            stages = STAGES.read(options)
            if not stages:
                raise ConfigError(
                    "this locustfile ramps by stages: pass --stages, e.g. --stages 1m:10,5m:50,1m:0"
                )
            self._stages = stages
        return self._stages

    def tick(self) -> tuple[int, float] | None:
        elapsed = self.get_run_time()  # type: ignore[no-untyped-call]
        start_users = 0
        for stage in self.stages():
            if elapsed < stage.seconds:
                rate = max(abs(stage.users - start_users) / stage.seconds, 1.0)
                return stage.users, rate
            elapsed -= stage.seconds
            start_users = stage.users
        return None
