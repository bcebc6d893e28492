"""Helpers for the curation-quality benchmarks (not a benchmark itself): a run directory's input
corpus, its kept rows and its ledger, joined to the synthetic corpus' labels by URL."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml


def run_corpus(run_dir: Path) -> Path:
    """The input parquet of a run (``input.path`` of its resolved ``pipeline.yaml``)."""
    spec = yaml.safe_load((run_dir / "pipeline.yaml").read_text())
    path = Path(spec["input"]["path"])
    return path if path.is_absolute() else Path.cwd() / path


def run_stage_names(run_dir: Path) -> list[str]:
    """Stage names in pipeline order, as the ledger names them (``name`` or the kind)."""
    spec = yaml.safe_load((run_dir / "pipeline.yaml").read_text())
    return [stage.get("name") or stage["stage"] for stage in spec["stages"]]


def kept_rows(run_dir: Path, columns: list[str]) -> pa.Table:
    files = sorted((run_dir / "shards").glob("*.parquet"))
    return pa.concat_tables([pq.read_table(f, columns=columns) for f in files])


def ledger(run_dir: Path) -> pa.Table:
    files = sorted((run_dir / "rejects").glob("*.parquet"))
    return pa.concat_tables([pq.read_table(f, columns=["url", "stage", "reason"]) for f in files])
