"""A self-contained HTML page of a run's summary (tables only; charts come with the full report)."""

from __future__ import annotations

from html import escape
from typing import Any

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:60rem;color:#222}
table{border-collapse:collapse;margin:1rem 0}
td,th{padding:.3rem .7rem;border-bottom:1px solid #ddd;text-align:right}
th:first-child,td:first-child{text-align:left}h1{font-size:1.4rem}code{background:#f4f4f4;padding:0 .2rem}
"""

_STATS = ("count", "min", "mean", "p50", "p90", "p95", "p99", "p999", "max")
_LABELS = {"ttft_ms": "Time to first token", "turn_ms": "Turn latency", "itl_ms": "Inter-chunk gap"}


def render_html(summary: dict[str, Any]) -> str:
    run = summary["run"]
    head = "".join(f"<th>{escape(s)}</th>" for s in _STATS)
    rows = []
    for key, label in _LABELS.items():
        stats = summary["metrics"][key]
        cells = "".join(f"<td>{_cell(stats.get(s))}</td>" for s in _STATS)
        rows.append(f"<tr><td>{escape(label)} (ms)</td>{cells}</tr>")
    facts = "".join(f"<tr><td>{escape(str(k))}</td><td>{escape(str(v))}</td></tr>" for k, v in run.items())
    counts = "".join(f"<tr><td>{escape(k)}</td><td>{v}</td></tr>" for k, v in summary["counts"].items())
    errors = (
        "".join(
            f"<tr><td>{escape(e['kind'])}</td><td>{e['count']}</td><td><code>{escape(e['example'])}</code></td></tr>"
            for e in summary["errors"]
        )
        or "<tr><td>none</td><td></td><td></td></tr>"
    )
    protocol = (
        "".join(f"<tr><td>{escape(k)}</td><td>{v}</td></tr>" for k, v in summary.get("protocol", {}).items())
        or "<tr><td>none</td><td></td></tr>"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>loadtest report</title><style>{_STYLE}</style></head>
<body>
<h1>Conversation load test</h1>
<h2>Latency</h2><table><tr><th>metric</th>{head}</tr>{"".join(rows)}</table>
<h2>Run</h2><table>{facts}</table>
<h2>Counts</h2><table>{counts}</table>
<h2>Errors</h2><table><tr><th>kind</th><th>count</th><th>example</th></tr>{errors}</table>
<h2>Stream protocol</h2><table>{protocol}</table>
</body></html>
"""


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return escape(str(value))
