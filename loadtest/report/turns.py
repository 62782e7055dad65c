"""turns-*.jsonl: one line per turn, the raw samples behind the histograms (opt-in: --turn-log)."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

import orjson


class TurnLog:
    """Appends one JSON object per turn; each process writes its own file, so no locking is needed."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: IO[bytes] | None = path.open("ab")

    def write(self, record: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(orjson.dumps(record) + b"\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_turns(run_dir: Path) -> list[dict[str, Any]]:
    """Every turn record of a run, from all processes' files."""
    records: list[dict[str, Any]] = []
    for path in sorted(run_dir.glob("turns-*.jsonl")):
        records.extend(orjson.loads(line) for line in path.read_bytes().split(b"\n") if line)
    return records
