from __future__ import annotations

import gc
import random
import tracemalloc
import weakref

import pytest
from hdrh.histogram import HdrHistogram

from loadtest import catalog
from loadtest.metrics import EXAMPLE_CHARS, Histogram, Metrics, band_of, shorten


def test_stats_are_exact_hdr_percentiles_in_ms() -> None:
    h = Histogram()
    for v in range(1, 10_001):
        h.record_us(v * 100)  # 0.1 ms .. 1000 ms
    s = h.stats_ms()
    assert s["count"] == 10_000
    assert s["min"] == 0.1
    assert abs(s["p50"] - 500.0) <= 0.5  # 3 significant digits
    assert abs(s["p99"] - 990.0) <= 1.0
    assert abs(s["max"] - 1000.0) <= 1.0
    assert s["hdr"].startswith("HISTF")


def test_empty_histogram_reports_none() -> None:
    s = Histogram().stats_ms()
    assert s["count"] == 0 and s["p50"] is None and s["max"] is None


def test_drain_and_merge_is_lossless_and_equals_one_histogram_of_all_samples() -> None:
    rng = random.Random(7)
    samples = [int(rng.lognormvariate(11, 0.6)) for _ in range(20_000)]
    reference = HdrHistogram(1, 3_600_000_000, 3)
    workers = [Metrics() for _ in range(3)]
    for i, v in enumerate(samples):
        reference.record_value(v)
        w = workers[i % 3]
        w.ttft.record_us(v)
        w.count("turns")
        if i % 1000 == 0:
            w.error("http_500", f"HTTP 500 #{i}")
    master = Metrics()
    for w in workers:
        master.merge_data(w.drain())
        assert w.ttft.count == 0 and not w.counts  # drained
    assert master.ttft.count == len(samples)
    assert master.counts["turns"] == len(samples)
    assert master.errors["http_500"].count == 20
    for pct in (50.0, 90.0, 99.0, 99.9):
        assert master.ttft.value_at_percentile_us(pct) == reference.get_value_at_percentile(pct)
    stats = master.ttft.stats_ms()
    assert stats["min"] == reference.get_min_value() / 1000
    assert stats["max"] == reference.get_max_value() / 1000


def test_encoded_histogram_decodes_to_the_same_counts() -> None:
    h = Histogram()
    for v in (5, 50, 500, 5000, 50_000):
        h.record_us(v)
    again = Histogram.decode(h.encode())
    assert again.count == 5
    assert again.stats_ms()["p50"] == h.stats_ms()["p50"]
    assert again.stats_ms()["min"] == h.stats_ms()["min"]


def test_encoding_is_hdrhs_byte_for_byte() -> None:
    rng = random.Random(5)
    histograms = [Histogram(), Histogram(), Histogram()]
    histograms[1].record_us(1)
    for _ in range(5_000):
        histograms[2].record_us(int(10 ** rng.uniform(0, 9.5)))
    merged = Histogram.decode(histograms[2].encode())
    merged.merge(histograms[1])
    # Small after large and large after small: one buffer serves them all.
    for h in (*histograms, merged, histograms[1]):
        blob = h.hdr.encode()
        assert h.encode() == (blob.decode("ascii") if isinstance(blob, bytes) else blob)


def _ctypes_types() -> int:
    return sum(1 for o in gc.get_objects() if type(o).__name__ == "PyCArrayType")


def test_encoding_histograms_of_any_size_makes_no_new_ctypes_types() -> None:
    # A ctypes type waits for the cycle collector, which --gc auto|off rest during a run; a worker
    # encodes its histograms every 3 s, each with its own highest value.
    largest = Histogram()
    largest.record_us(3_600_000_000)
    largest.encode()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        before = _ctypes_types()
        for i in range(40):
            h = Histogram()
            h.record_us(1_000 + 997 * i**3)
            h.encode()
        assert _ctypes_types() == before
    finally:
        if was_enabled:
            gc.enable()


def test_error_examples_cut_to_length_end_with_an_ellipsis() -> None:
    m = Metrics()
    m.error("stream_error", "x" * 10_000)
    m.error("http_500", "y" * EXAMPLE_CHARS)
    examples = {e["kind"]: e["example"] for e in m.summary_errors()}
    assert examples["stream_error"] == "x" * (EXAMPLE_CHARS - 1) + "…"
    assert examples["http_500"] == "y" * EXAMPLE_CHARS  # short enough: kept whole, no ellipsis
    assert shorten("a" * (EXAMPLE_CHARS + 1)).endswith("a…") and len(shorten("a" * 999)) == EXAMPLE_CHARS


def test_settled_intervals_keep_their_statistics_and_free_their_histograms() -> None:
    m = Metrics()
    for t, value_ns in ((100, 5_000_000), (105, 7_000_000), (110, 9_000_000)):
        m.record_scoped("ttft", value_ns, (), t)
        m.count_at("turns_ok", t)
    m.count_at("chunks", 95, 4)  # an interval with counts and no histogram
    before = m.summary_timeline()
    m.settle_intervals(110)
    assert sorted(m.settled) == [95, 100, 105]
    assert not any(k.startswith("ttft@1") and not k.endswith("@110") for k in m.histograms)
    assert [k for k in m.counts if "@" in k] == ["turns_ok@110"]
    assert "ttft@110" in m.histograms
    assert m.summary_timeline() == before
    # A worker's data for a settled interval arrives too late: the totals take it, the time series
    # only its counts.
    late = Metrics()
    late.record_scoped("ttft", 1_000_000, (), 100)
    late.count_at("turns_ok", 100, 2)
    m.merge_data(late.drain())
    assert m.ttft.count == 4
    for settle in (False, True):
        if settle:
            m.settle_intervals(110)
        first = m.summary_timeline()["points"][1]
        assert first["ttft_ms"] == before["points"][1]["ttft_ms"] and first["turns_ok"] == 3


def test_a_settled_interval_costs_a_few_hundred_bytes() -> None:
    """A run keeps one point per 5 s interval for its time series: 720 an hour, on the master too."""
    m = Metrics()

    def run_intervals(first: int, count: int) -> None:
        for t in range(first, first + 5 * count, 5):
            # Small values: hdrh walks its counts up to the value to read a percentile.
            for value_us in (12, 25, 90):
                m.record_scoped("ttft", value_us * 1000, ("turn=1",), t)
                m.record_scoped("turn", value_us * 3000, ("turn=1",), t)
                m.count_at("turns_ok", t, 400)
                m.count_at("chunks", t, 5_000)
            m.settle_intervals(t + 5)  # all of them: no histogram is left to count

    run_intervals(0, 20)
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        run_intervals(100, 300)
        grown = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert len(m.settled) == 320
    # Measured: 265 bytes (one array of 13 integers and its entry); as dicts of statistics, 1,400.
    assert grown / 300 < 400, grown / 300


def test_values_waiting_to_be_recorded_count_wherever_the_histogram_is_read() -> None:
    # Repeated values, and more distinct ones than wait at a time, read between records.
    rng = random.Random(11)
    samples = [
        rng.choice((10_000, 10_001, 12_500)) if i % 3 else rng.randint(-5, 9_000_000) for i in range(30_000)
    ]
    h = Histogram()
    direct = HdrHistogram(1, 3_600_000_000, 3)
    for i, v in enumerate(samples):
        h.record_us(v)
        direct.record_value(max(v, 0))
        if i == 20_000:
            assert h.count == 20_001
    assert h.count == direct.get_total_count() == 30_000
    assert h.stats_ms()["p50"] == round(direct.get_value_at_percentile(50) / 1000, 3)
    decoded = HdrHistogram.decode(h.encode())
    for percentile in (0.1, 25, 50, 90, 99.9, 100):
        assert decoded.get_value_at_percentile(percentile) == direct.get_value_at_percentile(percentile)
    merged = Histogram()
    merged.record_us(1)
    merged.merge(h)
    assert merged.count == 30_001


def test_values_kept_by_bucket_give_hdrhs_histogram_count_for_count() -> None:
    # Every bucket size from 1 µs to the top of the range, and the edges of each bucket.
    rng = random.Random(7)
    samples = [int(10 ** rng.uniform(0, 9.6)) for _ in range(20_000)]
    samples += [(1 << bits) + delta for bits in range(11, 32) for delta in (-1, 0, 1)]
    samples += [-3, 0, 2047, 2048, 3_600_000_000, 4_000_000_000]
    h = Histogram()
    direct = HdrHistogram(1, 3_600_000_000, 3)
    for v in samples:
        h.record_us(v)
        direct.record_value(min(max(v, 0), 3_600_000_000))
    assert list(h.hdr.counts) == list(direct.counts)
    assert (h.hdr.get_min_value(), h.hdr.get_max_value()) == (direct.get_min_value(), direct.get_max_value())
    assert h.encode() == Histogram.decode(direct.encode().decode("ascii")).encode()
    at_once = Histogram()
    at_once.record_all_ns([v * 1000 + 999 for v in samples])
    assert list(at_once.hdr.counts) == list(direct.counts)


def test_latencies_near_each_other_wait_as_few_values() -> None:
    # Turn latencies within 50 ms of 250 ms fall in about 400 buckets: they never fill the dict
    # that waits to be folded, whatever their microseconds.
    rng = random.Random(3)
    h = Histogram()
    for _ in range(50_000):
        h.record_us(rng.randint(225_000, 275_000))
    assert len(h._pending) <= 400
    assert h.count == 50_000


def test_histograms_a_run_drops_are_freed_without_the_cycle_collector() -> None:
    # --gc auto|off rest the collector during a run: what metrics drop must go by reference counting.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        m = Metrics()
        m.record_scoped("ttft", 5_000_000, (), interval=1000)
        settled = weakref.ref(m.histograms["ttft@1000"].hdr)
        decoded = Histogram()
        decoded.merge_encoded(m.hist("ttft").encode())
        dropped = Histogram.decode(m.hist("ttft").encode())
        dropped_ref = weakref.ref(dropped.hdr)
        m.settle_intervals(before=2000)
        del dropped
        assert settled() is None and dropped_ref() is None
        point = m.summary_timeline()["points"][0]
        assert abs(point["ttft_ms"]["p50"] - 5.0) < 0.01 and decoded.count == 1
    finally:
        if was_enabled:
            gc.enable()


def test_the_mean_is_hdrhs_mean_for_recorded_decoded_and_merged_histograms() -> None:
    rng = random.Random(7)
    a, b = Histogram(), Histogram()
    for _ in range(5_000):
        a.record_us(int(rng.lognormvariate(10, 1.2)))
        b.record_us(rng.randint(1, 3_000_000))
    merged = Histogram.decode(a.encode())
    merged.merge(b)
    for hist in (a, b, Histogram.decode(b.encode()), merged):
        assert hist.mean_us() == pytest.approx(hist.hdr.get_mean_value(), rel=1e-12)
    assert Histogram().mean_us() == 0.0


MS_NS = 1_000_000


def test_time_split_takes_the_mean_parts_of_the_band_holding_each_percentile() -> None:
    m = Metrics()
    # 90 turns of 100 ms, 9 of 1 s, 1 of 10 s: p50 in the first band, p95 and p99 in the second.
    for _ in range(90):
        m.split(100 * MS_NS, (10 * MS_NS, 20 * MS_NS, 30 * MS_NS, 40 * MS_NS))
    for i in range(9):
        setup = (100 + i) * MS_NS  # a spread within the band, averaged
        m.split(1000 * MS_NS + i, (setup, 200 * MS_NS, 300 * MS_NS, 500 * MS_NS - setup + i))
    m.split(10_000 * MS_NS, (0, 1000 * MS_NS, 1000 * MS_NS, 8000 * MS_NS))
    split = m.summary_time_split()
    assert split["p50"] == {
        "turn_ms": 100.0,
        "turns": 90,
        "setup_ms": 10.0,
        "headers_ms": 20.0,
        "first_content_ms": 30.0,
        "streaming_ms": 40.0,
    }
    assert split["p95"] == split["p99"]
    assert split["p95"]["turns"] == 9 and split["p95"]["setup_ms"] == 104.0
    assert split["p95"]["turn_ms"] == 1000.0
    parts = sum(split["p95"][f"{p.key}_ms"] for p in catalog.TIME_SPLIT_PARTS)
    assert parts == pytest.approx(split["p95"]["turn_ms"], abs=0.01)
    # A band is 5 % wide: latencies in one band differ by less, latencies 5 % apart never share one.
    for low in (1_000, 99_999, 2_345_678):
        assert band_of(round(low * 1.0501)) != band_of(low)
        assert {band_of(round(low * 1.0499)), band_of(low)} == {band_of(low), band_of(low) + 1}


def test_time_split_merges_exactly_across_workers() -> None:
    rng = random.Random(3)
    turns = [
        (int(rng.lognormvariate(20, 0.8)), tuple(int(rng.uniform(0, 1e8)) for _ in range(4)))
        for _ in range(3_000)
    ]
    alone = Metrics()
    workers = [Metrics() for _ in range(3)]
    for i, (latency, parts) in enumerate(turns):
        alone.split(latency, parts)
        workers[i % 3].split(latency, parts)
    master = Metrics()
    for w in workers:
        master.merge_data(w.drain())
        assert not w.splits
    assert master.splits == alone.splits
    assert master.summary_time_split() == alone.summary_time_split()
    assert set(alone.summary_time_split()) == {s.key for s in catalog.TIME_SPLIT_STATS}


def test_no_succeeded_turn_gives_no_time_split() -> None:
    assert Metrics().summary_time_split() == {}


def test_a_metric_in_another_unit_keeps_thousandths_of_it_under_its_own_key() -> None:
    m = Metrics()
    m.hist(catalog.OUTPUT_TPS.key).record_us(42_500)  # 42.5 tokens/s
    metrics = m.summary_metrics()
    assert "output_tps" in metrics and "output_tps_ms" not in metrics
    assert metrics["output_tps"]["p50"] == pytest.approx(42.5, rel=1e-3)  # 3 significant digits
    assert metrics["ttfb_ms"]["count"] == 0
