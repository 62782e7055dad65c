"""Coverage-guided fuzzing of the SSE decoder with atheris (not in CI; `pip install atheris`).

    .venv/bin/python bench/fuzz_sse.py -runs=200000        # libFuzzer options after the script

Each input is split into feeds at points drawn from its first bytes; the events and counters must equal
those of the whole-buffer reference decoder in tests/test_sse.py, and the decoder may raise nothing but
its own documented EventTooLarge (never reached here: no cap is set).
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

with atheris.instrument_imports():
    from loadtest.sse import SSEDecoder

from tests.test_sse import reference, rows  # noqa: E402


def one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    n_splits, stream = data[0] % 8, data[1:]
    points = sorted({stream[i % len(stream)] % (len(stream) + 1) for i in range(n_splits)}) if stream else []
    decoder = SSEDecoder()
    events = []
    start = 0
    for point in [*points, len(stream)]:
        events += decoder.feed(stream[start:point])
        start = point
    events += decoder.close()
    expected_rows, expected_counts = reference(stream)
    assert rows(events) == expected_rows, (stream, points)
    got = {"events": decoder.events, "comments": decoder.comments, "empty_events": decoder.empty_events,
           "bom": decoder.bom, "unterminated_tail": decoder.unterminated_tail}  # fmt: skip
    assert all(got[k] == v for k, v in expected_counts.items() if k in got), (stream, points, got)


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
