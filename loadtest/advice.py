"""Warnings about a run: options that have no effect, and a verdict that says less than it seems.

Each warning is one line that names the option and what to do. `start_warnings` looks at the options
before the load starts; `end_warnings` at the summary after it. The caller prints them once and keeps
them in summary.json's `warnings` and the reports. (The module is not named `warnings`, which would
shadow the standard library's.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loadtest import catalog, thresholds
from loadtest.options import NO_USAGE, THRESHOLD
from loadtest.report.schema import count_of, duration_s, number
from loadtest.settings import Settings

__all__ = ["end_warnings", "start_warnings"]

# The threshold the warnings suggest when no threshold checks failed turns.
ERROR_RATE_EXAMPLE = "error_rate<1%"
# Metrics made of the token counts a stream reports (`--api openai` without `--no-usage`).
USAGE_METRICS = (catalog.TPOT.key, catalog.OUTPUT_TPS.key)


def start_warnings(
    options: Any, settings: Settings, *, stages_shape: bool, run_time_s: float | None
) -> list[str]:
    """Options that will have no effect on this run, one line each.

    `options` is Locust's parsed options, `stages_shape` whether the locustfile's shape is loadtest's
    StagesShape, `run_time_s` the planned duration (-t, or the stages' total; None: until stopped).
    """
    warnings: list[str] = []
    if settings.stages is not None and not stages_shape:
        warnings.append(
            "--stages has no effect: this locustfile has no StagesShape; run locustfiles/ramp.py, "
            "or add a class deriving from loadtest.shapes.StagesShape to the locustfile"
        )
    warnings += _threshold_warnings(options, settings, run_time_s)
    warnings += _usage_warnings(settings)
    if settings.mock_options.strip() and not settings.uses_mock:
        warnings.append(
            "--mock-options has no effect with --host: the built-in mock is not started; "
            "leave out --host to run against the mock, or drop --mock-options"
        )
    return warnings


def end_warnings(summary: Mapping[str, Any], settings: Settings) -> list[str]:
    """What the verdict does not show, one line each: failed turns that no threshold checks, and an
    --threshold-abort that never armed because the run ended within its warm-up."""
    warnings: list[str] = []
    if settings.thresholds and not any(th.is_rate for th in settings.thresholds):
        failed = count_of(summary, "turns_failed") or 0
        done = failed + (count_of(summary, "turns_ok") or 0)
        if failed > 0:
            warnings.append(
                f"{failed:.0f} of {done:.0f} turns failed and no threshold checks errors: "
                f"add --threshold '{ERROR_RATE_EXAMPLE}'"
            )
    if _no_usage_came(summary, settings):
        warnings.append(
            "no turn's stream reported token usage (asked for with stream_options.include_usage): the run "
            "has no token figures, only chunks and characters; the server does not send usage in streams "
            f"(pass {NO_USAGE.flag} to stop asking)"
        )
    if _abort_never_armed(summary, settings):
        lasted = duration_s(_run(summary)) or 0.0
        warmup = _seconds(settings.threshold_warmup)
        warnings.append(
            f"the run lasted {_seconds(lasted)}, less than --threshold-warmup {warmup}: "
            "--threshold-abort never checked the thresholds; lower --threshold-warmup or run longer"
        )
    return warnings


def _threshold_warnings(options: Any, settings: Settings, run_time_s: float | None) -> list[str]:
    warnings: list[str] = []
    if _empty_threshold_given(options):
        warnings.append(
            "--threshold '' is empty and checks nothing: give a rule, e.g. --threshold 'ttft.p95<800ms', "
            "or leave the option out"
        )
    if settings.threshold_abort and not settings.thresholds:
        warnings.append(
            "--threshold-abort has no effect without a threshold: add one, e.g. --threshold 'ttft.p95<2s', "
            "or drop --threshold-abort"
        )
    elif settings.threshold_abort and run_time_s is not None and settings.threshold_warmup >= run_time_s:
        warnings.append(
            f"--threshold-warmup {_seconds(settings.threshold_warmup)} is not shorter than the run "
            f"({_seconds(run_time_s)}): --threshold-abort can never stop it; "
            "pass a shorter --threshold-warmup or a longer -t"
        )
    return warnings


def _usage_warnings(settings: Settings) -> list[str]:
    """--no-usage where it changes nothing, and token thresholds that can only fail with no data."""
    warnings: list[str] = []
    if not settings.usage and settings.api != "openai":
        warnings.append(f"{NO_USAGE.flag} has no effect with --api {settings.api}: drop it")
    if settings.api == "openai" and settings.usage:
        return warnings
    why = f"--api {settings.api} reports no token usage" if settings.api != "openai" else NO_USAGE.flag
    for th in settings.thresholds:
        if th.metric in USAGE_METRICS:
            warnings.append(
                f"--threshold '{th.expr}' needs token usage and can only fail with no data ({why}): "
                "drop it, or use --api openai without --no-usage"
            )
    return warnings


def _no_usage_came(summary: Mapping[str, Any], settings: Settings) -> bool:
    """An OpenAI run that asked for usage, had turns that succeeded, and got usage on none of them."""
    if settings.api != "openai" or not settings.usage:
        return False
    with_usage = count_of(summary, "turns_with_usage")
    return with_usage == 0 and (count_of(summary, "turns_ok") or 0) > 0


def _empty_threshold_given(options: Any) -> bool:
    """Whether --threshold (or locust.conf's `threshold`) was given a value with no rule in it.

    The web UI leaves a blank field as one empty string, not a list: that is no threshold given.
    """
    given = getattr(options, THRESHOLD.dest, None)
    return isinstance(given, list) and any(not thresholds.split(str(item)) for item in given)


def _abort_never_armed(summary: Mapping[str, Any], settings: Settings) -> bool:
    """A --threshold-abort run that ended within its warm-up, unless the planned duration already was
    (start_warnings said so before the run)."""
    if not (settings.threshold_abort and settings.thresholds):
        return False
    run = _run(summary)
    lasted = duration_s(run)
    planned = number(run.get("planned_duration_s"))
    if lasted is None or lasted >= settings.threshold_warmup:
        return False
    return planned is None or planned > settings.threshold_warmup


def _run(summary: Mapping[str, Any]) -> Mapping[str, Any]:
    run = summary.get("run")
    return run if isinstance(run, Mapping) else {}


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 10 else f"{value:.3g} s"
