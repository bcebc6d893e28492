"""Issue 5 §6: ``input.uid_column`` with repeated uids. Before, 100k rows with 1,000 distinct uids
were all kept (duplicate tar member names in the shards included); now the first occurrence of a
uid is kept and every later one is a ``read`` ledger row ``duplicate_uid`` naming the first row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.config import InputSpec
from curate.engine.blocks import apply_stage
from curate.io.duplicate_uids import DuplicateUidCheck
from curate.io.readers import READ_STAGE, plan_units, read_stages, read_unit
from curate.schema import DROP_DETAIL, DROP_REASON, DROP_STAGE, ROW, UID
from tests.global_stage import reduce_in_process

A, B, C = "a" * 32, "b" * 32, "c" * 32


def write_pool(path: Path, uids: list[str | None]) -> Path:
    n = len(uids)
    pq.write_table(pa.table({"url": [f"http://h/{i}.jpg" for i in range(n)], "caption": ["a caption"] * n, "uid": uids}),
                   path)
    return path


def run_read_stage(spec: InputSpec, root: Path) -> list[dict]:
    """What the pipeline does with the implicit read stages: observe every unit's live rows,
    reduce, write the verdicts per unit, then apply the stage to each unit (as the engine does)."""
    units = plan_units(spec)
    tables = [read_unit(u, spec) for u in units]
    for stage in read_stages(spec, units):
        reduce_in_process(stage, tables, root / stage.name)
        tables = [apply_stage(stage, t) for t in tables]
    return sorted(pa.concat_tables(tables).to_pylist(), key=lambda r: (r["_unit"], r[ROW]))


def drops(rows: list[dict]) -> list[tuple]:
    return [(r[ROW], r[DROP_STAGE], r[DROP_REASON], r[DROP_DETAIL]) for r in rows if r[DROP_STAGE] is not None]


def test_within_one_unit(tmp_path: Path) -> None:
    path = write_pool(tmp_path / "pool.parquet", [A, B, A, C, "B" * 32, A, "bad", None])
    spec = InputSpec(path=str(path), uid_column="uid", rows_per_unit=100)
    rows = run_read_stage(spec, tmp_path / "state")
    first = f"first at row {{}} of {path}"
    assert drops(rows) == [
        (2, READ_STAGE, "duplicate_uid", first.format(0)),
        (4, READ_STAGE, "duplicate_uid", first.format(1)),  # uids compare case-insensitively
        (5, READ_STAGE, "duplicate_uid", first.format(0)),
        (6, READ_STAGE, "invalid_uid", "uid='bad' is not 32 hex chars"),
        (7, READ_STAGE, "invalid_uid", "uid=None is not 32 hex chars"),
    ]


def test_across_units_and_files(tmp_path: Path) -> None:
    first = write_pool(tmp_path / "a.parquet", [A, B, A, C, B])
    write_pool(tmp_path / "b.parquet", [C, "d" * 32, A])
    spec = InputSpec(path=str(tmp_path), uid_column="uid", rows_per_unit=2)
    assert [(Path(u.path).name, u.size) for u in plan_units(spec)] == [
        ("a.parquet", 2), ("a.parquet", 2), ("a.parquet", 1), ("b.parquet", 2), ("b.parquet", 1)]
    rows = run_read_stage(spec, tmp_path / "state")
    assert [(r["_unit"], *d) for r, d in zip([r for r in rows if r[DROP_STAGE]], drops(rows), strict=True)] == [
        (1, 2, READ_STAGE, "duplicate_uid", f"first at row 0 of {first}"),
        (2, 4, READ_STAGE, "duplicate_uid", f"first at row 1 of {first}"),
        (3, 0, READ_STAGE, "duplicate_uid", f"first at row 3 of {first}"),
        (4, 2, READ_STAGE, "duplicate_uid", f"first at row 0 of {first}"),
    ]
    kept = [r[UID] for r in rows if r[DROP_STAGE] is None]
    assert kept == [A, B, C, "d" * 32]


def test_thousand_distinct_uids_in_ten_thousand_rows(tmp_path: Path) -> None:
    """The finding at a tenth of its size: every uid is kept exactly once, the rest are ledger rows."""
    rng = np.random.default_rng(0)
    distinct = [f"{i:032x}" for i in rng.choice(2**62, 1000, replace=False)]
    uids = [distinct[i] for i in rng.integers(0, 1000, 10_000)]
    uids[:1000] = distinct  # every uid occurs, first in the first 1,000 rows
    write_pool(tmp_path / "pool.parquet", uids)
    spec = InputSpec(path=str(tmp_path / "pool.parquet"), uid_column="uid", rows_per_unit=1500)
    rows = run_read_stage(spec, tmp_path / "state")
    kept = [r[UID] for r in rows if r[DROP_STAGE] is None]
    assert kept == distinct
    assert {r[DROP_REASON] for r in rows if r[DROP_STAGE]} == {"duplicate_uid"} and len(rows) == 10_000
    for row in rows[1000:]:
        assert row[DROP_DETAIL] == f"first at row {distinct.index(row[UID])} of {tmp_path / 'pool.parquet'}"


def test_hashed_uids_need_no_global_pass(tmp_path: Path) -> None:
    spec = InputSpec(path=str(write_pool(tmp_path / "pool.parquet", [A, A])), rows_per_unit=1)
    assert read_stages(spec, plan_units(spec)) == []


def test_the_check_is_named_read_and_keeps_no_score_column(tmp_path: Path) -> None:
    spec = InputSpec(path=str(write_pool(tmp_path / "pool.parquet", [A, B])), uid_column="uid", rows_per_unit=1)
    units = plan_units(spec)
    [stage] = read_stages(spec, units)
    assert isinstance(stage, DuplicateUidCheck) and stage.name == READ_STAGE
    table = read_unit(units[0], spec)
    assert reduce_in_process(stage, [read_unit(u, spec) for u in units], tmp_path) == 0
    # only the engine's bookkeeping of its time is added (curate.engine.blocks)
    assert apply_stage(stage, table).column_names == [*table.column_names, "_seconds:read"]
