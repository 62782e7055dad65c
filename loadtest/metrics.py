"""HDR histograms of TTFT, turn latency and the other metrics of `loadtest.catalog`, with counters and
the split of turn latency into its parts, all mergeable exactly.

Values are recorded in thousandths of the metric's unit: microseconds for times (1 µs to 1 h, 3
significant digits), milli-tokens per second for `output_tps`. A `Metrics` object can be
drained into a plain, msgpack-friendly dict (histograms as HdrHistogram base64 V2 strings) and merged
into another, so Locust workers ship their data to the master without losing a sample.
"""

from __future__ import annotations

import base64
import ctypes
import math
import weakref
import zlib
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hdrh import codec
from hdrh.histogram import HdrHistogram

from loadtest import catalog

LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIGNIFICANT_DIGITS = 3

# Every list below derives from the registry: a metric or counter is added there, not here.
PERCENTILES: tuple[tuple[str, float], ...] = tuple(
    (s.key, s.percentile) for s in catalog.PERCENTILE_STATS if s.percentile is not None
)
COUNT_KEYS = catalog.COUNT_KEYS
TURN_COUNT_KEYS = catalog.scoped_counts(catalog.TURN)
SCENARIO_COUNT_KEYS = catalog.scoped_counts(catalog.SCENARIO)
METRIC_NAMES = tuple(m.key for m in catalog.METRICS)
SUMMARY_KEYS = {m.key: m.summary_key for m in catalog.METRICS}
# Time series: seconds per interval, and what each interval keeps (keys `ttft@{epoch}` and so on).
INTERVAL_S = 5
INTERVAL_METRICS = tuple(m.key for m in catalog.TIMELINE_METRICS)
INTERVAL_COUNTS = catalog.TIMELINE_COUNTS
INTERVAL_STATS: tuple[tuple[str, float], ...] = tuple(
    (s.key, s.percentile) for s in catalog.TIMELINE_STATS if s.percentile is not None
)
TURN_METRICS = tuple(m.key for m in catalog.scoped_metrics(catalog.TURN))
SCENARIO_METRICS = tuple(m.key for m in catalog.scoped_metrics(catalog.SCENARIO))


# Counters of failed turns by kind and scenario: `errors.assertion{scenario=booking}`.
ERROR_COUNT_PREFIX = "errors."


def scoped(name: str, scope: str, value: str | int) -> str:
    """The key of a metric or counter for one turn index or scenario: `ttft{turn=1}`."""
    return f"{name}{{{scope}={value}}}"


def interval_of(epoch_s: float) -> int:
    """Start (epoch seconds) of the time-series interval holding `epoch_s`; the same on every worker."""
    return int(epoch_s // INTERVAL_S) * INTERVAL_S


def at(name: str, interval: int) -> str:
    return f"{name}@{interval}"


def split_key(key: str) -> tuple[str, str | None, str | None]:
    """`ttft{turn=1}` -> ("ttft", "turn", "1"); `ttft` -> ("ttft", None, None)."""
    name, brace, rest = key.partition("{")
    if not brace:
        return key, None, None
    scope, _, value = rest[:-1].partition("=")
    return name, scope, value


# An example error message is kept short: summaries must stay readable and small.
EXAMPLE_CHARS = 300


def shorten(example: str) -> str:
    """`example` on one line, cut to EXAMPLE_CHARS at most, ending with an ellipsis when it was cut."""
    return catalog.excerpt(example, EXAMPLE_CHARS)


def acyclic(h: HdrHistogram) -> HdrHistogram:
    """`h`, with the reference from its encoder back to it made weak.

    An hdrh histogram and its encoder point at each other, so a dropped one (about 190 KiB) waits
    for the cycle collector, which `--gc auto|off` rest during a run: every settled time-series
    interval leaked two of them, 4.5 MB a minute. Made weak, reference counting frees them.
    """
    h.encoder.histogram = weakref.proxy(h)
    return h


class _EncodeBuffer:
    """One buffer for every histogram `encode` writes, grown to the largest asked for."""

    def __init__(self) -> None:
        self.buffer: ctypes.Array[ctypes.c_byte] | None = None

    def at_least(self, size: int) -> ctypes.Array[ctypes.c_byte]:
        if self.buffer is None or len(self.buffer) < size:
            self.buffer = (ctypes.c_byte * size)()
        return self.buffer


_ENCODE_BUFFER = _EncodeBuffer()


def encode(h: HdrHistogram) -> str:
    """`h.encode()` (hdrh's V2 format, zlib-compressed, base64), through one buffer for every histogram.

    hdrh writes each encoding into a ctypes array of a new type sized to the histogram's highest
    value; ctypes types sit in reference cycles, which wait for the cycle collector that `--gc
    auto|off` rest during a run, so a worker, which encodes its histograms every 3 s, kept a few KB
    for each new size. This is hdrh's HdrHistogramEncoder.encode and HdrPayload.compress, step for
    step, with the buffer made once.
    """
    payload = h.encoder.payload
    counts_limit = h.get_counts_array_index(h.max_value) + 1 if h.total_count else 0
    # At worst one byte more per counter than its word: what hdrh allows for.
    varint_room = counts_limit * (payload.word_size + 1)
    buffer = _ENCODE_BUFFER.at_least(codec.payload_header_size + varint_room)
    start = ctypes.addressof(buffer)
    varint_len = codec.encode(  # pyhdrh's, which hdrh's codec imports
        ctypes.addressof(payload.counts),
        counts_limit,
        payload.word_size,
        start + codec.payload_header_size,
        varint_room,
    )
    payload.payload.payload_len = varint_len
    ctypes.memmove(start, ctypes.addressof(payload.payload), codec.payload_header_size)
    compressed = zlib.compress(ctypes.string_at(start, codec.payload_header_size + varint_len))
    header = h.encoder.header
    header.length = len(compressed)
    wrapped = ctypes.string_at(ctypes.addressof(header), codec.ext_header_size) + compressed
    return base64.b64encode(wrapped).decode("ascii")


# Recorded values wait, counted by value, until this many distinct ones are pending or the
# histogram is read: a dict update costs a tenth of an HDR record, and latencies repeat.
PENDING_VALUES = 512

# A value is kept as the lowest of its HDR bucket's range, where it would be counted anyway: from
# EXACT_BELOW up, a bucket spans 2**(bit length - BUCKET_BITS) values. Then values pending are few
# (a turn latency near 250 ms shares its bucket with 127 others) and fold seldom, and the histogram
# holds exactly what recording each value would have put there.
_SHAPE = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
assert _SHAPE.unit_magnitude == 0, "LOWEST_US must stay 1: below EXACT_BELOW every value is its own"
EXACT_BELOW = int(_SHAPE.sub_bucket_count)
BUCKET_BITS = int(_SHAPE.sub_bucket_half_count_magnitude) + 1
# Where bucket b (b >= 1) starts in the counts array: (b + 1) << HALF_COUNT_BITS, less HALF_COUNT.
HALF_COUNT_BITS = int(_SHAPE.sub_bucket_half_count_magnitude)
HALF_COUNT = int(_SHAPE.sub_bucket_half_count)
del _SHAPE


def bucket_floor(value_us: int) -> int:
    """The lowest value of the HDR bucket `value_us` falls in, within the histograms' range."""
    if value_us >= EXACT_BELOW:
        if value_us > HIGHEST_US:
            value_us = HIGHEST_US
        shift = value_us.bit_length() - BUCKET_BITS
        return value_us >> shift << shift
    return value_us if value_us > 0 else 0


class Histogram:
    """One HDR histogram of microsecond values."""

    __slots__ = ("_hdr", "_pending")

    def __init__(self) -> None:
        self._hdr = acyclic(HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS))
        self._pending: dict[int, int] = {}

    @property
    def hdr(self) -> HdrHistogram:
        """The HDR histogram, with every value recorded so far in it."""
        if self._pending:
            self._fold()
        return self._hdr

    def _fold(self) -> None:
        """Count the pending values into the HDR histogram, as its `record_value` would: every value
        is its bucket's lowest (`bucket_floor`), so its index is plain arithmetic."""
        pending = self._pending
        hdr = self._hdr
        counts = hdr.counts
        total = 0
        for value, count in pending.items():
            if value < EXACT_BELOW:
                counts[value] += count
            else:
                bucket = value.bit_length() - BUCKET_BITS
                counts[((bucket + 1) << HALF_COUNT_BITS) + (value >> bucket) - HALF_COUNT] += count
            total += count
        hdr.total_count += total
        hdr.min_value = min(hdr.min_value, min(pending))
        hdr.max_value = max(hdr.max_value, max(pending))
        pending.clear()

    @classmethod
    def decode(cls, encoded: str) -> Histogram:
        hist = cls()
        hist.merge_encoded(encoded)
        return hist

    @property
    def count(self) -> int:
        return int(self.hdr.get_total_count())

    def record_us(self, value_us: int) -> None:
        value = bucket_floor(int(value_us))
        pending = self._pending
        pending[value] = pending.get(value, 0) + 1
        if len(pending) >= PENDING_VALUES:
            self._fold()

    def record_ns(self, value_ns: int) -> None:
        self.record_us(value_ns // 1000)

    def record_all_ns(self, values_ns: Iterable[int]) -> None:
        """`record_ns` for each of `values_ns` (a turn's inter-chunk gaps), in one call."""
        pending = self._pending
        get = pending.get
        for value_ns in values_ns:
            value = bucket_floor(value_ns // 1000)
            pending[value] = get(value, 0) + 1
        if len(pending) >= PENDING_VALUES:
            self._fold()

    def merge(self, other: Histogram) -> None:
        if other.count == 0:
            return
        was_empty = self.count == 0
        self.hdr.add(other.hdr)
        if was_empty:
            # hdrh's add() takes min() with an empty histogram's min of 0: restore the true minimum.
            self.hdr.min_value = other.hdr.min_value

    def merge_encoded(self, encoded: str) -> None:
        self.merge(_wrap(acyclic(HdrHistogram.decode(encoded))))

    def encode(self) -> str:
        return encode(self.hdr)

    def value_at_percentile_us(self, percentile: float) -> int:
        return int(self.hdr.get_value_at_percentile(percentile))

    def mean_us(self) -> float:
        """hdrh's `get_mean_value`, from the recorded range only: hdrh walks every bucket in Python
        (0.4 s for a histogram of this range), this slices the counts between min and max in C."""
        h = self.hdr
        if not h.total_count:
            return 0.0
        first = h.get_counts_array_index(h.get_min_value())
        last = min(h.get_counts_array_index(h.get_max_value()), h.encoder.payload.counts_len - 1)
        total = 0
        for offset, count in enumerate(h.counts[first : last + 1]):
            if count:
                total += count * int(h._hdr_median_equiv_value(h.get_value_from_index(first + offset)))
        return total / int(h.total_count)

    def values_at_percentiles_us(self, percentiles: list[float]) -> dict[float, int]:
        """Several percentiles in one pass over the counts."""
        found = self.hdr.get_percentile_to_value_dict(percentiles)
        return {float(p): int(v) for p, v in found.items()}

    def stats_ms(self) -> dict[str, Any]:
        """count, min, mean, p50 … p999, max in milliseconds (in the metric's unit: the recorded
        thousandths / 1000), and the encoded histogram."""
        count = self.count
        out: dict[str, Any] = {"count": count}
        if count == 0:
            out.update(dict.fromkeys(catalog.STAT_KEYS))
        else:
            values = self.values_at_percentiles_us([p for _, p in PERCENTILES])
            for stat in catalog.STATS:
                pct = stat.percentile
                out[stat.key] = self._other_stat_ms(stat.key) if pct is None else _ms(values[pct])
        out["hdr"] = self.encode()
        return out

    def stat_ms(self, stat: catalog.Stat) -> float | None:
        """One statistic as `stats_ms` gives it, None without samples: a percentile walks the counts up
        to it only, and nothing else is worked out (what `--threshold-abort` reads every few seconds)."""
        if self.count == 0:
            return None
        pct = stat.percentile
        return (
            self._other_stat_ms(stat.key) if pct is None else _ms(self.values_at_percentiles_us([pct])[pct])
        )

    def _other_stat_ms(self, key: str) -> float:
        """min, mean or max."""
        if key == "min":
            return _ms(self.hdr.get_min_value())
        if key == "mean":
            return round(self.mean_us() / 1000.0, 3)
        return _ms(self.hdr.get_max_value())


# An interval's figures, in one array of integers: its INTERVAL_COUNTS, then for each of
# INTERVAL_METRICS its count, its INTERVAL_STATS percentiles and its maximum, in µs.
FIGURES_PER_METRIC = 2 + len(INTERVAL_STATS)


def interval_figures(hist: Histogram | None) -> list[int]:
    """Count, INTERVAL_STATS percentiles and maximum (µs) of one interval's histogram; zeros if empty."""
    if hist is None or hist.count == 0:
        return [0] * FIGURES_PER_METRIC
    values = [hist.value_at_percentile_us(pct) for _, pct in INTERVAL_STATS]
    return [hist.count, *values, hist.value_at_percentile_us(100.0)]


def interval_point(figures: array[int]) -> dict[str, Any]:
    """An interval's figures as a point of the time series: its counts and each metric's statistics
    in milliseconds (None when the interval has no value)."""
    point: dict[str, Any] = {name: figures[i] for i, name in enumerate(INTERVAL_COUNTS)}
    offset = len(INTERVAL_COUNTS)
    for name in INTERVAL_METRICS:
        count, *values, top = figures[offset : offset + FIGURES_PER_METRIC]
        offset += FIGURES_PER_METRIC
        stats: dict[str, Any] = {"count": count}
        for (key, _), value in zip(INTERVAL_STATS, values, strict=True):
            stats[key] = _ms(value) if count else None
        stats["max"] = _ms(top) if count else None
        point[SUMMARY_KEYS[name]] = stats
    return point


def _start_of(key: str) -> int:
    """The interval start of a key such as `ttft@1764547200`."""
    return int(key.rpartition("@")[2])


def _known(name: str) -> str:
    # A counter missing from the registry would be counted and then left out of summary.json.
    if name not in catalog.COUNTER_KEYS:
        raise KeyError(f"counter {name!r} is not in loadtest.catalog.COUNTERS: add it there")
    return name


def _wrap(h: HdrHistogram) -> Histogram:
    hist = Histogram.__new__(Histogram)
    hist._hdr = h
    hist._pending = {}
    return hist


def _ms(value_us: int) -> float:
    return round(value_us / 1000.0, 3)


# A band of turn latency keeps: turns, then the sum (µs) of their latency and of each of
# catalog.TIME_SPLIT_PARTS.
SPLIT_FIGURES = 2 + len(catalog.TIME_SPLIT_PARTS)
_LOG_BAND = math.log(catalog.TIME_SPLIT_BAND_RATIO)


def band_of(latency_us: int) -> int:
    """The band of turn latency holding `latency_us`: bands are log-spaced, TIME_SPLIT_BAND_RATIO wide,
    the same on every worker."""
    return int(math.log(latency_us) / _LOG_BAND) if latency_us > 1 else 0


def time_split(bands: Mapping[int, Sequence[int]]) -> dict[str, Any]:
    """summary.json's `time_split`: for each of catalog.TIME_SPLIT_STATS of turn latency, the mean
    parts of the turns in the band that holds that percentile (ranked as HdrHistogram ranks); empty
    without turns."""
    total = sum(figures[0] for figures in bands.values())
    if not total:
        return {}
    ordered = sorted(bands.items())
    out: dict[str, Any] = {}
    for stat in catalog.TIME_SPLIT_STATS:
        assert stat.percentile is not None
        rank = max(math.ceil(stat.percentile / 100 * total), 1)
        seen = 0
        for _, figures in ordered:
            seen += figures[0]
            if seen >= rank:
                out[stat.key] = _split_entry(figures)
                break
    return out


def _split_entry(figures: Sequence[int]) -> dict[str, Any]:
    turns, latency_us, *parts_us = figures
    entry: dict[str, Any] = {"turn_ms": _mean_ms(latency_us, turns), "turns": turns}
    for part, part_us in zip(catalog.TIME_SPLIT_PARTS, parts_us, strict=True):
        entry[f"{part.key}_ms"] = _mean_ms(part_us, turns)
    return entry


def _mean_ms(total_us: int, n: int) -> float:
    return round(total_us / n / 1000.0, 3)


@dataclass
class ErrorTally:
    count: int = 0
    example: str = ""


@dataclass
class Metrics:
    """Everything a run measures; one per process, merged on the master."""

    histograms: dict[str, Histogram] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    protocol: Counter[str] = field(default_factory=Counter)
    errors: dict[str, ErrorTally] = field(default_factory=dict)
    # The first example of each failure kind in each scope value: `assertion{scenario=booking}`.
    examples: dict[str, str] = field(default_factory=dict)
    fingerprints: set[str] = field(default_factory=set)
    # Time-series intervals whose histograms and counters were replaced by their figures (see
    # settle_intervals), by start.
    settled: dict[int, array[int]] = field(default_factory=dict)
    # Succeeded turns by band of latency (`band_of`): SPLIT_FIGURES integers each (see `split`).
    splits: dict[int, list[int]] = field(default_factory=dict)

    def hist(self, key: str) -> Histogram:
        found = self.histograms.get(key)
        if found is None:
            found = self.histograms[key] = Histogram()
        return found

    @property
    def ttft(self) -> Histogram:
        return self.hist("ttft")

    @property
    def turn(self) -> Histogram:
        return self.hist("turn")

    @property
    def itl(self) -> Histogram:
        return self.hist("itl")

    def count(self, name: str, n: int = 1) -> None:
        """Add to the counter `name`, one of `catalog.COUNTERS`."""
        self.counts[_known(name)] += n

    def count_at(self, name: str, interval: int, n: int = 1) -> None:
        """Add to the counter `name` of one time-series interval."""
        self.counts[at(_known(name), interval)] += n

    def count_error(self, kind: str, scopes: tuple[str, ...]) -> None:
        """One more failed turn of `kind` in each scope value (`scenario=booking`, `turn=2`): the
        `errors` of by_scenario and by_turn."""
        for scope in scopes:
            self.counts[f"{ERROR_COUNT_PREFIX}{kind}{{{scope}}}"] += 1

    def record_scoped(
        self, name: str, value_ns: int, scopes: tuple[str, ...], interval: int | None = None
    ) -> None:
        """Record into `name`, into `name{scope}` for each scope (`turn=1`, `scenario=booking`), and
        into the time-series interval `name@{interval}` when one is given."""
        self.hist(name).record_ns(value_ns)
        for scope in scopes:
            self.hist(f"{name}{{{scope}}}").record_ns(value_ns)
        if interval is not None:
            self.hist(at(name, interval)).record_ns(value_ns)

    def count_scoped(self, name: str, scopes: tuple[str, ...], n: int = 1) -> None:
        self.counts[_known(name)] += n
        for scope in scopes:
            self.counts[f"{name}{{{scope}}}"] += n

    def error(self, kind: str, example: str, scopes: tuple[str, ...] = ()) -> None:
        """One more failure of `kind`; its first example is kept for the run and for each scope value
        (a check that fails in one scenario says what it expected there)."""
        tally = self.errors.setdefault(kind, ErrorTally())
        tally.count += 1
        if not tally.example:
            tally.example = shorten(example)
        for scope in scopes:
            key = f"{kind}{{{scope}}}"
            if key not in self.examples:
                self.examples[key] = shorten(example)

    def split(self, latency_ns: int, parts_ns: Sequence[int]) -> None:
        """One succeeded turn's latency and its parts (catalog.TIME_SPLIT_PARTS, in ns), added to its
        band: sums of integers, so workers' figures add up exactly."""
        latency_us = latency_ns // 1000
        figures = self.splits.get(band_of(latency_us))
        if figures is None:
            figures = self.splits[band_of(latency_us)] = [0] * SPLIT_FIGURES
        figures[0] += 1
        figures[1] += latency_us
        for i, part_ns in enumerate(parts_ns, 2):
            figures[i] += part_ns // 1000

    def drain(self) -> dict[str, Any]:
        """Return everything recorded so far as plain data and start afresh."""
        data = self.to_data()
        self.__init__()  # type: ignore[misc]
        return data

    def to_data(self) -> dict[str, Any]:
        return {
            "histograms": {n: h.encode() for n, h in self.histograms.items() if h.count},
            "counts": dict(self.counts),
            "protocol": dict(self.protocol),
            "errors": {k: [t.count, t.example] for k, t in self.errors.items()},
            "examples": dict(self.examples),
            "fingerprints": sorted(self.fingerprints),
            # String keys: msgpack's reader refuses integer map keys by default.
            "splits": {str(band): figures for band, figures in self.splits.items()},
        }

    def merge_data(self, data: dict[str, Any]) -> None:
        """Add what another process drained; counts add up and histograms merge losslessly."""
        for name, encoded in data.get("histograms", {}).items():
            if "@" in name and _start_of(name) in self.settled:
                continue  # too late for a settled interval of the time series; the totals have it
            self.hist(name).merge_encoded(encoded)
        self.counts.update(data.get("counts", {}))
        self.protocol.update(data.get("protocol", {}))
        for kind, (count, example) in data.get("errors", {}).items():
            tally = self.errors.setdefault(kind, ErrorTally())
            tally.count += int(count)
            tally.example = tally.example or str(example)
        for key, example in data.get("examples", {}).items():
            self.examples.setdefault(key, str(example))
        self.fingerprints.update(data.get("fingerprints", []))
        for band, figures in data.get("splits", {}).items():
            mine = self.splits.setdefault(int(band), [0] * SPLIT_FIGURES)
            for i, value in enumerate(figures):
                mine[i] += int(value)

    def summary_metrics(self) -> dict[str, Any]:
        return {SUMMARY_KEYS[name]: self.hist(name).stats_ms() for name in METRIC_NAMES}

    def summary_time_split(self) -> dict[str, Any]:
        return time_split(self.splits)

    def summary_counts(self) -> dict[str, int]:
        return {key: int(self.counts.get(key, 0)) for key in COUNT_KEYS}

    def scope_values(self, scope: str) -> list[str]:
        values = {split_key(k)[2] for k in (*self.counts, *self.histograms) if split_key(k)[1] == scope}
        found = sorted(v for v in values if v is not None)
        return sorted(found, key=int) if scope == "turn" else found

    def settle_intervals(self, before: int) -> None:
        """Replace the histograms and counters of the intervals that started before `before` by their
        figures (`interval_figures`).

        An HDR histogram of this range costs about 190 KiB and a run has one per metric every 5 s: kept,
        they would grow the master's memory by MiBs a minute. A run keeps every interval's figures to
        its end, so they are one array of integers, about 250 bytes (3 KB a minute; as dicts of
        statistics and counters they would be 1,400 bytes). An interval is settled once every worker's
        data for it has arrived (they report every few seconds); counts that arrive later still add
        to it."""
        starts = {_start_of(k) for k in self.histograms if "@" in k}
        starts.update(
            _start_of(k) for k in self.counts if "@" in k and k.partition("@")[0] in INTERVAL_COUNTS
        )
        for start in sorted(starts):
            if start < before:
                self.settled[start] = self._figures(start)
                for name in INTERVAL_METRICS:
                    self.histograms.pop(at(name, start), None)
                for name in INTERVAL_COUNTS:
                    self.counts.pop(at(name, start), None)

    def _figures(self, start: int) -> array[int]:
        """The figures of the interval starting at `start`: settled, plus counts that came since."""
        counts = [int(self.counts.get(at(name, start), 0)) for name in INTERVAL_COUNTS]
        settled = self.settled.get(start)
        if settled is not None:
            figures = array("q", settled)
            for i, count in enumerate(counts):
                figures[i] += count
            return figures
        for name in INTERVAL_METRICS:
            counts += interval_figures(self.histograms.get(at(name, start)))
        return array("q", counts)

    def summary_timeline(self, users: dict[int, int] | None = None) -> dict[str, Any]:
        """Per-interval percentiles and counts, every interval from the first to the last."""
        users = users or {}
        starts = {_start_of(k) for k in (*self.histograms, *self.counts) if "@" in k}
        starts.update(self.settled)
        starts.update(users)
        points = []
        if starts:
            for t in range(min(starts), max(starts) + INTERVAL_S, INTERVAL_S):
                points.append({"t": t, "users": users.get(t), **interval_point(self._figures(t))})
        return {"interval_s": INTERVAL_S, "points": points}

    def _examples_in(self, scope: str, value: str) -> dict[str, str]:
        """The first example of each failure kind within one scope value."""
        out: dict[str, str] = {}
        for key, example in self.examples.items():
            kind, key_scope, key_value = split_key(key)
            if key_scope == scope and key_value == value:
                out[kind] = example
        return dict(sorted(out.items()))

    def _errors_in(self, scope: str, value: str) -> dict[str, int]:
        """Failed turns by kind within one scope value, e.g. one scenario."""
        out: dict[str, int] = {}
        for key, n in self.counts.items():
            name, key_scope, key_value = split_key(key)
            if key_scope == scope and key_value == value and name.startswith(ERROR_COUNT_PREFIX):
                out[name.removeprefix(ERROR_COUNT_PREFIX)] = int(n)
        return dict(sorted(out.items()))

    def summary_breakdown(self, scope: str) -> dict[str, Any]:
        """`by_turn` (scope "turn") or `by_scenario` (scope "scenario") of summary.json."""
        metrics, count_keys = (
            (TURN_METRICS, TURN_COUNT_KEYS)
            if scope == "turn"
            else (
                SCENARIO_METRICS,
                SCENARIO_COUNT_KEYS,
            )
        )
        out: dict[str, Any] = {}
        for value in self.scope_values(scope):
            entry: dict[str, Any] = {
                SUMMARY_KEYS[name]: self.hist(scoped(name, scope, value)).stats_ms() for name in metrics
            }
            entry["counts"] = {k: int(self.counts.get(scoped(k, scope, value), 0)) for k in count_keys}
            errors = self._errors_in(scope, value)
            if errors or scope == "scenario":
                entry["errors"] = errors
                entry["examples"] = self._examples_in(scope, value)
            out[value] = entry
        return out

    def summary_errors(self) -> list[dict[str, Any]]:
        return [
            {"kind": kind, "count": tally.count, "example": tally.example}
            for kind, tally in sorted(self.errors.items(), key=lambda kv: (-kv[1].count, kv[0]))
        ]
