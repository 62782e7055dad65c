"""Locust's per-second request and failure counts, cut to the seconds Locust still reads.

Every `StatsEntry` (each request name, and the total) counts requests and failures by the second, in
`num_reqs_per_sec` and `num_fail_per_sec`, and Locust never drops a second until the figures are
reset: a key a second for each, about 45 KB a minute on a local process or a master, for the whole
run. Locust reads them only for the current rate (`current_rps`, `current_fail_per_sec`: the ten
seconds ending two before the last request), so the older seconds are dropped every `TRIM_EVERY_S`.
Its other history is bounded already (`response_times_cache`, 20 seconds) or needed to the end (the
chart points of `RequestStats.history`, one every 5 s, drawn by its report).
"""

from __future__ import annotations

import gevent
from locust.stats import RequestStats

from loadtest.watchers import Watcher

# Seconds kept behind the last request: Locust reads 12, and on a master a worker's report brings
# seconds up to 3 s older than the newest it has merged.
KEEP_S = 30
TRIM_EVERY_S = 10.0


def trim(stats: RequestStats, keep_s: int = KEEP_S) -> int:
    """Drop the per-second counts more than `keep_s` seconds older than the last request, of every
    entry and the total; how many were dropped."""
    last = stats.last_request_timestamp
    if last is None:
        return 0
    oldest_kept = int(last) - keep_s
    dropped = 0
    for entry in [stats.total, *stats.entries.values()]:
        for per_second in (entry.num_reqs_per_sec, entry.num_fail_per_sec):
            old = [second for second in per_second if second < oldest_kept]
            for second in old:
                del per_second[second]
            dropped += len(old)
    return dropped


class StatsTrimmer(Watcher):
    """Trims the statistics of a process that keeps them (local, master) while a run goes on."""

    def __init__(self, stats: RequestStats, every_s: float = TRIM_EVERY_S) -> None:
        super().__init__()
        self.stats = stats
        self.every_s = every_s

    def _loop(self) -> None:
        while True:
            gevent.sleep(self.every_s)
            trim(self.stats)
