"""junit.xml: the verdict of a run as JUnit test cases, for CI test report views: a case per threshold,
and a failing case per other reason the run did not pass (failed turns, an interrupted run...)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from loadtest.report.schema import Reason, RunInfo, Summary, duration_s, format_observed
from loadtest.report.summary import run_verdict

SUITE = "loadtest thresholds"
CLASSNAME = "loadtest.thresholds"
REASON_CLASSNAME = "loadtest.verdict"
NO_THRESHOLDS = "run completed"

# Characters XML 1.0 cannot carry at all, even escaped.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def render_junit(summary: Summary) -> str:
    """One `<testsuite>`: a `<testcase>` per threshold of `summary["thresholds"]`, then a failing one
    per reason of the verdict that is not a threshold, named after its kind (`failed_turns`,
    `interrupted`...). A run that passed without thresholds gets one passing case, "run completed",
    so CI shows the run at all.
    """
    run: RunInfo = summary.get("run") or {}
    thresholds = summary.get("thresholds") or []
    verdict = run_verdict(summary)
    others = [r for r in verdict.reasons if r.get("kind") != "threshold"]
    failures = sum(1 for t in thresholds if not t.get("passed")) + len(others)
    suite = ET.Element(
        "testsuite",
        {
            "name": SUITE,
            "tests": str(max(len(thresholds) + len(others), 1)),
            "failures": str(failures),
            "errors": "0",
            "skipped": "0",
            "time": f"{duration_s(run) or 0.0:.3f}",
        },
    )
    if run.get("started"):
        suite.set("timestamp", str(run["started"]))
    properties = ET.SubElement(suite, "properties")
    facts = (("run.id", run.get("id")), ("host", run.get("host")), ("users", run.get("users")))
    for name, value in (*facts, ("verdict", verdict.verdict)):
        if value is not None:
            ET.SubElement(properties, "property", {"name": name, "value": _xml(str(value))})

    if not thresholds and not others:
        ET.SubElement(suite, "testcase", {"classname": CLASSNAME, "name": NO_THRESHOLDS, "time": "0"})
    for t in thresholds:
        expr = _xml(str(t.get("expr", "")))
        case = ET.SubElement(suite, "testcase", {"classname": CLASSNAME, "name": expr, "time": "0"})
        if not t.get("passed"):
            observed = t.get("observed")
            if observed is None:
                message = "no data"
            else:
                message = f"observed {format_observed(observed, str(t.get('unit', 'ms')))}, limit: {expr}"
            _fail(case, message, "threshold")
    for reason in others:
        _reason_case(suite, reason)
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def _reason_case(suite: ET.Element, reason: Reason) -> None:
    kind = _xml(str(reason.get("kind", "")))
    case = ET.SubElement(suite, "testcase", {"classname": REASON_CLASSNAME, "name": kind, "time": "0"})
    _fail(case, _xml(str(reason.get("text", ""))), kind)


def _fail(case: ET.Element, message: str, kind: str) -> None:
    failure = ET.SubElement(case, "failure", {"message": message, "type": kind})
    failure.text = message


def _xml(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)
