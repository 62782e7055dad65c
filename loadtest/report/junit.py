"""junit.xml: the thresholds of a run as JUnit test cases, for CI test report views."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from loadtest.report.schema import RunInfo, Summary, duration_s, format_observed

SUITE = "loadtest thresholds"
CLASSNAME = "loadtest.thresholds"
NO_THRESHOLDS = "run completed"

# Characters XML 1.0 cannot carry at all, even escaped.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def render_junit(summary: Summary) -> str:
    """One `<testsuite>` with a `<testcase>` per threshold of `summary["thresholds"]`.

    A run without thresholds gets one passing case, "run completed", so CI shows the run at all.
    """
    run: RunInfo = summary.get("run") or {}
    thresholds = summary.get("thresholds") or []
    failures = sum(1 for t in thresholds if not t.get("passed"))
    suite = ET.Element(
        "testsuite",
        {
            "name": SUITE,
            "tests": str(max(len(thresholds), 1)),
            "failures": str(failures),
            "errors": "0",
            "skipped": "0",
            "time": f"{duration_s(run) or 0.0:.3f}",
        },
    )
    if run.get("started"):
        suite.set("timestamp", str(run["started"]))
    properties = ET.SubElement(suite, "properties")
    for name, value in (("run.id", run.get("id")), ("host", run.get("host")), ("users", run.get("users"))):
        if value is not None:
            ET.SubElement(properties, "property", {"name": name, "value": _xml(str(value))})

    if not thresholds:
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
            failure = ET.SubElement(case, "failure", {"message": message, "type": "threshold"})
            failure.text = message
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def _xml(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)
