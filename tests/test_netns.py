"""A master and a worker on two hosts as far as the network knows: two network namespaces joined by a
veth pair, each process in its own. The worker must reach the master, the master's built-in mock when
no --host is given, and the host the master names when one is.

Needs root and iproute2's `ip netns` (CI has both): without them the runs fail with a line saying so.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from loadtest.mock.contract import READY_PREFIX
from loadtest.mock.launch import (
    LOOPBACK,
    MockAddress,
    MockProcess,
    for_workers,
    is_loopback,
    start_mock,
    with_host,
)
from tests.conftest import (
    FAST,
    LOCUST,
    NLX,
    TEST_KEY,
    Finish,
    LocustRun,
    background,
    locust_env,
    wait_locust,
)
from tests.harness import LOCUSTFILE

# RFC 2544's benchmarking range: an address pair that is no one's network, on a link of two.
MASTER_IP = "198.18.0.1"
WORKER_IP = "198.18.0.2"
PREFIX = 30
RUN = f"-u 4 -r 4 -t 3s --think-time 0 --stop-timeout 10 {NLX}"
NO_NETNS = (
    "two network namespaces are needed (`ip netns add` as root, iproute2 installed): {reason}. "
    "Run the suite as root on Linux with iproute2"
)


@dataclass
class Hosts:
    """Two network namespaces, `master` and `worker`, joined by a veth pair: two hosts."""

    master: str
    worker: str

    def exec(self, namespace: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", namespace, *argv]

    def remove(self) -> None:
        # Deleting a namespace deletes its end of the veth pair, and so the pair.
        for namespace in (self.master, self.worker):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], capture_output=True, text=True, check=True)


def make_hosts(tag: str) -> Hosts:
    """Both namespaces, linked and addressed; the master's default route leads to the worker, as a
    machine's leads to its network. CalledProcessError or OSError when `ip netns` cannot."""
    hosts = Hosts(f"{tag}m", f"{tag}w")
    try:
        for namespace in (hosts.master, hosts.worker):
            _ip("netns", "add", namespace)
        _ip("link", "add", f"{hosts.master}v", "type", "veth", "peer", "name", f"{hosts.worker}v")
        for namespace, address in ((hosts.master, MASTER_IP), (hosts.worker, WORKER_IP)):
            link = f"{namespace}v"
            _ip("link", "set", link, "netns", namespace)
            _ip("-n", namespace, "addr", "add", f"{address}/{PREFIX}", "dev", link)
            _ip("-n", namespace, "link", "set", link, "up")
            _ip("-n", namespace, "link", "set", "lo", "up")
        _ip("-n", hosts.master, "route", "add", "default", "via", WORKER_IP)
    except BaseException:
        hosts.remove()
        raise
    return hosts


def _popen(argv: list[str], folder: Path) -> subprocess.Popen[str]:
    """Output to files in `folder`, for `wait_locust`: nobody reads a pipe while the run goes on."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "stdout").open("w") as out, (folder / "stderr").open("w") as err:
        return subprocess.Popen(
            argv, env=locust_env(NLX_API_KEY=TEST_KEY), cwd=folder, stdout=out, stderr=err,
            stdin=subprocess.DEVNULL, text=True,
        )  # fmt: skip


@dataclass
class Pair:
    """A master on one host and a worker on the other."""

    master: subprocess.Popen[str]
    worker: subprocess.Popen[str]
    folder: Path

    def finish(self) -> LocustRun:
        try:
            run = wait_locust(self.master, self.folder / "master", self.folder / "reports")
            self.worker.wait(timeout=30)
            return run
        finally:
            for proc in (self.master, self.worker):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()


def start_pair(hosts: Hosts, folder: Path, master_args: list[str], port: int) -> Pair:
    locust = [LOCUST, "-f", str(LOCUSTFILE)]
    master = [*locust, "--master", "--master-bind-port", str(port), "--expect-workers", "1", "--headless"]
    master += ["--only-summary", "--report-dir", str(folder / "reports"), *shlex.split(RUN), *master_args]
    worker = [*locust, "--worker", "--master-host", MASTER_IP, "--master-port", str(port)]
    return Pair(
        _popen(hosts.exec(hosts.master, master), folder / "master"),
        _popen(hosts.exec(hosts.worker, worker), folder / "worker"),
        folder,
    )


def start_mock_on(hosts: Hosts) -> tuple[subprocess.Popen[str], str]:
    """The mock on the master's host, listening on its address; its URL."""
    argv = [sys.executable, "-m", "loadtest.mock", "--host", MASTER_IP, "--port", "0", *FAST]
    mock = subprocess.Popen(
        hosts.exec(hosts.master, argv), env=dict(os.environ, NLX_API_KEY=TEST_KEY),
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert mock.stdout is not None
    line = mock.stdout.readline()
    assert line.startswith(READY_PREFIX), f"the mock did not start on the master's host: {line!r}"
    return mock, line[len(READY_PREFIX) :].strip()


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


@dataclass
class TwoHostRuns:
    built_in_mock: LocustRun  # no --host: the master's mock, the master bound to every interface
    given_host: LocustRun  # --host on the master's host, the master bound to its address
    host: str


@background
def two_host_runs(folder: Path) -> Finish:
    try:
        hosts = make_hosts(f"lt{os.getpid() % 100_000}")
    except (OSError, subprocess.CalledProcessError) as exc:
        reason = (exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else "") or str(exc)

        def fail() -> TwoHostRuns:
            raise RuntimeError(NO_NETNS.format(reason=reason))

        return fail
    try:
        mock, url = start_mock_on(hosts)
        built_in = start_pair(hosts, folder / "built_in", ["--mock-options", " ".join(FAST)], 5557)
    except BaseException:
        hosts.remove()
        raise

    def finish() -> TwoHostRuns:
        # One pair after the other: both at once, beside the suite's two workers, starved a locust worker
        # of its heartbeats (lost 5 s into a 3 s run, twice in four suites).
        try:
            first = built_in.finish()
            given = start_pair(
                hosts, folder / "given", ["--host", url, "--master-bind-host", MASTER_IP], 5558
            )
            return TwoHostRuns(first, given.finish(), url)
        finally:
            _stop(mock)
            hosts.remove()

    return finish


def _assert_no_failed_turn(run: LocustRun) -> dict[str, object]:
    assert run.returncode == 0, run.output[-3000:]
    summary = run.summary()
    counts = summary["counts"]
    assert summary["run"]["workers"] == 1
    assert counts["turns_ok"] > 0 and counts["turns"] == counts["turns_ok"], counts
    assert summary["errors"] == []
    return summary


def test_a_worker_on_another_host_uses_the_masters_built_in_mock(two_host_runs: TwoHostRuns) -> None:
    summary = _assert_no_failed_turn(two_host_runs.built_in_mock)
    run = summary["run"]
    assert isinstance(run, dict) and run["mock"] is True
    # The URL the worker got names the master's address on its default route, not loopback.
    assert run["host"].startswith(f"http://{MASTER_IP}:")


def test_a_worker_on_another_host_uses_the_host_the_master_names(two_host_runs: TwoHostRuns) -> None:
    summary = _assert_no_failed_turn(two_host_runs.given_host)
    run = summary["run"]
    assert isinstance(run, dict) and run["mock"] is False and run["host"] == two_host_runs.host


# --- where the master's mock listens, and the URL its workers get -------------------------------------


@pytest.mark.parametrize("bind", ["*", "", "0.0.0.0", "::"])
def test_a_master_bound_to_every_interface_serves_its_mock_there(bind: str) -> None:
    address = for_workers(bind)
    assert address.listen == "0.0.0.0"
    assert address.advertise is not None and address.advertise not in ("0.0.0.0", "*")


@pytest.mark.parametrize("bind", ["127.0.0.1", MASTER_IP, "master.example"])
def test_a_master_bound_to_one_address_serves_its_mock_on_it(bind: str) -> None:
    assert for_workers(bind) == MockAddress(bind, bind)


def test_the_mock_stays_on_loopback_unless_asked() -> None:
    assert MockAddress() == MockAddress(LOOPBACK, None)


@pytest.mark.parametrize(
    ("url", "host", "expected"),
    [
        ("http://127.0.0.1:8000", MASTER_IP, f"http://{MASTER_IP}:8000"),
        ("http://127.0.0.1:8000/v1", "master.example", "http://master.example:8000/v1"),
        ("http://127.0.0.1:8000", "fd00::2", "http://[fd00::2]:8000"),
    ],
)
def test_with_host_replaces_only_the_host(url: str, host: str, expected: str) -> None:
    assert with_host(url, host) == expected


@pytest.fixture
def mock_at() -> Iterator[Callable[..., str]]:
    started: list[MockProcess] = []

    def start(address: MockAddress, *args: str) -> str:
        process = start_mock(list(args), env=dict(os.environ, NLX_API_KEY=TEST_KEY), address=address)
        started.append(process)
        return process.url

    yield start
    for process in started:
        process.process.kill()
        process.stop()


def test_mock_options_that_pick_the_host_win_over_the_advertised_one(mock_at: Callable[..., str]) -> None:
    # --mock-options "--host ..." is the user's choice: the mock listens there and its URL says so. (The
    # advertised host itself is what the two-host run's worker uses.)
    assert mock_at(MockAddress(LOOPBACK, "127.0.0.2"), "--host", "127.0.0.3").startswith("http://127.0.0.3:")


def test_loopback_names() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.1.1", "localhost", "::1", "[::1]"))
    assert not any(is_loopback(h) for h in (MASTER_IP, "0.0.0.0", "master.example"))
