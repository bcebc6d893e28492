"""Column roles through a whole run (issue 6 §5): a stage's ``feature`` column reaches a float16
file per shard and never the sample JSON or parquet; when a later stage drops a row, that row's
feature and heavy values are released, whichever stage wrote them."""

from __future__ import annotations

import json
import sys
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from ray import cloudpickle as ray_cloudpickle

from curate.engine.blocks import apply_stage
from curate.pipeline import run_pipeline
from curate.schema import CAPTION, DROP_STAGE, IMAGE, ROW, UNIT
from curate.stages.base import Stage, StageParams, append_columns, feature_columns, released_columns
from curate.stages.registry import register
from curate.stages.text import CaptionRulesFilter, CaptionRulesParams

ray_cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import this module


@register
class CaptionEmbedding(Stage):
    """Test stage: a 3-float "embedding" of the caption (its length, words, 1.0)."""

    kind = "test_caption_embedding"
    reads = (CAPTION,)
    writes = ("emb",)
    column_roles = {"emb": "feature"}

    def process(self, batch: pa.Table) -> pa.Table:
        captions = pc.fill_null(batch.column(CAPTION), "").to_pylist()
        vectors = [[float(len(c)), float(len(c.split())), 1.0] for c in captions]
        return append_columns(batch, {"emb": pa.array(vectors, pa.list_(pa.float32(), 3))})


def test_roles_name_the_released_and_feature_columns() -> None:
    stages = [CaptionEmbedding(StageParams()), CaptionRulesFilter(CaptionRulesParams())]
    assert released_columns(stages) == (IMAGE, "emb") and feature_columns(stages) == ("emb",)


def test_a_later_drop_releases_an_earlier_stages_feature() -> None:
    embed, rules = CaptionEmbedding(StageParams()), CaptionRulesFilter(CaptionRulesParams(min_words=2))
    for stage in (embed, rules):
        stage.released = released_columns([embed, rules])
    block = pa.table({CAPTION: ["two words", "one", "three words here"], UNIT: pa.array([0] * 3, pa.int32()),
                      ROW: pa.array(range(3), pa.int32()), DROP_STAGE: pa.nulls(3, pa.string()),
                      "_drop_reason": pa.nulls(3, pa.string()), "_drop_detail": pa.nulls(3, pa.string())})
    out = apply_stage(rules, apply_stage(embed, block)).sort_by(ROW)
    assert out.column(DROP_STAGE).to_pylist() == [None, "caption_rules", None]
    assert out.column("emb").to_pylist() == [[9.0, 2.0, 1.0], None, [16.0, 3.0, 1.0]]


def test_feature_columns_reach_per_shard_files(tmp_path, ray_session) -> None:
    captions = ["a red circle", "tiny", "two blue squares on grey", "x", "a green star"]
    pq.write_table(pa.table({"url": [f"http://h/{i}.jpg" for i in range(5)], "caption": captions}), tmp_path / "in.parquet")
    spec = {"name": "roles", "input": {"path": str(tmp_path / "in.parquet"), "rows_per_unit": 2},
            "stages": [{"stage": "test_caption_embedding"}, {"stage": "caption_rules", "min_words": 2}],
            "output": {"samples_per_shard": 10}}
    result = run_pipeline(spec, output=str(tmp_path / "run"))
    assert result.funnel.kept == 3
    shards = tmp_path / "run" / "shards"
    for index in range(3):  # a shard's feature rows follow its samples
        features = np.load(shards / f"{index:05d}.emb.npy")
        kept = pq.read_table(shards / f"{index:05d}.parquet").column("caption").to_pylist()
        assert features.dtype == np.float16 and features.tolist() == [[len(c), len(c.split()), 1] for c in kept]
    assert "emb" not in pq.read_table(shards / "00000.parquet").column_names
    with tarfile.open(shards / "00000.tar") as tar:
        sample = json.loads(next(tar.extractfile(m) for m in tar if m.name.endswith(".json")).read())
    assert "emb" not in sample and sample["caption"] in captions
