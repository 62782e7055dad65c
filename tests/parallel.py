"""The suite on several processes (pytest-xdist, `make test`): each background run (tests/conftest.py) on
one worker, which also gets every test that reads it; and xdist's worker queue made to work in a process
that Locust has patched for gevent.

Every worker finds the same owners from the collection; it runs its own runs, and `OwnerScheduling`, in
the controlling process, sends their readers to it only, after the tests that any worker may run.
"""

from __future__ import annotations

import collections
import contextlib
import os
import tempfile
from collections.abc import Callable, Generator, Iterable, Sequence
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import orjson
import pytest
from gevent.monkey import get_original
from xdist.remote import Marker
from xdist.scheduler import LoadScheduling


def worker(config: pytest.Config) -> tuple[int, int] | None:
    """(this worker's number, how many workers) in an xdist worker, else None."""
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is None:
        return None
    return int(workerinput["workerid"].removeprefix("gw")), int(workerinput["workercount"])


def owners(reads: list[set[str]], workers: int) -> dict[str, int]:
    """The worker of each background run, from what each test reads (`reads`): runs that one test reads
    together go to one worker; the groups with the most readers first, each to the worker with the fewest
    so far, so the workers' shares of readers are even."""
    group = {name: name for names in reads for name in names}

    def root(name: str) -> str:
        while group[name] != name:
            name = group[name]
        return name

    for names in filter(None, reads):
        first, *rest = sorted(names)
        for name in rest:
            group[root(name)] = root(first)
    readers: collections.Counter[str] = collections.Counter()
    for names in reads:
        if names:
            readers[root(next(iter(names)))] += 1
    load = [0] * workers
    owner_of_group: dict[str, int] = {}
    for name, count in sorted(readers.items(), key=lambda pair: (-pair[1], pair[0])):
        owner_of_group[name] = load.index(min(load))
        load[owner_of_group[name]] += count
    return {name: owner_of_group[root(name)] for name in group}


def owners_file(testrunuid: str) -> Path:
    return Path(tempfile.gettempdir()) / f"loadtest-owners-{testrunuid}.json"


def share_owners(
    config: pytest.Config,
    items: list[pytest.Item],
    reads_of: Callable[[pytest.Item], set[str]],
    last: Callable[[pytest.Item], bool],
    workers: int,
) -> dict[str, int]:
    """The owners of the background runs; and for `OwnerScheduling`, in a file (every worker writes the
    same one, before it tells the controller its collection), the worker of each of their readers and
    the tests that run last, alone."""
    owner = owners([reads_of(item) for item in items], workers)
    readers = {item.nodeid: f"gw{owner[min(reads_of(item))]}" for item in items if reads_of(item)}
    plan = {"readers": readers, "last": [item.nodeid for item in items if last(item)]}
    path = owners_file(config.workerinput["testrunuid"])  # type: ignore[attr-defined]
    part = path.with_name(f"{path.name}.{os.getpid()}")
    part.write_bytes(orjson.dumps(plan))
    part.replace(path)
    return owner


class CooperativeQueue:
    """xdist's queue of a worker's next tests (xdist.remote.TestQueue), same methods. execnet's receiving
    thread, a real one (it started before Locust patched the process), fills it and wakes this process's
    hub through an async watcher, the one thread-safe way in; the main greenlet waits for it there, so that
    the background runs' greenlets go on meanwhile. xdist's own Event is gevent's here, set from that other
    thread: the hub saw nothing to wait for (LoopExit)."""

    def __init__(self) -> None:
        self._items: collections.deque[int | Marker] = collections.deque()
        self._lock = get_original("_thread", "RLock")()
        self._ready = gevent.event.Event()
        # Started once for good: libev forgets a send to a watcher that is not started.
        self._wake = gevent.get_hub().loop.async_()
        self._wake.start(self._ready.set)

    def get(self) -> int | Marker:
        while True:
            self._ready.clear()
            with self.lock() as items:
                if items:
                    return items.popleft()
            self._ready.wait()

    def put(self, item: int | Marker) -> None:
        with self.lock() as items:
            items.append(item)

    def replace(self, iterable: Iterable[int | Marker]) -> None:
        with self.lock():
            self._items = collections.deque(iterable)

    @contextlib.contextmanager
    def lock(self) -> Generator[collections.deque[int | Marker]]:
        with self._lock:
            try:
                yield self._items
            finally:
                if self._items:
                    self._wake.send()


def use_cooperative_queue(config: pytest.Config) -> None:
    # By name: the worker's xdist.remote runs as execnet's `__channelexec__`, not as the module we import.
    interactors = [
        plugin for plugin in config.pluginmanager.get_plugins() if type(plugin).__name__ == "WorkerInteractor"
    ]
    assert len(interactors) == 1, interactors
    interactors[0].torun = CooperativeQueue()


class OwnerScheduling(LoadScheduling):
    """xdist's `--dist load`, except that the reader of a background run goes to the run's worker, after
    the tests that any worker may run (to any worker when that one is gone); and the tests that run last
    (timing and alone ones) go to the one worker left once the others have ended, so that they have the
    machine to themselves."""

    owner_of: dict[str, str] | None = None
    last: frozenset[int] = frozenset()

    def _owner(self, index: int) -> str | None:
        assert self.collection is not None and self.owner_of is not None
        return self.owner_of.get(self.collection[index])

    def _sendable(self, node: Any) -> list[int]:
        present = {other.gateway.id for other in self.nodes}
        first = [i for i in self.pending if i not in self.last]
        anyone = [i for i in first if self._owner(i) not in present]
        if anyone or first:
            return anyone or [i for i in first if self._owner(i) == node.gateway.id]
        return [i for i in self.pending if i in self.last] if len(self.nodes) == 1 else []

    def _send_tests(self, node: Any, num: int) -> None:
        tests = self._sendable(node)[:num]
        if tests:
            chosen = set(tests)
            self.pending[:] = [i for i in self.pending if i not in chosen]
            self.node2pending[node].extend(tests)
            node.send_runtest_some(tests)

    def check_schedule(self, node: Any, duration: float = 0) -> None:
        super().check_schedule(node, duration)
        going = [other for other in self.nodes if not other.shutting_down]
        if not self.pending:
            # A worker left with nothing it may run waits for the others' last tests: then it is done too.
            for other in going:
                other.shutdown()
        elif all(i in self.last for i in self.pending):
            # Only the last tests are left: all workers but one end once they have run what they hold (a
            # worker runs a test once it has the next one, or the order to end).
            for other in going[1:]:
                other.shutdown()

    def remove_node(self, node: Any) -> str | None:
        crashed = super().remove_node(node)
        for other in self.nodes:
            self.check_schedule(other)
        return crashed

    def schedule(self) -> None:
        if self.owner_of is None:
            path = owners_file(self.nodes[0].workerinput["testrunuid"])
            plan = orjson.loads(path.read_bytes()) if path.exists() else {"readers": {}, "last": []}
            path.unlink(missing_ok=True)
            self.owner_of = plan["readers"]
            last = set(plan["last"])
            self.last = frozenset(
                i for i, nodeid in enumerate(next(iter(self.node2collection.values()))) if nodeid in last
            )
        super().schedule()
        if self.collection is None:  # the workers collected different tests: xdist has said so
            return
        for node in self.nodes:
            if not self.node2pending[node]:
                self.check_schedule(node)

    def remove_pending_tests_from_node(self, node: Any, indices: Sequence[int]) -> None:
        raise NotImplementedError
