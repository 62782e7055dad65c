"""How much latency the load generator itself adds: run it against the built-in mock and compare.

`loadtest calibrate` starts the mock with a fixed schedule (by default TTFT 50 ms, 20 content
chunks 10 ms apart), runs a real `locust --headless` process on a locustfile that uses loadtest's
plugin, with one-turn conversations and no think time, and subtracts the mock's own server-side
percentiles from the generator's (both HDR; both sides forget the warm-up at the same moment). What
is left is the latency the generator adds: building and sending the request, waking up to read,
parsing, recording. With two CPUs or more the mock and the generator get one CPU each, so neither
steals the other's time.

The pieces (`Mock`, `run_generator`, `Percentiles`, `ours_argv`) are also what bench/capacity.py
uses to step the concurrency up and compare with baseline locustfiles.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from loadtest.catalog import Failure
from loadtest.errors import ConfigError, LoadtestError
from loadtest.metrics import Histogram
from loadtest.mock.contract import API_KEY_ENV
from loadtest.mock.dist import parse_count_dist, parse_duration_dist
from loadtest.mock.launch import MockProcess, start_mock
from loadtest.report.schema import load_summary

DEFAULT_LOCUSTFILE = Path(__file__).resolve().parents[1] / "locustfiles" / "chat.py"
# What locustfiles/chat.py holds, for an installed package that has no checkout beside it.
PLAIN_LOCUSTFILE = """from locust import events

from loadtest.plugin import NLXChatUser, register

register(events)


class ChatUser(NLXChatUser):
    pass
"""
API_KEY = "calibrate-mock-key"
DEPLOYMENT = "calibrate"
CHANNEL = "web-en-US"
ONE_TURN_SCRIPT = 'scenarios:\n  - name: calibrate\n    turns:\n      - "Hello, where is my order?"\n'
# The mock is behind its own schedule when a chunk leaves it this late (p99): then part of what
# looks like the generator's latency is the mock's.
MOCK_BEHIND_MS = 1.0
# A pinned mock runs with --precise-timers, so its CPU share counts the polling before each deadline.
_POLLING = " (busy by design: it polls before each deadline)"
# Other processes using this much of the generator's CPU disturb the measurement.
DISTURBED_SHARE = 0.10
SATURATED_SHARE = 0.90
# Environment variables that would change what the generator does; the run must not inherit them.
_STRIPPED_ENV_PREFIXES = ("LOADTEST_", "NLX_", "OPENAI_")
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_VM = ("VmRSS", "VmHWM")
_STOP_TIMEOUT_S = 10


@dataclass(frozen=True, slots=True)
class Percentiles:
    """p50, p95 and p99 in milliseconds."""

    p50: float
    p95: float
    p99: float

    @classmethod
    def from_hdr(cls, encoded: str | None) -> Percentiles | None:
        """From an HdrHistogram base64 V2 string of microsecond values; None when it is empty."""
        if not encoded:
            return None
        hist = Histogram.decode(encoded)
        if hist.count == 0:
            return None
        values = hist.values_at_percentiles_us([50.0, 95.0, 99.0])
        return cls(values[50.0] / 1000, values[95.0] / 1000, values[99.0] / 1000)

    def minus(self, other: Percentiles) -> Percentiles:
        return Percentiles(self.p50 - other.p50, self.p95 - other.p95, self.p99 - other.p99)


@dataclass(frozen=True, slots=True)
class ProcessSample:
    cpu_s: float
    rss_bytes: int
    peak_rss_bytes: int


def sample_process(pid: int) -> ProcessSample | None:
    """CPU seconds (user + system) and resident memory of a process; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    kb = {
        k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in status.splitlines()) if k in _VM
    }
    # VmRSS is missing for a zombie.
    return ProcessSample(
        cpu_s=(int(fields[11]) + int(fields[12])) / _CLK_TCK,
        rss_bytes=kb.get("VmRSS", 0) * 1024,
        peak_rss_bytes=kb.get("VmHWM", 0) * 1024,
    )


def cpu_busy(cpu: int) -> tuple[float, float]:
    """(busy, total) seconds one CPU has spent since boot, from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name == f"cpu{cpu}":
            ticks = [int(v) for v in values[:8]]
            idle = ticks[3] + ticks[4]  # idle + iowait
            return (sum(ticks) - idle) / _CLK_TCK, sum(ticks) / _CLK_TCK
    return 0.0, 0.0


@dataclass(frozen=True, slots=True)
class Placement:
    """Which CPU the mock and the generator run on; None when they are not pinned."""

    mock_cpu: int | None
    generator_cpu: int | None

    @classmethod
    def choose(cls, pin: bool) -> Placement:
        cpus = sorted(os.sched_getaffinity(0))
        if pin and len(cpus) >= 2:
            return cls(cpus[0], cpus[1])
        return cls(None, None)

    def describe(self) -> str:
        if self.mock_cpu is None:
            return "mock and generator not pinned (they may share a CPU)"
        return f"mock on CPU {self.mock_cpu}, generator on CPU {self.generator_cpu}"


def _raise_file_limit(pid: int = 0) -> None:
    # Thousands of users hold thousands of sockets, in the generator and in the mock.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (hard, hard))


def pin(pid: int, cpu: int | None) -> None:
    """Run every thread of process `pid` on CPU `cpu` alone (None: leave it where it is)."""
    if cpu is None:
        return
    # Every thread: sched_setaffinity(pid) moves only the main one.
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), {cpu})


def _preexec(cpu: int | None) -> Callable[[], None]:
    def setup() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        _raise_file_limit()

    return setup


class Mock:
    """The built-in mock in a child process, pinned to a CPU, with its stats and reset endpoints."""

    def __init__(self, process: MockProcess, cpu: int | None) -> None:
        self.process = process
        self.url = process.url
        self.cpu = cpu
        self.http = httpx.Client(timeout=60)

    @classmethod
    def start(cls, *, ttft: str, itl: str, chunks: str, cpu: int | None) -> Mock:
        args = ["--ttft", ttft, "--itl", itl, "--chunks", chunks, "--api-key", API_KEY]
        if cpu is not None:
            # A CPU of its own: it can poll through the last millisecond before each deadline.
            args.append("--precise-timers")
        process = start_mock(args, env=clean_env())
        pid = process.process.pid
        pin(pid, cpu)
        with contextlib.suppress(OSError):
            _raise_file_limit(pid)
        return cls(process, cpu)

    @property
    def pid(self) -> int:
        return self.process.process.pid

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = orjson.loads(self.http.get(self.url + "/_mock/stats").content)
        return data

    def reset(self) -> None:
        self.http.post(self.url + "/_mock/reset").raise_for_status()

    def stop(self) -> None:
        self.http.close()
        self.process.stop()

    def __enter__(self) -> Mock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without loadtest's and NLX's own variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_STRIPPED_ENV_PREFIXES)}
    env[API_KEY_ENV] = API_KEY
    env.update(extra or {})
    return env


# Loaded by locust beside the locustfile (`-f LOCUSTFILE,HOOK`): once the warm-up is over (connections
# opened, first-use imports done), both sides forget what they measured, at the same moment; once
# the run is stopping, the generator records no more turns.
WARMUP_HOOK = """\"\"\"Written by loadtest calibrate: measure from {warmup_s:g} s in to the stop.\"\"\"

import time
import urllib.request

import gevent
from locust import events


@events.test_start.add_listener
def _forget_warmup(environment, **_):
    def forget(deadline):
        # Against the clock: after a busy start gevent's loop time lags, and its timers fire early.
        while (delay := deadline - time.monotonic()) > 0:
            gevent.sleep(delay)
        loadtest = getattr(environment, "loadtest", None)
        if loadtest is not None:
            loadtest.recorder.reset()
        request = urllib.request.Request(environment.host + "/_mock/reset", method="POST")
        urllib.request.urlopen(request, timeout=30).close()

    gevent.spawn(forget, time.monotonic() + {warmup_s!r})


@events.test_stopping.add_listener
def _stop_recording(environment, **_):
    # Locust stops its users in one burst of greenlets, thousands at a time: a turn that ends
    # behind that burst would count the stop's own delay.
    loadtest = getattr(environment, "loadtest", None)
    if loadtest is not None:
        loadtest.recorder.stop_recording()
"""


def write_warmup_hook(folder: Path, warmup_s: float) -> Path:
    path = folder / "calibrate_warmup.py"
    path.write_text(WARMUP_HOOK.format(warmup_s=warmup_s), encoding="utf-8")
    return path


def warmup_for(seconds: float) -> float:
    """How long a run of `seconds` warms up before it is measured."""
    return min(2.0, seconds / 4)


@dataclass(frozen=True, slots=True)
class Run:
    """What the parent measured around one generator run, and what the mock measured inside it.

    The measured window starts `warmup_s` after the first request reached the mock and ends with
    the run (`measured_s` long); the generator and the mock reset their histograms at its start, and
    the generator records no turn that ends once the run is stopping.
    CPU shares are of one core over that window; `other_cpu` is what other processes used of the
    generator's CPU in it, `mock_other_cpu` of the mock's (None when they are not pinned).
    `rss_start_bytes` is the generator's resident memory just before its first request, the others
    at the window's end.
    """

    returncode: int
    measured_s: float
    generator_cpu: float
    mock_cpu: float
    other_cpu: float | None
    mock_other_cpu: float | None
    rss_start_bytes: int
    rss_end_bytes: int
    peak_rss_bytes: int
    server_ttft: Percentiles | None
    server_turn: Percentiles | None
    server_turns: int
    schedule_error_p99_ms: float
    output: str

    @property
    def mock_behind(self) -> bool:
        return self.schedule_error_p99_ms > MOCK_BEHIND_MS

    @property
    def disturbed(self) -> bool:
        """Other processes took a noticeable share of the generator's or the mock's CPU."""
        return any(
            share is not None and share > DISTURBED_SHARE for share in (self.other_cpu, self.mock_other_cpu)
        )

    @property
    def saturated(self) -> bool:
        return self.generator_cpu > SATURATED_SHARE

    def rss_per_user_kb(self, users: int) -> float:
        return max(self.rss_end_bytes - self.rss_start_bytes, 0) / 1024 / max(users, 1)


def run_generator(
    argv: Sequence[str],
    *,
    mock: Mock,
    seconds: float,
    warmup_s: float,
    generator_cpu: int | None,
    env: Mapping[str, str],
) -> Run:
    """Run `argv`, a headless locust run that resets its own and the mock's histograms `warmup_s`
    after it starts, measure it from outside, and stop it with SIGTERM `seconds` after its first
    request. (Locust's `-t` is only a safety net, see `run_limit`: it counts from a gevent loop time
    that lags after a busy start, so runs end up to a second early.)"""
    mock.reset()
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            list(argv),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=_preexec(generator_cpu),
        )
        try:
            rss_start, t_first = _wait_for_first_request(process, mock)
            if t_first is None:
                process.wait()
                return _failed_run(process.returncode, _tail(log))
            window = _measure_window(process.pid, mock, generator_cpu, t_first + warmup_s, t_first + seconds)
            # Users finish their turn (--stop-timeout), then the run writes its results.
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=_STOP_TIMEOUT_S + 60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        output = _tail(log)
    stats = mock.stats()
    hdr = stats.get("hdr", {})
    gen_cpu, mock_cpu, other, mock_other, rss_end, peak = window
    return Run(
        returncode=process.returncode,
        measured_s=seconds - warmup_s,
        generator_cpu=gen_cpu,
        mock_cpu=mock_cpu,
        other_cpu=other,
        mock_other_cpu=mock_other,
        rss_start_bytes=rss_start,
        rss_end_bytes=rss_end,
        peak_rss_bytes=peak,
        server_ttft=Percentiles.from_hdr(hdr.get("ttft")),
        server_turn=Percentiles.from_hdr(hdr.get("turn")),
        server_turns=int(stats.get("turns_completed", 0)),
        schedule_error_p99_ms=float(stats["schedule_error_ms"]["p99"]),
        output=output,
    )


def _wait_for_first_request(process: subprocess.Popen[str], mock: Mock) -> tuple[int, float | None]:
    """Poll until the mock has seen a request; the generator's RSS just before, and when."""
    rss = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        sample = sample_process(process.pid)
        if mock.stats()["requests"] > 0:
            return rss, time.monotonic()
        if sample is not None:
            rss = sample.rss_bytes
        time.sleep(0.05)
    return rss, None


def _measure_window(
    pid: int, mock: Mock, cpu: int | None, start: float, end: float
) -> tuple[float, float, float | None, float | None, int, int]:
    """CPU shares of the generator and the mock, of other processes on their CPUs, and the
    generator's RSS at the end, between `start` and `end` (monotonic)."""
    _sleep_until(start)
    cpus = [c for c in (cpu, mock.cpu) if c is not None]
    me = os.getpid()
    before = [sample_process(p) for p in (pid, mock.pid, me)], [cpu_busy(c) for c in cpus]
    t0 = time.monotonic()
    _sleep_until(end)
    after = [sample_process(p) for p in (pid, mock.pid, me)], [cpu_busy(c) for c in cpus]
    elapsed = max(time.monotonic() - t0, 1e-3)
    (gen0, mock0, me0), (gen1, mock1, me1) = before[0], after[0]
    if gen0 is None or gen1 is None:
        return 0.0, 0.0, None, None, 0, 0
    gen = (gen1.cpu_s - gen0.cpu_s) / elapsed
    mock_share = (mock1.cpu_s - mock0.cpu_s) / elapsed if mock0 and mock1 else 0.0
    # This process polls from the mock's CPU when it can: its own share is not "other".
    mine = (me1.cpu_s - me0.cpu_s) / elapsed if me0 and me1 and mock.cpu in os.sched_getaffinity(0) else 0.0
    others: list[float | None] = []
    for (busy0, total0), (busy1, total1), own in zip(
        before[1], after[1], (gen, mock_share + mine), strict=False
    ):
        others.append(max(0.0, (busy1 - busy0) / (total1 - total0) - own) if total1 > total0 else None)
    other = others[0] if cpu is not None and others else None
    mock_other = others[-1] if mock.cpu is not None and others else None
    return gen, mock_share, other, mock_other, gen1.rss_bytes, gen1.peak_rss_bytes


def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def _tail(log: Any, lines: int = 40) -> str:
    log.seek(0)
    text: str = log.read()
    return "\n".join(text.splitlines()[-lines:])


def _failed_run(returncode: int, output: str) -> Run:
    return Run(returncode, 0.0, 0.0, 0.0, None, None, 0, 0, 0, None, None, 0, 0.0, output)


# --- loadtest's own generator ------------------------------------------------------------------


def locust_command() -> list[str]:
    return [sys.executable, "-m", "locust"]


def run_limit(seconds: float) -> str:
    """Locust's `-t` for a run that `run_generator` stops after `seconds`: a safety net only."""
    return f"{int(seconds) + 60}s"


def ours_argv(
    locustfiles: Sequence[Path],
    *,
    host: str,
    users: int,
    spawn_rate: float,
    seconds: int,
    conversations: Path,
    report_dir: Path,
    think_time: str = "0",
    stop_timeout: int = _STOP_TIMEOUT_S,
) -> list[str]:
    """A headless locust run of loadtest's user class against the mock at `host`."""
    return [
        *locust_command(),
        "-f",
        ",".join(str(path) for path in locustfiles),
        "--headless",
        "--only-summary",
        "-u",
        str(users),
        "-r",
        f"{spawn_rate:g}",
        "-t",
        run_limit(seconds),
        "--stop-timeout",
        str(stop_timeout),
        "--host",
        host,
        "--nlx-deployment",
        DEPLOYMENT,
        "--nlx-channel",
        CHANNEL,
        "--think-time",
        think_time,
        "--conversations",
        str(conversations),
        "--report-dir",
        str(report_dir),
    ]


@dataclass(frozen=True, slots=True)
class ClientSide:
    """What the generator measured: its own TTFT and turn percentiles and turn counts."""

    ttft: Percentiles | None
    turn: Percentiles | None
    turns_ok: int
    turns_failed: int
    turns_cut: int = 0
    turns_late: int = 0
    errors: tuple[tuple[str, int], ...] = ()


def read_summary(report_dir: Path) -> ClientSide | None:
    """The generator's side from `{report_dir}/latest/summary.json`; None when the run wrote none."""
    try:
        summary = load_summary(report_dir / "latest" / "summary.json")
    except ConfigError:
        return None
    metrics, counts = summary["metrics"], summary.get("counts", {})
    return ClientSide(
        ttft=Percentiles.from_hdr(metrics["ttft_ms"].get("hdr")),
        turn=Percentiles.from_hdr(metrics["turn_ms"].get("hdr")),
        turns_ok=int(counts.get("turns_ok", 0)),
        turns_failed=int(counts.get("turns_failed", 0)),
        turns_cut=int(counts.get("turns_cut", 0)),
        turns_late=int(counts.get("turns_late", 0)),
        errors=tuple(
            (str(e["kind"]), int(e["count"])) for e in summary.get("errors", []) if e["kind"] != Failure.CUT
        ),
    )


# --- the command -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    users: int = 100
    seconds: int = 20
    ttft: str = "const:50ms"
    itl: str = "const:10ms"
    chunks: str = "const:20"
    locustfile: Path | None = None  # None: locustfiles/chat.py
    max_added_ms: float = 5.0
    pin: bool = True

    def validate(self) -> None:
        """Raise ConfigError naming the option and the fix."""
        if self.users < 1:
            raise ConfigError(f"--users {self.users}: needs at least 1 user")
        if self.seconds < 1:
            raise ConfigError(f"--seconds {self.seconds}: needs at least 1 second")
        if not self.max_added_ms >= 0:
            raise ConfigError(f"--max-added-ms {self.max_added_ms:g}: must be 0 or more milliseconds")
        for option, text, parse in (
            ("--ttft", self.ttft, parse_duration_dist),
            ("--itl", self.itl, parse_duration_dist),
            ("--chunks", self.chunks, parse_count_dist),
        ):
            try:
                parse(text)
            except ValueError as exc:
                raise ConfigError(f"{option}: {exc}") from None
        if self.locustfile is not None and not self.locustfile.is_file():
            raise ConfigError(f"-f {self.locustfile}: no such locustfile")


@dataclass(frozen=True, slots=True)
class Calibration:
    options: Options
    placement: Placement
    run: Run
    client: ClientSide

    @property
    def added_ttft(self) -> Percentiles | None:
        return _added(self.client.ttft, self.run.server_ttft)

    @property
    def added_turn(self) -> Percentiles | None:
        return _added(self.client.turn, self.run.server_turn)

    @property
    def added_p95_ms(self) -> float:
        """The larger of the TTFT and turn-latency additions at p95."""
        return max(a.p95 for a in (self.added_ttft, self.added_turn) if a is not None)

    @property
    def too_much(self) -> bool:
        return self.added_p95_ms > self.options.max_added_ms


def _added(ours: Percentiles | None, server: Percentiles | None) -> Percentiles | None:
    return ours.minus(server) if ours is not None and server is not None else None


def calibrate(options: Options, *, progress: Callable[[str], None] | None = None) -> Calibration:
    """Run the generator against a fresh mock; LoadtestError when no turn completed."""
    options.validate()
    placement = Placement.choose(options.pin)
    affinity = os.sched_getaffinity(0)
    if placement.mock_cpu is not None:
        # This process only polls: it stays off the generator's CPU.
        os.sched_setaffinity(0, {placement.mock_cpu})
    try:
        return _calibrate(options, placement, progress)
    finally:
        os.sched_setaffinity(0, affinity)


def _calibrate(options: Options, placement: Placement, progress: Callable[[str], None] | None) -> Calibration:
    with (
        tempfile.TemporaryDirectory(prefix="loadtest-calibrate-") as tmp,
        Mock.start(ttft=options.ttft, itl=options.itl, chunks=options.chunks, cpu=placement.mock_cpu) as mock,
    ):
        script = Path(tmp) / "conversations.yaml"
        script.write_text(ONE_TURN_SCRIPT, encoding="utf-8")
        report_dir = Path(tmp) / "reports"
        warmup = warmup_for(options.seconds)
        locustfile = options.locustfile or DEFAULT_LOCUSTFILE
        if not locustfile.is_file():
            locustfile = Path(tmp) / "chat.py"
            locustfile.write_text(PLAIN_LOCUSTFILE, encoding="utf-8")
        argv = ours_argv(
            [locustfile.resolve(), write_warmup_hook(Path(tmp), warmup)],
            host=mock.url,
            users=options.users,
            spawn_rate=options.users,
            seconds=options.seconds,
            conversations=script,
            report_dir=report_dir,
        )
        if progress is not None:
            progress(
                f"loadtest calibrate: {options.users} users for {options.seconds} s, one-turn conversations "
                f"without think time, against the built-in mock (TTFT {options.ttft}, ITL {options.itl}, "
                f"chunks {options.chunks}); {placement.describe()}; the first {warmup:g} s are not measured"
            )
        run = run_generator(
            argv,
            mock=mock,
            seconds=options.seconds,
            warmup_s=warmup,
            generator_cpu=placement.generator_cpu,
            env=clean_env(),
        )
        client = read_summary(report_dir)
    if client is None or client.ttft is None or client.turn is None or run.server_turn is None:
        last = (run.output.strip().splitlines() or ["no output"])[-1]
        if "unrecognized arguments" in last:
            raise ConfigError(
                f"-f {options.locustfile}: not a locustfile that uses loadtest's plugin ({last})"
            )
        raise LoadtestError(f"no turn completed (locust exited with {run.returncode}): {last}")
    return Calibration(options, placement, run, client)


def report_lines(cal: Calibration) -> list[str]:
    """The table of added latency, the facts around it and the one-line verdict (last)."""
    run, client, users = cal.run, cal.client, cal.options.users
    rate = client.turns_ok / run.measured_s
    grown = max(run.rss_end_bytes - run.rss_start_bytes, 0)
    failed = f" ({', '.join(f'{kind} {n}' for kind, n in client.errors)})" if client.errors else ""
    lines = [
        f"turns: {client.turns_ok} ok, {client.turns_failed} failed{failed}, {rate:.1f} per second",
        f"generator: {run.generator_cpu:.0%} of one core, RSS {run.rss_end_bytes / 2**20:.1f} MB "
        f"(+{grown / 2**20:.1f} MB since its first request: {run.rss_per_user_kb(users):.0f} KB per user, "
        "one-time costs included)",
        f"mock: {run.mock_cpu:.0%} of one core{_POLLING if run.mock_other_cpu is not None else ''}, "
        f"schedule error p99 {run.schedule_error_p99_ms:.2f} ms",
        "",
        f"{'(ms)':<16}{'p50':>9}{'p95':>9}{'p99':>9}",
    ]
    for label, ours, server, added in (
        ("TTFT", client.ttft, run.server_ttft, cal.added_ttft),
        ("turn", client.turn, run.server_turn, cal.added_turn),
    ):
        for kind, p in (("generator", ours), ("mock", server), ("added", added)):
            if p is not None:
                lines.append(f"{label + ' ' + kind:<16}{p.p50:>9.2f}{p.p95:>9.2f}{p.p99:>9.2f}")
    lines.append("")
    lines.extend(notes(cal))
    judgement = "too much — use --processes or fewer users per process" if cal.too_much else "fine"
    lines.append(f"the generator adds {cal.added_p95_ms:.1f} ms at p95 at {users} users: {judgement}")
    return lines


def notes(cal: Calibration) -> list[str]:
    """Why the numbers may not mean what they seem to."""
    run = cal.run
    found = []
    if run.mock_behind:
        found.append(
            f"note: the mock fell behind its schedule (p99 {run.schedule_error_p99_ms:.1f} ms > "
            f"{MOCK_BEHIND_MS:g} ms): part of the added latency may be the mock's"
        )
    if run.saturated:
        found.append(f"note: the generator used {run.generator_cpu:.0%} of its core: it is saturated")
    if run.disturbed:
        found.append(
            f"note: other processes used {run.other_cpu or 0:.0%} of the generator's CPU and "
            f"{run.mock_other_cpu or 0:.0%} of the mock's during the run: the figures are disturbed, "
            "run again on a quiet machine"
        )
    if cal.placement.mock_cpu is None:
        found.append("note: the mock and the generator were not pinned to CPUs of their own")
    return found
