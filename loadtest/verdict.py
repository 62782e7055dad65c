"""The one verdict of a run, worked out once from its summary: every output shows this, and the exit
code comes from it.

- `pass`: every threshold held (or, without thresholds, no turn failed).
- `fail`: a reason below; each reason gets its own line in the console and summary.md and its own
  failing JUnit case. A capacity search below `--min-capacity` is one.
- `incomplete`: the run was cut before its planned end (a signal, the web UI's Stop) or the data of a
  worker was lost.
- `empty`: no turn finished, so there is nothing to judge.

A failed threshold outranks an incomplete run (what was measured already fails), and an empty run
outranks everything (thresholds without data say nothing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from loadtest.report.schema import Reason, count_of, format_observed, number


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCOMPLETE = "incomplete"
    EMPTY = "empty"


VERDICTS = tuple(Verdict)


class StoppedBy(StrEnum):
    """What ended a run (`run.stopped_by`)."""

    TIME = "time"  # -t, or the end of --stages: as planned
    SIGNAL = "signal"  # Ctrl-C or SIGTERM
    THRESHOLD_ABORT = "threshold_abort"  # --threshold-abort
    UI = "ui"  # the web UI's Stop button
    WORKERS_LOST = "workers_lost"  # a master whose workers all went missing
    REFUSED = "refused"  # every first turn refused: fail fast
    CAPACITY_SEARCH = "capacity_search"


STOPPED_BY = tuple(StoppedBy)


class ReasonKind(StrEnum):
    THRESHOLD = "threshold"
    FAILED_TURNS = "failed_turns"  # only when no threshold was set
    STRICT_CLIENT = "strict_client"
    MIN_CAPACITY = "min_capacity"  # a capacity search found less than --min-capacity
    REFUSED = "refused"
    INTERRUPTED = "interrupted"
    WORKERS_LOST = "workers_lost"
    EMPTY = "empty"


FAILING = frozenset(
    {
        ReasonKind.THRESHOLD,
        ReasonKind.FAILED_TURNS,
        ReasonKind.STRICT_CLIENT,
        ReasonKind.MIN_CAPACITY,
        ReasonKind.REFUSED,
    }
)
# The reasons that fail a run with EXIT_FAIL.
FAILING_WITH_EXIT_FAIL = frozenset({ReasonKind.THRESHOLD, ReasonKind.STRICT_CLIENT, ReasonKind.MIN_CAPACITY})
INCOMPLETE = frozenset({ReasonKind.INTERRUPTED, ReasonKind.WORKERS_LOST})


@dataclass(frozen=True, slots=True)
class ExitCode:
    code: int
    name: str
    meaning: str


EXIT_PASS = ExitCode(0, "pass", "every threshold held; without thresholds, no turn failed")
EXIT_FAILED_TURNS = ExitCode(
    1, "failed turns", "turns failed and no threshold was set (Locust's `--exit-code-on-error` changes it)"
)
EXIT_BAD_INPUT = ExitCode(
    2,
    "bad input or refused",
    "an option or a file is wrong (one line names the fix, before any load is sent), "
    "or every first turn was refused with the same 401, 403 or 404 (`--no-fail-fast` turns that off)",
)
EXIT_FAIL = ExitCode(
    3,
    "fail",
    "a threshold failed, `--strict-client` found the client was the bottleneck, or a capacity search "
    "found less than `--min-capacity`",
)
EXIT_REGRESSION = ExitCode(4, "regression", "`loadtest compare` found a regression")
EXIT_INCOMPLETE = ExitCode(
    5,
    "incomplete or empty",
    "the run was cut before its planned end (a signal, the web UI), the data of a worker was lost, "
    "or no turn finished",
)
EXIT_CODES = (EXIT_PASS, EXIT_FAILED_TURNS, EXIT_BAD_INPUT, EXIT_FAIL, EXIT_REGRESSION, EXIT_INCOMPLETE)


@dataclass(frozen=True, slots=True)
class Judgement:
    verdict: Verdict
    reasons: list[Reason]
    exit_code: int


def judge(
    summary: Mapping[str, Any], *, strict_client: bool = False, exit_code_on_error: int = 1
) -> Judgement:
    """The verdict of a summary that holds its `thresholds`, `counts`, `run` and `client_health`."""
    reasons = _reasons(summary, strict_client)
    kinds = {ReasonKind(r["kind"]) for r in reasons}
    if ReasonKind.EMPTY in kinds:
        return Judgement(Verdict.EMPTY, reasons, EXIT_INCOMPLETE.code)
    if ReasonKind.REFUSED in kinds:
        return Judgement(Verdict.FAIL, reasons, EXIT_BAD_INPUT.code)
    if kinds & FAILING_WITH_EXIT_FAIL:
        return Judgement(Verdict.FAIL, reasons, EXIT_FAIL.code)
    if ReasonKind.FAILED_TURNS in kinds:
        return Judgement(Verdict.FAIL, reasons, exit_code_on_error)
    if kinds & INCOMPLETE:
        return Judgement(Verdict.INCOMPLETE, reasons, EXIT_INCOMPLETE.code)
    return Judgement(Verdict.PASS, reasons, EXIT_PASS.code)


def apply(summary: Any, *, strict_client: bool = False, exit_code_on_error: int = 1) -> Judgement:
    """Judge `summary` and write the judgement into it: `verdict`, `reasons`, `exit_code`."""
    judgement = judge(summary, strict_client=strict_client, exit_code_on_error=exit_code_on_error)
    summary["verdict"] = judgement.verdict.value
    summary["reasons"] = judgement.reasons
    summary["exit_code"] = judgement.exit_code
    return judgement


def _reasons(summary: Mapping[str, Any], strict_client: bool) -> list[Reason]:
    run: Mapping[str, Any] = summary.get("run") or {}
    thresholds: Sequence[Mapping[str, Any]] = summary.get("thresholds") or []
    reasons: list[Reason] = []
    finished = (count_of(summary, "turns_ok") or 0) + (count_of(summary, "turns_failed") or 0)
    if not finished:
        reasons.append(_reason(ReasonKind.EMPTY, _empty_text(summary)))
    stopped_by = run.get("stopped_by")
    if stopped_by == StoppedBy.REFUSED:
        reasons.append(_reason(ReasonKind.REFUSED, str(run.get("refused") or "every first turn was refused")))
    for t in thresholds:
        if not t.get("passed"):
            observed = format_observed(number(t.get("observed")), str(t.get("unit", "ms")))
            reasons.append(_reason(ReasonKind.THRESHOLD, f"{t.get('expr')} (observed {observed})"))
    failed = int(count_of(summary, "turns_failed") or 0)
    if failed and not thresholds and stopped_by != StoppedBy.REFUSED:
        reasons.append(_reason(ReasonKind.FAILED_TURNS, _failed_text(summary, failed, finished)))
    short = _short_of_capacity(summary.get("capacity"))
    if short:
        reasons.append(_reason(ReasonKind.MIN_CAPACITY, short))
    health: Mapping[str, Any] = summary.get("client_health") or {}
    if strict_client and health.get("bottleneck"):
        why = "; ".join(health.get("reasons") or [])
        reasons.append(_reason(ReasonKind.STRICT_CLIENT, f"the client was the bottleneck: {why}"))
    planned = number(run.get("planned_duration_s"))
    took = number(run.get("duration_s"))
    cut_short = planned is not None and (took is None or took < planned)
    if cut_short and stopped_by in (StoppedBy.SIGNAL, StoppedBy.UI, StoppedBy.WORKERS_LOST):
        reasons.append(_reason(ReasonKind.INTERRUPTED, interrupted_text(run)))
    lost = [
        f"{entry.get('id')} (lost after {_seconds(number(entry.get('lost_after_s')))})"
        for entry in run.get("workers_lost") or []
        if isinstance(entry, Mapping)
    ]
    lost += [f"{worker} (no final data)" for worker in run.get("workers_without_final_report") or []]
    if lost:
        reasons.append(
            _reason(
                ReasonKind.WORKERS_LOST,
                f"run incomplete: data from {len(lost)} worker{'s' if len(lost) > 1 else ''} lost: "
                + ", ".join(lost),
            )
        )
    return reasons


def _short_of_capacity(capacity: Any) -> str | None:
    """Why a capacity search falls short of `--min-capacity`, or None when it does not (or was not
    held to one)."""
    if not isinstance(capacity, Mapping):
        return None
    minimum = number(capacity.get("min_capacity"))
    if minimum is None:
        return None
    found = number(capacity.get("max_passing"))
    if found is not None and found >= minimum:
        return None
    unit = str(capacity.get("unit") or "")
    if found is None:
        return f"no load of the search held the thresholds: --min-capacity {minimum:g} {unit} not reached"
    return f"capacity {found:g} {unit} is below --min-capacity {minimum:g}"


def interrupted_text(run: Mapping[str, Any]) -> str:
    """`stopped by SIGINT after 5.1 s of 60 s planned`."""
    return (
        f"stopped by {_stopper(run)} after {_seconds(number(run.get('duration_s')))} "
        f"of {_seconds(number(run.get('planned_duration_s')))} planned"
    )


def stopped_text(run: Mapping[str, Any]) -> str | None:
    """One line on how the run ended, for the console and summary.md; None for an old summary."""
    stopped_by = run.get("stopped_by")
    if stopped_by is None:
        return None
    planned = number(run.get("planned_duration_s"))
    took = _seconds(number(run.get("duration_s")))
    if stopped_by == StoppedBy.TIME:
        return f"ran {took} as planned" if planned is not None else f"ran {took}"
    if stopped_by == StoppedBy.THRESHOLD_ABORT:
        return f"stopped after {took} by --threshold-abort: {run.get('aborted_by_threshold')}"
    if stopped_by == StoppedBy.REFUSED:
        return f"stopped after {took}: every first turn was refused"
    if stopped_by == StoppedBy.CAPACITY_SEARCH:
        return f"ran {took}: the capacity search ended"
    if planned is not None:
        return interrupted_text(run)
    return f"stopped by {_stopper(run)} after {took}"


def _stopper(run: Mapping[str, Any]) -> str:
    """Who stopped a run, in words: SIGINT, the web UI's Stop."""
    stopped_by = str(run.get("stopped_by"))
    if stopped_by == StoppedBy.SIGNAL:
        return str(run.get("signal") or "a signal")
    if stopped_by == StoppedBy.UI:
        return "the web UI's Stop"
    return stopped_by.replace("_", " ")


def _empty_text(summary: Mapping[str, Any]) -> str:
    cut = int(count_of(summary, "turns_cut") or 0)
    started = int(count_of(summary, "conversations_started") or 0)
    text = f"no turn finished ({started} conversations started, {cut} turns cut by the end of the run)"
    return text + ": run longer (-t), with more users or a shorter --think-time"


def _failed_text(summary: Mapping[str, Any], failed: int, finished: float) -> str:
    kinds = ", ".join(
        f"{e.get('kind')} {e.get('count')}" for e in (summary.get("errors") or []) if e.get("kind") != "cut"
    )
    text = f"{failed} of {int(finished)} turns failed" + (f" ({kinds})" if kinds else "")
    return text + "; set thresholds (such as error_rate<1%) to decide what may fail"


def _reason(kind: ReasonKind, text: str) -> Reason:
    return {"kind": kind.value, "text": text}


def _seconds(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:g} s" if value == int(value) else f"{value:.1f} s"


def exit_codes_markdown() -> str:
    """The README's exit-code table."""
    rows = ["| code | name | when |", "|---|---|---|"]
    rows += [f"| {e.code} | {e.name} | {e.meaning} |" for e in EXIT_CODES]
    return "\n".join(rows) + "\n"
