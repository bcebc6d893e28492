"""apply_stage (curate.engine.blocks): every row is kept, drops are marked, not lost."""

from __future__ import annotations

from typing import ClassVar

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from curate.engine.blocks import apply_stage, split_alive
from curate.schema import DROP_DETAIL, DROP_REASON, DROP_STAGE, ROW, UNIT
from curate.stages.base import Decision, Filter, Stage, StageParams, append_columns
from curate.stages.image import ImageChecksFilter, ImageChecksParams
from curate.stages.text import CaptionRulesFilter, CaptionRulesParams, LaionCaptionFilter, LaionCaptionParams


def block(captions: list[str | None], dropped: dict[int, tuple[str, str, str]] | None = None) -> pa.Table:
    dropped = dropped or {}
    n = len(captions)
    return pa.table({
        "uid": [f"{i:032x}" for i in range(n)],
        "url": [f"http://h/{i}.jpg" for i in range(n)],
        "caption": pa.array(captions, pa.string()),
        "image": pa.array([b"\xff\xd8bytes%d" % i for i in range(n)], pa.binary()),
        "orig_width": pa.array([100 * (i + 1) for i in range(n)], pa.int32()),
        "orig_height": pa.array([100 * (i + 1) for i in range(n)], pa.int32()),
        "orig_bytes": pa.array([10_000] * n, pa.int64()),
        UNIT: pa.array([0] * n, pa.int32()),
        ROW: pa.array(range(n), pa.int32()),
        DROP_STAGE: pa.array([dropped[i][0] if i in dropped else None for i in range(n)], pa.string()),
        DROP_REASON: pa.array([dropped[i][1] if i in dropped else None for i in range(n)], pa.string()),
        DROP_DETAIL: pa.array([dropped[i][2] if i in dropped else None for i in range(n)], pa.string()),
    })


def by_row(table: pa.Table) -> dict[int, dict]:
    return {r[ROW]: r for r in table.to_pylist()}


class Spy(Stage):
    """Records the rows it is given; adds a column."""

    kind = "spy"
    seen: ClassVar[list[list[int]]] = []

    def process(self, batch: pa.Table) -> pa.Table:
        Spy.seen.append(batch.column(ROW).to_pylist())
        return append_columns(batch, {"spied": pa.array([True] * batch.num_rows)})


class NoReason(Filter):
    kind = "no_reason"

    def process(self, batch: pa.Table) -> pa.Table:
        return batch

    def decide(self, scored: pa.Table) -> Decision:
        n = scored.num_rows
        return Decision(keep=pa.array([i % 2 == 0 for i in range(n)]), reason=pa.nulls(n, pa.string()))


class LosesRows(Stage):
    kind = "loses_rows"

    def process(self, batch: pa.Table) -> pa.Table:
        return batch.slice(0, batch.num_rows - 1)


class NoDetail(Filter):
    kind = "no_detail"

    def process(self, batch: pa.Table) -> pa.Table:
        return batch

    def decide(self, scored: pa.Table) -> Decision:
        keep = pc.not_equal(pc.bit_wise_and(scored.column(ROW), 1), 0).combine_chunks()
        return Decision(keep=keep, reason=pc.if_else(keep, pa.scalar(None, pa.string()), "even_row"))


def test_split_alive() -> None:
    alive, dead = split_alive(block(["a", "b", "c"], {1: ("read", "invalid_utf8", "x")}))
    assert alive.column(ROW).to_pylist() == [0, 2] and dead.column(ROW).to_pylist() == [1]


def test_filter_marks_drops_and_keeps_every_row() -> None:
    stage = LaionCaptionFilter(LaionCaptionParams(), name="caption")
    out = apply_stage(stage, block(["a cat on a mat", "cat", None, "a dog in a fog"]))
    assert out.num_rows == 4
    rows = by_row(out)
    assert sorted(rows) == [0, 1, 2, 3]
    assert [(rows[i][DROP_STAGE], rows[i][DROP_REASON], rows[i][DROP_DETAIL]) for i in range(4)] == [
        (None, None, None),
        ("caption", "caption_too_short", "chars=3"),
        ("caption", "caption_too_short", "chars=0"),
        (None, None, None),
    ]
    # the heavy bytes of dropped rows are released; kept rows keep theirs
    assert rows[1]["image"] is None and rows[2]["image"] is None
    assert rows[0]["image"] == b"\xff\xd8bytes0" and rows[3]["image"] == b"\xff\xd8bytes3"
    # score columns are kept on every row (dropped rows too)
    assert [rows[i]["caption_chars"] for i in range(4)] == [14, 3, 0, 14]


def test_rows_dropped_earlier_are_not_reprocessed() -> None:
    earlier = {0: ("read", "invalid_utf8", "bad byte"), 2: ("caption", "caption_too_short", "chars=1")}
    Spy.seen.clear()
    out = apply_stage(Spy(StageParams()), block(["x", "yyyyyy", "z", "wwwwww"], earlier))
    assert Spy.seen == [[1, 3]]
    rows = by_row(out)
    assert out.num_rows == 4
    assert rows[0]["spied"] is None and rows[2]["spied"] is None and rows[1]["spied"] and rows[3]["spied"]
    # an earlier drop is not overwritten by a later filter either
    stage = ImageChecksFilter(ImageChecksParams(min_side=1000), name="image")
    rows = by_row(apply_stage(stage, block(["x", "yyyyyy", "z", "wwwwww"], earlier)))
    assert (rows[0][DROP_STAGE], rows[0][DROP_REASON], rows[0][DROP_DETAIL]) == ("read", "invalid_utf8", "bad byte")
    assert (rows[2][DROP_STAGE], rows[2][DROP_REASON]) == ("caption", "caption_too_short")
    assert (rows[1][DROP_STAGE], rows[1][DROP_REASON], rows[1][DROP_DETAIL]) == ("image", "image_too_small", "short_side=200")
    assert (rows[3][DROP_STAGE], rows[3][DROP_REASON], rows[3][DROP_DETAIL]) == ("image", "image_too_small", "short_side=400")


def test_block_with_no_live_rows_is_returned_as_is() -> None:
    dead = block(["a", "b"], {0: ("read", "r", "d"), 1: ("read", "r", "d")})
    Spy.seen.clear()
    assert apply_stage(Spy(StageParams()), dead).equals(dead)
    assert Spy.seen == []


def test_nothing_dropped_leaves_drop_columns_null() -> None:
    out = apply_stage(LaionCaptionFilter(LaionCaptionParams()), block(["long enough", "also long enough"]))
    assert out.column(DROP_STAGE).null_count == 2 and out.column("image").null_count == 0


def test_missing_detail_is_null() -> None:
    rows = by_row(apply_stage(NoDetail(StageParams()), block(["a", "b", "c"])))
    assert [(rows[i][DROP_STAGE], rows[i][DROP_REASON], rows[i][DROP_DETAIL]) for i in range(3)] == [
        ("no_detail", "even_row", None), (None, None, None), ("no_detail", "even_row", None),
    ]


def test_drop_without_reason_raises() -> None:
    with pytest.raises(RuntimeError, match="dropped a row without a reason"):
        apply_stage(NoReason(StageParams()), block(["a", "b", "c"]))


def test_stage_that_loses_rows_raises() -> None:
    with pytest.raises(RuntimeError, match="returned 2 rows for 3"):
        apply_stage(LosesRows(StageParams()), block(["a", "b", "c"]))


def test_stages_are_set_up_once_per_worker_and_forgotten_by_the_next_run() -> None:
    from curate.engine import operators

    class Counting(CaptionRulesFilter):
        setups = 0

        def setup(self) -> None:
            Counting.setups += 1

    stage = Counting(CaptionRulesParams(min_chars=1))
    first = operators.ready(stage, "runA:0")
    assert operators.ready(Counting(CaptionRulesParams()), "runA:0") is first  # cached: no second setup
    assert Counting.setups == 1
    operators.ready(Counting(CaptionRulesParams()), "runB:0")
    assert Counting.setups == 2 and "runA:0" not in operators._READY
