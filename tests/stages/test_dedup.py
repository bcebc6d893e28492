"""URL dedup (curate.stages.dedup): observe, reduce (exact and bloom), verdicts, decide."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from curate.schema import DROP_STAGE, ROW, UNIT, normalize_urls
from curate.stages.dedup import UrlDedupFilter, UrlDedupParams, input_positions, url_hashes
from tests.global_stage import reduce_in_process

U = [f"{i:032x}" for i in range(16)]  # uids are 32 hex chars


def batch(rows: list[tuple[int, int, str, str]]) -> pa.Table:
    """rows: (unit, row, uid, url)."""
    units, positions, uids, urls = zip(*rows, strict=True)
    return pa.table({
        "uid": pa.array(uids, pa.string()),
        "url": pa.array(urls, pa.string()),
        UNIT: pa.array(units, pa.int32()),
        ROW: pa.array(positions, pa.int32()),
        DROP_STAGE: pa.nulls(len(uids), pa.string()),
    })


def dedup(stage: UrlDedupFilter, table: pa.Table) -> list[tuple[bool, str | None, str | None]]:
    scored = stage.process(table)
    decision = stage.decide(scored)
    assert scored.column("dup_of").to_pylist() == decision.detail.to_pylist()
    return list(zip(decision.keep.to_pylist(), decision.reason.to_pylist(), decision.detail.to_pylist(), strict=True))


def two_phase(batches: list[pa.Table], root: Path, observe_order: list[int] | None = None, partitions: int = 3,
              **params) -> tuple[UrlDedupFilter, int]:
    stage = UrlDedupFilter(UrlDedupParams(**params))
    order = observe_order or list(range(len(batches)))
    return stage, reduce_in_process(stage, [batches[i] for i in order], root, partitions)


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


def test_first_occurrence_survives_and_detail_is_its_uid(tmp_path: Path) -> None:
    table = batch([
        (0, 0, U[0], "http://example.com/a.jpg"),
        (0, 1, U[1], "HTTP://EXAMPLE.com/a.jpg"),            # scheme/host case
        (0, 2, U[2], "http://example.com/a.jpg#section"),    # fragment
        (0, 3, U[3], "  http://example.com/a.jpg\t"),        # whitespace
        (0, 4, U[4], "http://example.com/A.jpg"),            # path case: a different URL
        (0, 5, U[5], "http://example.com/b.jpg"),
        (0, 6, U[6], "http://example.com/b.jpg"),
    ])
    stage, verdicts = two_phase([table], tmp_path)
    assert verdicts == 4  # only later occurrences have a verdict
    assert dedup(stage, table) == [
        (True, None, None),
        (False, "duplicate_url", U[0]),
        (False, "duplicate_url", U[0]),
        (False, "duplicate_url", U[0]),
        (True, None, None),
        (True, None, None),
        (False, "duplicate_url", U[5]),
    ]
    assert sorted(p.name for p in (tmp_path / "verdicts").iterdir()) == ["00000.parquet"]


def test_first_by_unit_and_row_survives_even_if_observed_out_of_order(tmp_path: Path) -> None:
    url = "http://example.com/same.jpg"
    unit0 = batch([(0, 7, U[7], url), (0, 3, U[3], url)])  # rows out of order within the batch
    unit1 = batch([(1, 0, U[10], url), (1, 1, U[11], "http://example.com/other.jpg")])
    unit2 = batch([(2, 0, U[12], url)])
    stage, _ = two_phase([unit0, unit1, unit2], tmp_path, observe_order=[2, 1, 0])  # later units observed first
    assert dedup(stage, unit2) == [(False, "duplicate_url", U[3])]
    assert dedup(stage, unit1) == [(False, "duplicate_url", U[3]), (True, None, None)]
    assert dedup(stage, unit0) == [(False, "duplicate_url", U[3]), (True, None, None)]


@pytest.mark.parametrize("partitions", [1, 2, 7])
def test_verdicts_do_not_depend_on_partitioning(tmp_path: Path, partitions: int) -> None:
    a, b, c = "http://x.org/a.jpg", "http://x.org/b.jpg", "http://x.org/c.jpg"
    batches = [
        batch([(0, 0, U[0], a), (0, 1, U[1], b)]),
        batch([(1, 0, U[2], a), (1, 1, U[3], c)]),
        batch([(2, 0, U[4], c), (2, 1, U[5], a)]),
    ]
    stage, verdicts = two_phase(batches, tmp_path, partitions=partitions)
    assert verdicts == 3
    assert sorted(p.name for p in (tmp_path / "verdicts").iterdir()) == ["00001.parquet", "00002.parquet"]
    assert [dedup(stage, t) for t in batches] == [
        [(True, None, None), (True, None, None)],
        [(False, "duplicate_url", U[0]), (True, None, None)],
        [(False, "duplicate_url", U[3]), (False, "duplicate_url", U[0])],
    ]


def test_observe_summarises_every_live_row_in_32_bytes() -> None:
    stage = UrlDedupFilter(UrlDedupParams())
    summary = stage.observe(batch([(0, 2, U[2], "http://h/x"), (0, 0, U[0], "http://h/x"), (0, 1, U[1], "http://H/x#y")]))
    assert summary.column_names == ["url_hash", UNIT, ROW, "uid_hi", "uid_lo"]
    assert summary.num_rows == 3 and len(set(summary.column("url_hash").to_pylist())) == 1
    assert summary.column("uid_lo").to_pylist() == [2, 0, 1] and summary.nbytes == 3 * 32


def test_empty_inputs(tmp_path: Path) -> None:
    empty = batch([(0, 0, U[0], "http://h/x")]).slice(0, 0)
    stage, verdicts = two_phase([empty], tmp_path)
    assert verdicts == 0 and not (tmp_path / "verdicts").exists()
    assert dedup(stage, batch([(0, 0, U[0], "http://h/x"), (0, 1, U[1], "http://h/y")])) == [(True, None, None)] * 2


def test_process_before_reduce_raises() -> None:
    with pytest.raises(RuntimeError, match="before its verdicts were reduced"):
        UrlDedupFilter(UrlDedupParams()).process(batch([(0, 0, U[0], "http://h/x")]))


def test_bloom_mode_drops_later_occurrences_with_its_detail(tmp_path: Path) -> None:
    a, b = "http://x.org/a.jpg", "http://x.org/b.jpg"
    batches = [batch([(0, 0, U[0], a), (0, 1, U[1], b), (0, 2, U[2], a)]), batch([(1, 0, U[3], b), (1, 1, U[4], a)])]
    stage, verdicts = two_phase(batches, tmp_path, mode="bloom", false_positive_rate=0.01)
    hit = (False, "duplicate_url", "bloom filter hit (false-positive rate 0.01)")
    assert verdicts == 3
    assert [dedup(stage, t) for t in batches] == [[(True, None, None), (True, None, None), hit], [hit, hit]]


def test_bloom_mode_false_positive_rate_is_within_its_setting(tmp_path: Path) -> None:
    """200k distinct URLs at p=0.01: fewer than 1% are dropped by mistake (the rate is the
    filter's at capacity; walked in input order it fills up, so the measured share is ~0.05%),
    some are (it is a bloom filter), and every true repeat is dropped."""
    n = 200_000
    urls = [f"http://h/{i}.jpg" for i in range(n)] + ["http://h/0.jpg", "http://h/7.jpg"]
    table = pa.table({"uid": [f"{i:032x}" for i in range(n + 2)], "url": urls, UNIT: pa.array([0] * (n + 2), pa.int32()),
                      ROW: pa.array(range(n + 2), pa.int32()), DROP_STAGE: pa.nulls(n + 2, pa.string())})
    stage = UrlDedupFilter(UrlDedupParams(mode="bloom", false_positive_rate=0.01))
    reduce_in_process(stage, [table], tmp_path, partitions=1)
    decision = stage.decide(stage.process(table))
    dropped = [i for i, keep in enumerate(decision.keep.to_pylist()) if not keep]
    assert dropped[-2:] == [n, n + 1]
    assert 0 < len(dropped) - 2 <= 0.01 * n
