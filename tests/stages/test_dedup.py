"""Exact URL dedup (curate.stages.dedup): observe, aggregate, load_state, process, decide."""

from __future__ import annotations

import pyarrow as pa
import pytest

from curate.schema import ROW, UNIT, normalize_urls
from curate.stages.base import StageParams
from curate.stages.dedup import UrlDedupFilter, input_positions, url_hashes


def batch(rows: list[tuple[int, int, str, str]]) -> pa.Table:
    """rows: (unit, row, uid, url)."""
    units, positions, uids, urls = zip(*rows, strict=True)
    return pa.table({
        "uid": pa.array(uids, pa.string()),
        "url": pa.array(urls, pa.string()),
        UNIT: pa.array(units, pa.int32()),
        ROW: pa.array(positions, pa.int32()),
    })


def dedup(stage: UrlDedupFilter, table: pa.Table) -> list[tuple[bool, str | None, str | None]]:
    scored = stage.process(table)
    decision = stage.decide(scored)
    assert scored.column("dup_of").to_pylist() == decision.detail.to_pylist()
    return list(zip(decision.keep.to_pylist(), decision.reason.to_pylist(), decision.detail.to_pylist(), strict=True))


def two_phase(batches: list[pa.Table], observe_order: list[int] | None = None) -> tuple[UrlDedupFilter, pa.Table]:
    stage = UrlDedupFilter(StageParams())
    order = observe_order or list(range(len(batches)))
    state = stage.aggregate(stage.observe(batches[i]) for i in order)
    stage.load_state(state)
    return stage, state


def test_normalize_urls() -> None:
    urls = pa.array([
        "HTTP://Example.COM/Path/A.jpg",
        "  http://example.com/Path/A.jpg#frag  ",
        "http://example.com/Path/A.jpg?q=1#x",
        "images/Relative.JPG#x",
        "\thttps://WWW.Site.org\n",
        None,
    ])
    assert normalize_urls(urls).to_pylist() == [
        "http://example.com/Path/A.jpg",
        "http://example.com/Path/A.jpg",
        "http://example.com/Path/A.jpg?q=1",
        "images/Relative.JPG",
        "https://www.site.org",
        None,
    ]


def test_url_hashes_are_deterministic_and_normalised() -> None:
    a = url_hashes(pa.array(["http://a.com/x.jpg", "HTTP://A.COM/x.jpg#f", " http://a.com/x.jpg ", "http://a.com/X.jpg"]))
    assert a.dtype.kind == "u" and a.dtype.itemsize == 8
    assert a[0] == a[1] == a[2] != a[3]  # path case matters
    assert list(url_hashes(pa.array(["http://a.com/x.jpg"]))) == [a[0]]


def test_input_positions_order_by_unit_then_row() -> None:
    positions = input_positions(batch([(0, 5, "a", "u"), (1, 0, "b", "u"), (0, 6, "c", "u"), (2, 3, "d", "u")]))
    assert list(positions) == [5, (1 << 32) | 0, 6, (2 << 32) | 3]
    assert sorted(positions)[0:2] == [5, 6]


def test_first_occurrence_survives_and_detail_is_its_uid() -> None:
    table = batch([
        (0, 0, "u0", "http://example.com/a.jpg"),
        (0, 1, "u1", "HTTP://EXAMPLE.com/a.jpg"),            # scheme/host case
        (0, 2, "u2", "http://example.com/a.jpg#section"),    # fragment
        (0, 3, "u3", "  http://example.com/a.jpg\t"),        # whitespace
        (0, 4, "u4", "http://example.com/A.jpg"),            # path case: a different URL
        (0, 5, "u5", "http://example.com/b.jpg"),
        (0, 6, "u6", "http://example.com/b.jpg"),
    ])
    stage, state = two_phase([table])
    assert dedup(stage, table) == [
        (True, None, None),
        (False, "duplicate_url", "u0"),
        (False, "duplicate_url", "u0"),
        (False, "duplicate_url", "u0"),
        (True, None, None),
        (True, None, None),
        (False, "duplicate_url", "u5"),
    ]
    # the state holds only the URLs seen more than once, each with its survivor
    assert state.schema.names == ["url_hash", "pos", "uid"]
    assert sorted(zip(state.column("pos").to_pylist(), state.column("uid").to_pylist(), strict=True)) == [(0, "u0"), (5, "u5")]


def test_first_by_unit_and_row_survives_even_if_observed_out_of_order() -> None:
    url = "http://example.com/same.jpg"
    unit0 = batch([(0, 7, "late-row", url), (0, 3, "first", url)])  # rows out of order within the batch
    unit1 = batch([(1, 0, "unit1", url), (1, 1, "other", "http://example.com/other.jpg")])
    unit2 = batch([(2, 0, "unit2", url)])
    stage, state = two_phase([unit0, unit1, unit2], observe_order=[2, 1, 0])  # later units observed first
    assert state.num_rows == 1 and state.column("uid").to_pylist() == ["first"] and state.column("pos").to_pylist() == [3]
    assert dedup(stage, unit2) == [(False, "duplicate_url", "first")]
    assert dedup(stage, unit1) == [(False, "duplicate_url", "first"), (True, None, None)]
    assert dedup(stage, unit0) == [(False, "duplicate_url", "first"), (True, None, None)]


def test_state_aggregates_several_summaries() -> None:
    a, b, c = "http://x.org/a.jpg", "http://x.org/b.jpg", "http://x.org/c.jpg"
    batches = [
        batch([(0, 0, "a0", a), (0, 1, "b0", b)]),
        batch([(1, 0, "a1", a), (1, 1, "c1", c)]),
        batch([(2, 0, "c2", c), (2, 1, "a2", a)]),
    ]
    stage = UrlDedupFilter(StageParams())
    summaries = [stage.observe(t) for t in batches]
    # a summary has one row per distinct URL of its batch, with its count
    assert [s.num_rows for s in summaries] == [2, 2, 2]
    assert all(s.column("n").to_pylist() == [1, 1] for s in summaries)
    state = stage.aggregate(summaries)
    survivors = dict(zip(state.column("uid").to_pylist(), state.column("pos").to_pylist(), strict=True))
    assert survivors == {"a0": 0, "c1": (1 << 32) | 1}  # b is unique: not in the state
    stage.load_state(state)
    assert [dedup(stage, t) for t in batches] == [
        [(True, None, None), (True, None, None)],
        [(False, "duplicate_url", "a0"), (True, None, None)],
        [(False, "duplicate_url", "c1"), (False, "duplicate_url", "a0")],
    ]


def test_observe_counts_duplicates_within_a_batch() -> None:
    stage = UrlDedupFilter(StageParams())
    summary = stage.observe(batch([(0, 2, "x2", "http://h/x"), (0, 0, "x0", "http://h/x"), (0, 1, "x1", "http://H/x#y")]))
    assert summary.num_rows == 1
    assert (summary.column("uid")[0].as_py(), summary.column("pos")[0].as_py(), summary.column("n")[0].as_py()) == ("x0", 0, 3)


def test_empty_inputs() -> None:
    stage = UrlDedupFilter(StageParams())
    assert stage.aggregate([]).num_rows == 0
    assert stage.aggregate(iter([])).num_rows == 0
    empty = batch([(0, 0, "u", "http://h/x")]).slice(0, 0)
    state = stage.aggregate([stage.observe(empty)])
    assert state.num_rows == 0 and state.schema.names == ["url_hash", "pos", "uid"]
    stage.load_state(state)
    assert dedup(stage, batch([(0, 0, "u", "http://h/x"), (0, 1, "v", "http://h/y")])) == [(True, None, None)] * 2


def test_process_before_state_raises() -> None:
    with pytest.raises(RuntimeError, match="state"):
        UrlDedupFilter(StageParams()).process(batch([(0, 0, "u", "http://h/x")]))
