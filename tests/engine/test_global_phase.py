"""Global stages on the cluster (issue 6 §1): the Ray Data shuffle gives the same verdicts as the
in-process reduce, over many partitions; broadcast state is capped; phase one resumes per unit."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from ray import cloudpickle as ray_cloudpickle

from curate.engine import global_phase
from curate.errors import UserError
from curate.pipeline import run_pipeline
from curate.schema import CAPTION, ROW, UNIT
from curate.stages.base import BroadcastFilter, Decision, GlobalFilter, StageParams, append_columns
from curate.stages.registry import register

A, B = "a" * 32, "b" * 32
# Ray workers cannot import this test module: its test stage travels by value.
ray_cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _input(tmp_path: Path) -> str:
    """40 rows over 8 units: URLs repeat across units, uids repeat (A at rows 0, 17, 33; B at 5, 6)."""
    n = 40
    uids = [f"{i:032x}" for i in range(n)]
    uids[17] = uids[33] = A
    uids[0] = A
    uids[5] = uids[6] = B
    captions = ["short"] * 10 + ["a longer caption here"] * 30
    pq.write_table(pa.table({"url": [f"http://h/{i % 13}.jpg" for i in range(n)], "caption": captions, "uid": uids}),
                   tmp_path / "in.parquet")
    return str(tmp_path / "in.parquet")


def _spec(path: str, *stages: dict) -> dict:
    return {"name": "g", "input": {"path": path, "rows_per_unit": 5, "uid_column": "uid"}, "stages": list(stages)}


def _ledger(run: Path) -> list[tuple]:
    rows = pa.concat_tables([pq.read_table(p) for p in sorted((run / "rejects").glob("*.parquet"))]).to_pylist()
    return sorted((r["uid"], r["stage"], r["reason"], r["detail"], r["unit"], r["row"]) for r in rows)


def test_cluster_shuffle_equals_in_process_reduce(tmp_path, ray_session, monkeypatch) -> None:
    path = _input(tmp_path)
    spec = _spec(path, {"stage": "url_dedup"})
    local = run_pipeline(spec, output=str(tmp_path / "local"))
    monkeypatch.setattr(global_phase, "LOCAL_REDUCE_BYTES", -1)  # always shuffle with Ray Data
    monkeypatch.setattr(global_phase, "ROWS_PER_PARTITION", 4)  # 10 partitions
    cluster = run_pipeline(spec, output=str(tmp_path / "cluster"))
    ledger = _ledger(tmp_path / "cluster")
    assert ledger == _ledger(tmp_path / "local")
    assert local.funnel.kept == cluster.funnel.kept == 13  # 13 URLs, each with a row the read stage kept
    first = f"first at row 0 of {path}"
    assert [r[:4] for r in ledger if r[1] == "read"] == sorted(
        [(A, "read", "duplicate_uid", first), (A, "read", "duplicate_uid", first),
         (B, "read", "duplicate_uid", f"first at row 5 of {path}")])
    url_drops = [r for r in ledger if r[1] == "url_dedup"]
    assert len(url_drops) == 40 - 3 - 13
    assert all(r[2] == "duplicate_url" and len(r[3]) == 32 for r in url_drops)
    verdict_files = sorted(p.name for p in (tmp_path / "cluster" / "state" / "url_dedup" / "verdicts").iterdir())
    assert verdict_files == [f"{u:05d}.parquet" for u in range(2, 8)]  # units 0-1 hold only first occurrences


@register
class ShortCaptionShare(BroadcastFilter):
    """Test stage: drop short captions (< 10 chars) when they are over ``max_share`` of the input.
    Its state (two counts) is small by nature."""

    kind = "test_short_caption_share"
    reads = (CAPTION,)
    writes = ("short_share",)
    key = ("short",)

    class Params(StageParams):
        max_share: float = 0.2
        cap: int = 1 << 20

    @property
    def max_state_bytes(self) -> int:  # type: ignore[override]
        return self.params.cap

    def observe(self, batch: pa.Table) -> pa.Table:
        short = pc.less(pc.utf8_length(pc.fill_null(batch.column(CAPTION), "")), 10)
        return pa.table({"short": short, "n": pa.array([1] * batch.num_rows, pa.int64())})

    def reduce(self, partition: pa.Table) -> pa.Table:
        return partition.group_by("short").aggregate([("n", "sum")])

    def load_state(self, state: pa.Table) -> None:
        counts = dict(zip(state.column("short").to_pylist(), state.column("n_sum").to_pylist(), strict=True))
        self.share = counts.get(True, 0) / max(1, sum(counts.values()))

    def process(self, batch: pa.Table) -> pa.Table:
        return append_columns(batch, {"short_share": pa.array([self.share] * batch.num_rows, pa.float64())})

    def decide(self, scored: pa.Table) -> Decision:
        drop = pc.and_(pc.less(pc.utf8_length(scored.column(CAPTION)), 10), pc.greater(scored.column("short_share"),
                                                                                        self.params.max_share))
        return Decision(keep=pc.invert(drop), reason=pc.if_else(drop, "short_captions_common", pa.scalar(None, pa.string())))


def test_broadcast_state_reaches_every_worker(tmp_path, sort_shuffle, monkeypatch) -> None:
    monkeypatch.setattr(global_phase, "LOCAL_REDUCE_BYTES", -1)
    spec = _spec(_input(tmp_path), {"stage": "test_short_caption_share"})
    spec["input"].pop("uid_column")
    result = run_pipeline(spec, output=str(tmp_path / "run"))
    assert result.funnel.kept == 30  # 10 of 40 captions are short: a share of 0.25 > 0.2
    assert {r[2] for r in _ledger(tmp_path / "run")} == {"short_captions_common"}
    state = pq.read_table(tmp_path / "run" / "state" / "test_short_caption_share" / "state.parquet")
    assert sorted(state.to_pylist(), key=lambda r: r["short"]) == [{"short": False, "n_sum": 30}, {"short": True, "n_sum": 10}]


def test_broadcast_state_over_its_cap_is_one_line(tmp_path, ray_session) -> None:
    spec = _spec(_input(tmp_path), {"stage": "test_short_caption_share", "cap": 8})
    spec["input"].pop("uid_column")
    with pytest.raises(UserError, match=r"^stage test_short_caption_share: its state passed 0 MiB, the cap"):
        run_pipeline(spec, output=str(tmp_path / "run"))


def test_observe_resumes_per_unit(tmp_path, ray_session) -> None:
    """A kill during phase one leaves some units' summaries committed and a dead attempt's part:
    the rerun reuses the committed summaries (here unit 0's, doctored to omit row 0, so reuse is
    visible in the verdicts), observes only the other units, and removes the unlisted part."""
    from curate.config import InputSpec
    from curate.engine.blocks import split_alive
    from curate.engine.global_phase import partition_count, with_partition
    from curate.io.readers import plan_units, read_unit
    from curate.stages.dedup import UrlDedupFilter, UrlDedupParams

    spec = _spec(_input(tmp_path), {"stage": "url_dedup"})
    spec["input"].pop("uid_column")
    input_spec = InputSpec(**spec["input"])
    units = plan_units(input_spec)
    run = tmp_path / "run"
    run_pipeline(spec, output=str(run))
    clean = _ledger(run)
    # Back to the middle of phase one: nothing decided, unit 0 observed without its row 0.
    for path in [run / "state" / "url_dedup" / "reduced.json", *(run / "stats" / "units").glob("*.json")]:
        path.unlink()
    store = global_phase.observed_store(str(run / "state" / "url_dedup"))
    stage = UrlDedupFilter(UrlDedupParams())
    summary = stage.observe(split_alive(read_unit(units[0], input_spec))[0].slice(1))
    store.commit(0, 5, [store.write_part(with_partition(summary, stage.key, partition_count(40)), 0, 0, "earlier")])
    dead = store.write_part(pa.table({"url_hash": pa.array([1], pa.uint64())}), 6, 30, "deadbeef")

    run_pipeline(spec, output=str(run))
    ledger = _ledger(run)
    uid_of = {(r[4], r[5]): r[0] for r in clean}
    row13 = next(r[0] for r in clean if (r[4], r[5]) == (2, 13))
    # /0.jpg (rows 0, 13, 26, 39): row 0 was never observed, so row 13 survives and is named.
    assert [r for r in ledger if r[5] in (0, 13, 26, 39)] == sorted([
        (uid_of[(5, 26)], "url_dedup", "duplicate_url", row13, 5, 26),
        (uid_of[(7, 39)], "url_dedup", "duplicate_url", row13, 7, 39)])
    assert [r for r in ledger if r[5] not in (0, 13, 26, 39)] == [r for r in clean if r[5] not in (0, 13, 26, 39)]
    assert not Path(store.root, dead).exists() and not Path(store.root).exists()


@register
class TwoKeyVerdicts(GlobalFilter):
    """Test stage: every row is summarised under two keys (its URL and its caption), which land in
    different partitions; each key's reduce gives the row half of its verdict (``by_url`` or
    ``by_caption``). Both halves must reach the row."""

    kind = "test_two_key_verdicts"
    reads = ("url", CAPTION)
    writes = ("by_url", "by_caption")
    key = ("key",)
    verdict_types = {"by_url": pa.string(), "by_caption": pa.string()}

    def observe(self, batch: pa.Table) -> pa.Table:
        keys = [pc.binary_join_element_wise("url:", batch.column("url"), ""),
                pc.binary_join_element_wise("caption:", batch.column(CAPTION), "")]
        return pa.concat_tables([pa.table({"key": key, UNIT: batch.column(UNIT), ROW: batch.column(ROW)}) for key in keys])

    def reduce(self, partition: pa.Table) -> pa.Table:
        key = partition.column("key")
        return pa.table({UNIT: partition.column(UNIT), ROW: partition.column(ROW),
                         "by_url": pc.if_else(pc.starts_with(key, "url:"), key, pa.scalar(None, pa.string())),
                         "by_caption": pc.if_else(pc.starts_with(key, "caption:"), key, pa.scalar(None, pa.string()))})

    def decide(self, scored: pa.Table) -> Decision:
        keep = pa.array([True] * scored.num_rows)
        return Decision(keep=keep, reason=pa.nulls(scored.num_rows, pa.string()))


@pytest.mark.parametrize("shuffle", [False, True], ids=["in_process", "ray_data"])
def test_partial_verdicts_of_one_row_from_two_partitions_are_merged(tmp_path, ray_session, monkeypatch, request,
                                                                    shuffle) -> None:
    if shuffle:
        monkeypatch.setattr(global_phase, "LOCAL_REDUCE_BYTES", -1)
        request.getfixturevalue("sort_shuffle")
    monkeypatch.setattr(global_phase, "ROWS_PER_PARTITION", 4)  # 10 partitions: a row's two keys mostly split
    spec = _spec(_input(tmp_path), {"stage": "test_two_key_verdicts"})
    spec["input"].pop("uid_column")
    result = run_pipeline(spec, output=str(tmp_path / "run"))
    assert result.funnel.kept == 40
    shards = pa.concat_tables([pq.read_table(p) for p in sorted((tmp_path / "run" / "shards").glob("*.parquet"))])
    assert list(zip(shards.column("by_url").to_pylist(), shards.column("by_caption").to_pylist(), strict=True)) == [
        (f"url:{url}", f"caption:{caption}")
        for url, caption in zip(shards.column("url").to_pylist(), shards.column(CAPTION).to_pylist(), strict=True)]
    root = tmp_path / "run" / "state" / "test_two_key_verdicts"
    verdicts = pa.concat_tables([pq.read_table(p) for p in sorted((root / "verdicts").iterdir())])
    assert verdicts.num_rows == 40 and verdicts.column("by_url").null_count == verdicts.column("by_caption").null_count == 0
    assert (root / "reduced.json").read_text() == '{"rows": 40}'  # one merged verdict row per input row
