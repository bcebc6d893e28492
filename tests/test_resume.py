"""Resume after SIGKILL: the final uids and shard contents equal an uninterrupted run's, shard
names stay one contiguous range, and `curate stats` on the killed run says it is incomplete."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from curate.cli import main
from curate.pipeline import run_pipeline
from tests.cli_runs import curate_run, kill_after_first_unit

pytestmark = pytest.mark.slow



def _spec(corpus: Path) -> dict:
    return {
        "name": "resume",
        "input": {"path": str(corpus / "samples.parquet"), "serve": str(corpus), "keep_columns": ["noise"], "rows_per_unit": 10},
        "stages": [
            {"stage": "datacomp_caption"},
            {"stage": "url_dedup"},
            {"stage": "download", "timeout": 20, "threads": 1},  # slow units: a wide window to kill in
            {"stage": "datacomp_image"},
        ],
        "output": {"samples_per_shard": 7, "image_size": 64, "resize_mode": "center_crop"},
        "resources": {"cpus": 2},
    }



def _shard_contents(run: Path) -> dict[str, dict[str, bytes]]:
    """uid -> {member extension: bytes} over every shard; fails on a uid seen twice."""
    samples: dict[str, dict[str, bytes]] = {}
    for tar_path in sorted((run / "shards").glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            for member in tar:
                key, ext = member.name.split(".", 1)
                sample = samples.setdefault(key, {})
                assert ext not in sample, f"uid {key} written twice"
                sample[ext] = tar.extractfile(member).read()
    return samples


def _ledger(run: Path) -> list[str]:
    tables = [pq.read_table(p) for p in sorted((run / "rejects").glob("*.parquet"))]
    return pa.concat_tables(tables).column("uid").to_pylist() if tables else []


def test_sigkill_then_rerun_equals_clean_run(tmp_path, synth_corpus, ray_session, capsys):
    spec_path = tmp_path / "resume.yaml"
    spec_path.write_text(yaml.safe_dump(_spec(synth_corpus)))
    killed, clean = tmp_path / "killed", tmp_path / "clean"

    # Start, wait until the first unit is committed, then SIGKILL the driver (and its Ray).
    interrupted_at = kill_after_first_unit(spec_path, killed)
    assert 1 <= interrupted_at < 30
    capsys.readouterr()
    assert main(["stats", str(killed), "--json"]) == 0
    partial = json.loads(capsys.readouterr().out)  # it said "complete" (issue 5 §7)
    assert (partial["state"], partial["units"], partial["units_total"]) == ("interrupted", interrupted_at, 30)

    resumed = curate_run(spec_path, killed)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert "resuming" in output

    run_pipeline(_spec(synth_corpus), output=str(clean))  # the clean run in this process: one Ray start-up less

    killed_samples, clean_samples = _shard_contents(killed), _shard_contents(clean)
    assert killed_samples.keys() == clean_samples.keys()
    for uid, members in clean_samples.items():
        assert killed_samples[uid] == members, uid
    assert np.array_equal(np.load(killed / "uids.npy"), np.load(clean / "uids.npy"))
    killed_ledger, clean_ledger = _ledger(killed), _ledger(clean)
    assert len(killed_ledger) == len(set(killed_ledger))
    assert sorted(killed_ledger) == sorted(clean_ledger)
    assert not set(killed_ledger) & killed_samples.keys()
    stats = json.loads((killed / "stats" / "stats.json").read_text())
    assert stats == json.loads((clean / "stats" / "stats.json").read_text())
    assert stats["rows"] == 300
    # shard names stay one contiguous range across the kill, sized for open_clip
    tars = sorted(p.name for p in (killed / "shards").glob("*.tar"))
    assert tars == [f"{i:05d}.tar" for i in range(len(tars))]
    sizes = json.loads((killed / "shards" / "sizes.json").read_text())
    assert sizes == {name: pq.read_metadata(killed / "shards" / name.replace(".tar", ".parquet")).num_rows for name in tars}
    assert not (killed / "_tmp").exists() or not any((killed / "_tmp").rglob("*"))
