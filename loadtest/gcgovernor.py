"""`--gc`: Python's garbage collector during a run.

With thousands of users each collection walks the objects of every turn in flight (and, while they
spawn, all users made so far) and pauses the process for tens to hundreds of milliseconds, which land
in the measured latencies. Reference counting frees almost all a turn makes; what sits in reference
cycles waits, for the test's end (`off`) or until too many objects pile up (`auto`).
"""

from __future__ import annotations

import gc
import logging

import gevent

logger = logging.getLogger("loadtest")

# --gc auto collects once when this many more objects live than when the collector stopped.
CHECK_OBJECTS = 1_000_000
# How often --gc auto looks at that count.
CHECK_SECONDS = 1.0
# Cyclic garbage worth a warning: a few MB of objects.
GARBAGE_WARN_OBJECTS = 10_000


class GcGovernor:
    """Rests the collector for a run (`rest`) and brings it back (`resume`), as `--gc` says."""

    def __init__(self, *, check_objects: int = CHECK_OBJECTS, check_seconds: float = CHECK_SECONDS) -> None:
        self.check_objects = check_objects
        self.check_seconds = check_seconds
        self.mode = "on"
        self.paused = False
        self._watcher: gevent.Greenlet | None = None

    def rest(self, mode: str) -> None:
        """At test start: `on` leaves the collector alone; `auto` and `off` rest it."""
        self.mode = mode
        if self.paused or mode == "on":
            return
        gc.disable()
        self.paused = True
        if mode == "auto":
            self._watcher = gevent.spawn(self._watch, gc.get_count()[0])

    @staticmethod
    def freeze() -> None:
        """Once users are spawned: they and their clients live as long as the run, so move them out of
        the collector's way and a full collection does not walk them all."""
        gc.freeze()

    def resume(self) -> None:
        """At test stop: the collector is back on, and what piled up is collected now."""
        if self._watcher is not None and self._watcher is not gevent.getcurrent():
            self._watcher.kill(block=False)
        self._watcher = None
        if not self.paused:
            return
        self.paused = False
        gc.enable()
        found = gc.collect()
        if found > GARBAGE_WARN_OBJECTS:
            logger.warning(
                "loadtest: %d objects in reference cycles built up while the garbage collector rested "
                "(--gc %s); if memory grew too much, run with --gc on",
                found,
                self.mode,
            )

    def _watch(self, base: int) -> None:
        """--gc auto: once `check_objects` more objects live than when the collector stopped, collect
        once; if that finds many in reference cycles, the collector comes back for the run."""
        while self.paused:
            gevent.sleep(self.check_seconds)
            if gc.get_count()[0] - base < self.check_objects:
                continue
            found = gc.collect()
            if found > GARBAGE_WARN_OBJECTS:
                logger.warning(
                    "loadtest: %d objects in reference cycles piled up while the garbage collector "
                    "rested (--gc auto); it is back on, and its pauses may show in the latencies",
                    found,
                )
                gc.enable()
                self.paused = False
                self._watcher = None
                return
            # What survived is live state of the run: out of the way of the next collection.
            gc.freeze()
            base = gc.get_count()[0]
