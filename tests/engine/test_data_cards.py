"""Data cards (issue 7 §3): a stage's ``data_card`` is made on the driver when a run completes,
from what the stage learnt and the kept samples' shard parquets, and lands in ``stats/``."""

from __future__ import annotations

import json
import sys

import pyarrow as pa
import pyarrow.parquet as pq
from ray import cloudpickle as ray_cloudpickle

from curate.pipeline import run_pipeline
from curate.schema import CAPTION
from curate.stages.base import Stage
from curate.stages.registry import register

ray_cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import this module


@register
class KeptWordsCard(Stage):
    """Test stage: scores nothing; its card counts the kept captions' words from the shards."""

    kind = "test_kept_words_card"
    reads = (CAPTION,)

    def process(self, batch: pa.Table) -> pa.Table:
        return batch

    def data_card(self, run_root: str, shard_parquets: list[str]) -> tuple[str, dict]:
        captions = [c for path in shard_parquets for c in pq.read_table(path, columns=[CAPTION]).column(0).to_pylist()]
        return "kept_words.json", {"shards": len(shard_parquets), "words": sum(len(c.split()) for c in captions)}


def test_a_stages_data_card_is_written_to_stats(tmp_path, ray_session) -> None:
    captions = ["a red circle", "tiny", "two blue squares on grey", "x", "a green star"]
    pq.write_table(pa.table({"url": [f"http://h/{i}.jpg" for i in range(5)], "caption": captions}), tmp_path / "in.parquet")
    spec = {"name": "cards", "input": {"path": str(tmp_path / "in.parquet"), "rows_per_unit": 2},
            "stages": [{"stage": "caption_rules", "min_words": 2}, {"stage": "test_kept_words_card"}],
            "output": {"samples_per_shard": 10}}
    run_pipeline(spec, output=str(tmp_path / "run"))
    card = json.loads((tmp_path / "run" / "stats" / "kept_words.json").read_text())
    assert card == {"shards": 3, "words": 3 + 5 + 3}
