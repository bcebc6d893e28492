"""Issue 5 §6 end to end: repeated ``input.uid_column`` values across units are ``read`` ledger
rows, the shards hold each uid once, and a resumed run reuses the check's state."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curate import run_pipeline


def test_duplicate_uids_end_to_end(tmp_path: Path, ray_session) -> None:
    uids = [f"{i % 7:032x}" for i in range(40)]
    pool = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"url": [f"http://h/{i}.jpg" for i in range(40)], "caption": ["a fine caption"] * 40,
                             "uid": uids}), pool)
    spec = {"name": "u", "input": {"path": str(pool), "uid_column": "uid", "rows_per_unit": 6},
            "stages": [{"stage": "laion_caption"}], "output": {"samples_per_shard": 3}}
    funnel = run_pipeline(spec, output=str(tmp_path / "run")).funnel.to_json()
    assert funnel["kept"] == 7
    assert funnel["stages"][0] == {"stage": "read", "in": 40, "kept": 7, "dropped": 33, "reasons": {"duplicate_uid": 33}}
    shards = pa.concat_tables([pq.read_table(p) for p in sorted((tmp_path / "run" / "shards").glob("*.parquet"))])
    assert sorted(shards.column("uid").to_pylist()) == sorted(set(uids))
    ledger = pa.concat_tables([pq.read_table(p) for p in sorted((tmp_path / "run" / "rejects").glob("*.parquet"))])
    assert [(r["stage"], r["reason"], r["detail"]) for r in ledger.to_pylist()] == [
        ("read", "duplicate_uid", f"first at row {row % 7} of {pool}") for row in range(7, 40)]
    again = run_pipeline(spec, output=str(tmp_path / "run"))
    assert again.units_run == 0 and again.funnel.to_json() == funnel
