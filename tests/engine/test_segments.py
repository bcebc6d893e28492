"""Segments (issue 6 §2): a global stage after ``download`` reads a checkpoint instead of
replaying the download. Killed during segment 2 and rerun, the run equals a clean one and no URL
of segment 1 is fetched twice; checkpoints go when the run completes unless kept."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from curate.pipeline import run_pipeline
from tests.cli_runs import curate_run

pytestmark = pytest.mark.slow

ROWS, DISTINCT = 60, 45  # rows i and i + 45 share a URL: 15 duplicates


def _spec(tmp_path: Path, server) -> dict:
    urls = [server.url(f"/good/{i % DISTINCT}.jpg") for i in range(ROWS)]
    pq.write_table(pa.table({"url": urls, "caption": [f"picture number {i}" for i in range(ROWS)]}), tmp_path / "in.parquet")
    return {
        "name": "segments",
        "input": {"path": str(tmp_path / "in.parquet"), "rows_per_unit": 6},
        "stages": [
            {"stage": "caption_rules", "min_words": 1},
            {"stage": "download", "timeout": 20, "threads": 2, "allow_private": ["127.0.0.0/8"]},
            {"stage": "url_dedup"},
            {"stage": "image_checks", "min_side": 1},
        ],
        "output": {"samples_per_shard": 8, "image_size": 32},
        "resources": {"cpus": 2},
    }


def _ledger(run: Path) -> list[tuple]:
    tables = [pq.read_table(p) for p in sorted((run / "rejects").glob("*.parquet"))]
    rows = pa.concat_tables(tables).to_pylist() if tables else []
    return sorted((r["uid"], r["stage"], r["reason"], r["detail"]) for r in rows)


def _uids(run: Path) -> np.ndarray:
    return np.load(run / "uids.npy")


def test_segment_boundary_checkpoints_and_cleans_up(tmp_path, http_server, ray_session) -> None:
    spec = _spec(tmp_path, http_server)
    http_server.reset()
    result = run_pipeline(spec, output=str(tmp_path / "run"))
    assert result.funnel.kept == DISTINCT
    assert _ledger(tmp_path / "run") == sorted(
        (uid, "url_dedup", "duplicate_url", first) for uid, first in _duplicates(tmp_path / "run"))
    assert all(hits == (2 if i < ROWS - DISTINCT else 1) for i, hits in _hits(http_server))
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert sorted(p.name for p in (tmp_path / "run" / "state" / "url_dedup").iterdir()) == ["reduced.json", "verdicts"]

    kept = run_pipeline(spec, output=str(tmp_path / "kept"), keep_checkpoints=True)
    assert kept.funnel.kept == DISTINCT
    markers = sorted(p.name for p in (tmp_path / "kept" / "checkpoints" / "01" / "_units").iterdir())
    assert markers == [f"{u:05d}.json" for u in range(ROWS // 6)]


def _duplicates(run: Path) -> list[tuple[str, str]]:
    """(dropped uid, survivor uid) from the shards' metadata and the ledger's urls."""
    kept = pa.concat_tables([pq.read_table(p) for p in sorted((run / "shards").glob("*.parquet"))]).to_pylist()
    by_url = {r["url"]: r["uid"] for r in kept}
    dropped = pa.concat_tables([pq.read_table(p) for p in sorted((run / "rejects").glob("*.parquet"))]).to_pylist()
    return [(r["uid"], by_url[r["url"]]) for r in dropped]


def _hits(server) -> list[tuple[int, int]]:
    return [(i, server.hits[f"/good/{i}.jpg"]) for i in range(DISTINCT)]


def test_kill_in_segment_two_redoes_no_download(tmp_path, http_server, ray_session) -> None:
    spec = _spec(tmp_path, http_server)
    spec_path = tmp_path / "segments.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    http_server.reset()
    clean = tmp_path / "clean"
    run_pipeline(spec, output=str(clean))  # the clean run in this process: one Ray start-up less
    clean_hits = _hits(http_server)

    http_server.reset()
    killed = tmp_path / "killed"
    proc = curate_run(spec_path, killed, start_new_session=True)
    checkpointed = killed / "checkpoints" / "01" / "_units"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if checkpointed.is_dir() and len(list(checkpointed.glob("*.json"))) == ROWS // 6:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "run finished before segment 2 could be interrupted:\n" + proc.stdout.read()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert json.loads((killed / "manifest.json").read_text())["state"] == "running"
    hits_at_kill = _hits(http_server)
    assert hits_at_kill == clean_hits  # segment 1 was complete: every URL fetched as in a clean run

    rerun = curate_run(spec_path, killed)
    output = rerun.communicate(timeout=300)[0]
    assert rerun.returncode == 0, output
    assert _hits(http_server) == hits_at_kill, "a URL of segment 1 was fetched again"
    assert np.array_equal(_uids(killed), _uids(clean)) and len(_uids(clean)) == DISTINCT
    assert _ledger(killed) == _ledger(clean)
    assert json.loads((killed / "stats" / "stats.json").read_text()) == json.loads((clean / "stats" / "stats.json").read_text())
    assert not (killed / "checkpoints").exists()

