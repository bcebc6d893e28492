"""Column role "feature" (issue 6 §5): an embedding column goes to a float16 .npy per shard,
never into the sample JSON or the parquet, and keeps its shard's index through the commit."""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.engine.rundir import RunDir
from curate.io.writers import write_unit_part
from curate.schema import CAPTION, DROP_DETAIL, DROP_REASON, DROP_STAGE, ROW, UID, UNIT, URL


def _part(vectors: pa.Array) -> pa.Table:
    n = len(vectors)
    return pa.table({UID: [f"{i:032x}" for i in range(n)], URL: [f"http://x/{i}" for i in range(n)],
                     CAPTION: [f"c{i}" for i in range(n)], "clip": vectors, "clip_score": [0.5] * n,
                     UNIT: pa.array([3] * n, pa.int32()), ROW: pa.array(range(n), pa.int32()),
                     DROP_STAGE: pa.array([None, "clip", None], pa.string()),
                     DROP_REASON: pa.array([None, "low", None], pa.string()),
                     DROP_DETAIL: pa.array([None, "0.1", None], pa.string())})


def test_feature_columns_go_to_float16_npy_beside_the_shard(tmp_path) -> None:
    vectors = pa.array([[0.25, 1.5], [9.0, 9.0], [-2.0, 0.125]], pa.list_(pa.float32(), 2))
    run = RunDir(tmp_path / "run")
    record = write_unit_part(_part(vectors), run.tmp, 10, "jpg", feature_columns=("clip",))
    assert record.files == ["shards/00003-0000000.tar", "shards/00003-0000000.parquet",
                            "shards/00003-0000000.clip.npy", "rejects/00003-0000000.parquet"]
    run.commit(3, record.files, {"unit": 3, "rows": 3, "kept": 2, "drops": {"clip": {"low": 1}}})
    features = np.load(run.shards / "00000.clip.npy")
    assert features.dtype == np.float16 and features.tolist() == [[0.25, 1.5], [-2.0, 0.125]]
    assert pq.read_table(run.shards / "00000.parquet").column_names == [UID, URL, CAPTION, "clip_score"]
    with tarfile.open(run.shards / "00000.tar") as tar:
        sample = json.loads(tar.extractfile(f"{0:032x}.json").read())
    assert "clip" not in sample and sample["clip_score"] == 0.5
    assert sorted(json.loads((run.unit_stats / "00003.json").read_text())["files"]) == [
        "rejects/00003-0000000.parquet", "shards/00000.clip.npy", "shards/00000.parquet", "shards/00000.tar"]


def test_variable_length_lists_of_one_length_are_features_too(tmp_path) -> None:
    vectors = pa.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [4.0, 5.0, 6.0]], pa.list_(pa.float64()))
    record = write_unit_part(_part(vectors), tmp_path, 10, "jpg", feature_columns=("clip",))
    assert np.load(tmp_path / "shards/00003-0000000.clip.npy").tolist() == [[1, 2, 3], [4, 5, 6]]
    assert "shards/00003-0000000.clip.npy" in record.files
