"""``top_fraction``: keep the highest-scoring fraction of the whole pool by one score column.

DataComp's CLIP-score baselines keep the top 30 % of the pool by ViT-L/14 ``clip_score``
(Gadre et al. 2023, §4 "CLIP score filtering" and Table 3: 30 % was their best small-scale
fraction with L/14); the same rule applies to any score (an aesthetic score, a filtering
network's). A fraction needs the whole pool's distribution, so this is a global stage; after a
model it starts a new segment (the model's rows are checkpointed, never re-scored).

The threshold is found without gathering scores on the driver: each unit is summarised as a
histogram over the float32 score's order-preserving bit pattern, 2^13 bins per power of two
(relative width 1.2e-4: 3.7e-5 at a score of 0.3), whose non-empty bins are summed per bin on
the cluster. The state is at most 2^22 bins (~50 MB, under the broadcast cap) whatever the pool.
The threshold is the lower edge of the bin where the count from the top first reaches
``fraction`` of the scored rows, so the kept share is at least ``fraction`` and exceeds it by at
most that one bin's rows (the data card says by how much). The resolved threshold, the rows
scored and kept go to ``stats/<stage name>.json``, shown by ``curate stats``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from curate import storage
from curate.stages.base import BroadcastFilter, Decision, StageParams, append_columns
from curate.stages.registry import register

#: Low bits of the float32 pattern dropped per bin: 23 - 10 = 13 mantissa bits kept.
_SHIFT = 10
BIN = "_top_fraction_bin"


class TopFractionParams(StageParams):
    column: str = Field("clip_score", description="the score column ranked (higher is better)")
    fraction: float = Field(0.3, gt=0.0, le=1.0, description="share of the scored rows kept: DataComp's best CLIP-score "
                                                             "baseline kept 0.3 by ViT-L/14 (Gadre et al. 2023, §4)")


def score_bins(scores: np.ndarray) -> np.ndarray:
    """Monotone int64 bin of each float32 score: larger scores never get smaller bins."""
    bits = np.ascontiguousarray(scores, dtype=np.float32).view(np.uint32).astype(np.int64)
    ordered = np.where(bits & 0x80000000, 0xFFFFFFFF - bits, bits | 0x80000000)  # IEEE order as integers
    return ordered >> _SHIFT


def bin_floor(bin_id: int) -> float:
    """The smallest float32 score in ``bin_id`` (the threshold's value): the bin's first pattern."""
    ordered = int(bin_id) << _SHIFT
    bits = ordered ^ 0x80000000 if ordered & 0x80000000 else 0xFFFFFFFF - ordered
    return float(np.array([bits], np.uint32).view(np.float32)[0])


@register
class TopFractionFilter(BroadcastFilter):
    """Keep rows whose ``column`` is at or above the pool's top-``fraction`` threshold; the rest
    are dropped (``below_top_fraction``, detail ``clip_score=0.2012<0.2650``), and a row without a
    score (null, NaN) is dropped as ``score_missing``."""

    kind = "top_fraction"
    Params = TopFractionParams
    key = ("bin",)
    consumes = (BIN,)  # the bin served the decision only
    threshold_bin: int | None = None

    @property
    def reads(self) -> tuple[str, ...]:  # type: ignore[override]  (the column is the user's)
        return (self.params.column,)

    def _scores(self, batch: pa.Table) -> np.ndarray:
        values = batch.column(self.params.column)
        return pc.fill_null(pc.cast(values, pa.float32()), np.nan).to_numpy(zero_copy_only=False)

    def observe(self, batch: pa.Table) -> pa.Table:
        scores = self._scores(batch)
        bins, counts = np.unique(score_bins(scores[~np.isnan(scores)]), return_counts=True)
        return pa.table({"bin": pa.array(bins, pa.int64()), "count": pa.array(counts, pa.int64())})

    def reduce(self, partition: pa.Table) -> pa.Table:
        summed = partition.group_by("bin").aggregate([("count", "sum")])
        return pa.table({"bin": summed.column("bin"), "count": summed.column("count_sum")})

    def load_state(self, state: pa.Table) -> None:
        self.threshold_bin, self.scored, self.kept = resolve_threshold(state, self.params.fraction)

    def process(self, batch: pa.Table) -> pa.Table:
        if self.threshold_bin is None and self.scored:
            raise RuntimeError(f"stage {self.name} ran before its histogram was reduced")
        scores = self._scores(batch)
        bins = np.where(np.isnan(scores), np.iinfo(np.int64).min, score_bins(np.nan_to_num(scores)))
        return append_columns(batch, {BIN: pa.array(bins, pa.int64())})

    def decide(self, scored: pa.Table) -> Decision:
        scores = self._scores(scored)
        missing = np.isnan(scores)
        floor = np.iinfo(np.int64).max if self.threshold_bin is None else self.threshold_bin
        below = ~missing & (scored.column(BIN).to_numpy() < floor)
        threshold = bin_floor(self.threshold_bin) if self.threshold_bin is not None else float("nan")
        null = pa.scalar(None, pa.string())
        reason = pc.if_else(pa.array(missing), "score_missing", pc.if_else(pa.array(below), "below_top_fraction", null))
        shown = pc.cast(pc.round(pa.array(scores, pa.float64()), 4), pa.string())
        detail = pc.if_else(pa.array(below), pc.binary_join_element_wise(
            f"{self.params.column}=", shown, f"<{threshold:.4f}", ""), null)
        return Decision(keep=pa.array(~(missing | below)), reason=reason, detail=detail)

    def data_card(self, run_root: str, shard_parquets: list[str]) -> tuple[str, dict]:
        """``(<stage name>.json, card)``: the resolved threshold and the rows it kept."""
        import pyarrow.parquet as pq

        from curate.engine.global_phase import state_root

        fs, path = storage.filesystem_of(storage.join(state_root(run_root, self), "state.parquet"))
        threshold_bin, scored, kept = resolve_threshold(pq.read_table(path, filesystem=fs), self.params.fraction)
        return f"{self.name}.json", {
            "card": "top_fraction", "stage": self.name, "column": self.params.column, "fraction": self.params.fraction,
            "threshold": bin_floor(threshold_bin) if threshold_bin is not None else None, "rows_scored": scored,
            "rows_kept": kept, "kept_fraction": kept / scored if scored else None}


def resolve_threshold(state: pa.Table, fraction: float) -> tuple[int | None, int, int]:
    """(threshold bin, rows scored, rows at or above it) from the summed histogram."""
    bins = state.column("bin").to_numpy()
    counts = state.column("count").to_numpy()
    scored = int(counts.sum())
    if scored == 0:
        return None, 0, 0
    order = np.argsort(bins)[::-1]
    from_top = np.cumsum(counts[order])
    at = int(np.searchsorted(from_top, np.ceil(fraction * scored - 1e-9)))  # first bin reaching the fraction
    return int(bins[order][at]), scored, int(from_top[at])


def render_card(card: dict) -> list[str]:
    """``curate stats`` lines for a top_fraction card."""
    if card.get("threshold") is None:
        return [f"{card['stage']}: no row had a {card['column']}"]
    return [f"{card['stage']}: top {card['fraction']:.0%} by {card['column']}: threshold {card['threshold']:.6f}, "
            f"kept {card['rows_kept']:,} of {card['rows_scored']:,} scored ({card['kept_fraction']:.4%})"]
