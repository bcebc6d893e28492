"""Checks of what a run records for the report: each unit's score histograms must be exactly those
of its rows' final values (kept rows in the shard parquets, dropped rows in the ledger's scores)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from curate.io.writers import scores_table
from curate.stats.histogram import as_json, merge, summarise


def recorded_histograms(run: Path) -> dict:
    markers = [json.loads(p.read_text()) for p in sorted((run / "stats" / "units").glob("*.json"))]
    return as_json(merge(m["histograms"] for m in markers))


def histograms_of_rows(run: Path, columns) -> dict:
    kept = [pq.read_table(p) for p in sorted((run / "shards").glob("*.parquet"))]
    dropped = [scores_table(pq.read_table(p, columns=["scores"]).column("scores").to_pylist())
               for p in sorted((run / "rejects").glob("*.parquet"))]
    return as_json(merge(summarise(table, columns) for table in [*kept, *dropped]))
