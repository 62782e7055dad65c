from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tests.sharding import parse_shard, shard_of


@dataclass
class Item:
    nodeid: str
    fixturenames: list[str] = field(default_factory=list)


RUNS = {"run_a", "run_b", "run_c"}


def reads(item: Item) -> set[str]:
    return {name for name in item.fixturenames if name in RUNS}


def test_a_background_runs_readers_and_those_read_with_it_share_a_shard() -> None:
    items = [
        Item("tests/test_x.py::a", ["run_a"]),
        Item("tests/test_y.py::b", ["run_b", "tmp_path"]),
        Item("tests/test_y.py::c", ["run_a", "run_c"]),  # puts run_c with run_a
        Item("tests/test_z.py::d", ["run_c"]),
        *(Item(f"tests/test_f{i}.py::t", ["run_locust"]) for i in range(6)),
        *(Item(f"tests/test_u{i}.py::t") for i in range(20)),
    ]
    shards = shard_of(items, reads, 2)  # type: ignore[arg-type]
    assert shards[0] == shards[2] == shards[3]
    assert set(shards) == {0, 1}
    # Files whole, and the weights shared out evenly: a test that starts processes weighs ten.
    by_shard = [
        sum(10 if "run_locust" in i.fixturenames else 1 for i, s in zip(items, shards, strict=True) if s == n)
        for n in (0, 1)
    ]
    assert abs(by_shard[0] - by_shard[1]) <= 10
    again = shard_of(list(items), reads, 2)  # type: ignore[arg-type]
    assert again == shards


@pytest.mark.parametrize("text", ["2/2", "x/2", "1", "-1/2"])
def test_a_shard_out_of_range_or_not_i_of_n_is_refused_with_the_form(text: str) -> None:
    with pytest.raises(pytest.UsageError, match="I/N"):
        parse_shard(text)


def test_a_shard_is_its_index_and_count() -> None:
    assert parse_shard("1/2") == (1, 2)
