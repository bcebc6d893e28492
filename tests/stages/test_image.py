"""Image checks (curate.stages.image) on the columns the download stage writes, with exact
boundaries: 199/200 px, aspect ratio 3.0 vs 3.01, 4999/5000 bytes."""

from __future__ import annotations

import pyarrow as pa
import pytest

from curate.stages.image import (
    Cc3mImageFilter,
    Cc3mImageParams,
    Cc12mImageFilter,
    Cc12mImageParams,
    DataCompImageFilter,
    DataCompImageParams,
    ImageChecksFilter,
    ImageChecksParams,
    LaionImageFilter,
    LaionImageParams,
)


def run(stage, sizes: list[tuple[int, int, int]], formats: list[str | None] | None = None,
        ) -> tuple[pa.Table, list[tuple[bool, str | None, str | None]]]:
    """``sizes``: (orig_width, orig_height, orig_bytes) per row; ``formats``: orig_format (jpeg by default)."""
    widths, heights, nbytes = zip(*sizes, strict=True)
    batch = pa.table({
        "orig_width": pa.array(widths, pa.int32()),
        "orig_height": pa.array(heights, pa.int32()),
        "orig_bytes": pa.array(nbytes, pa.int64()),
        "orig_format": pa.array(formats or ["jpeg"] * len(sizes), pa.string()),
    })
    scored = stage.process(batch)
    decision = stage.decide(scored)
    return scored, list(zip(decision.keep.to_pylist(), decision.reason.to_pylist(), decision.detail.to_pylist(), strict=True))


def test_defaults_are_the_papers_thresholds() -> None:
    p = DataCompImageParams()
    assert (p.min_side, p.max_aspect_ratio, p.min_bytes) == (200, 3.0, 0)
    p = LaionImageParams()
    assert (p.min_side, p.max_aspect_ratio, p.min_bytes) == (0, None, 5000)


def test_aspect_ratio_column() -> None:
    stage = DataCompImageFilter(DataCompImageParams())
    scored, _ = run(stage, [(400, 300, 1), (300, 400, 1), (200, 200, 1), (602, 200, 1), (0, 10, 1)])
    assert pa.types.is_floating(scored.schema.field("aspect_ratio").type)
    assert scored.column("aspect_ratio").to_pylist() == pytest.approx([4 / 3, 4 / 3, 1.0, 3.01, 10.0], rel=1e-6)


def test_datacomp_shorter_side_boundary() -> None:
    stage = DataCompImageFilter(DataCompImageParams())
    _, verdicts = run(stage, [(199, 300, 10**5), (200, 300, 10**5), (300, 199, 10**5), (300, 200, 10**5)])
    assert verdicts == [
        (False, "image_too_small", "short_side=199"),
        (True, None, None),
        (False, "image_too_small", "short_side=199"),
        (True, None, None),
    ]


def test_datacomp_aspect_ratio_boundary() -> None:
    stage = DataCompImageFilter(DataCompImageParams())
    _, verdicts = run(stage, [(600, 200, 10**5), (602, 200, 10**5), (200, 600, 10**5), (200, 602, 10**5), (900, 300, 10**5)])
    assert verdicts == [
        (True, None, None),  # exactly 3.0 is allowed (<= 3)
        (False, "aspect_ratio_too_large", "aspect_ratio=3.01"),
        (True, None, None),
        (False, "aspect_ratio_too_large", "aspect_ratio=3.01"),
        (True, None, None),
    ]


def test_laion_bytes_boundary() -> None:
    stage = LaionImageFilter(LaionImageParams())
    _, verdicts = run(stage, [(10, 10, 4999), (10, 10, 5000), (10, 10, 5001), (5000, 1, 0)])
    assert verdicts == [
        (False, "image_bytes_too_small", "bytes=4999"),
        (True, None, None),
        (True, None, None),
        (False, "image_bytes_too_small", "bytes=0"),  # no size or aspect limit in LAION's rule
    ]


def test_first_failing_check_names_the_reason() -> None:
    """Order: too small, then aspect ratio, then bytes."""
    stage = ImageChecksFilter(ImageChecksParams(min_side=200, max_aspect_ratio=3.0, min_bytes=5000))
    _, verdicts = run(stage, [
        (100, 900, 10),    # all three fail
        (900, 200, 10),    # aspect and bytes fail
        (400, 300, 10),    # bytes fail
        (400, 300, 5000),  # passes
    ])
    assert verdicts == [
        (False, "image_too_small", "short_side=100"),
        (False, "aspect_ratio_too_large", "aspect_ratio=4.5"),
        (False, "image_bytes_too_small", "bytes=10"),
        (True, None, None),
    ]


def test_zero_sized_image_does_not_divide_by_zero() -> None:
    stage = DataCompImageFilter(DataCompImageParams())
    scored, verdicts = run(stage, [(0, 0, 100)])
    assert scored.column("aspect_ratio").to_pylist() == [0.0]
    assert verdicts == [(False, "image_too_small", "short_side=0")]


def test_no_limits_keep_everything() -> None:
    stage = ImageChecksFilter(ImageChecksParams())
    _, verdicts = run(stage, [(1, 1000, 0), (5, 5, 1)])
    assert verdicts == [(True, None, None), (True, None, None)]


def test_cc3m_image_rules() -> None:
    """Sharma et al. 2018 §3: JPEG only, both sides > 400 px, aspect <= 2."""
    p = Cc3mImageParams()
    assert (p.min_side, p.max_aspect_ratio, p.formats) == (401, 2.0, ["jpeg"])
    _, verdicts = run(Cc3mImageFilter(p), [(400, 600, 1), (401, 802, 1), (401, 803, 1), (500, 500, 1), (500, 500, 1),
                                           (500, 500, 1)], ["jpeg", "jpeg", "jpeg", "png", None, "jpeg"])
    assert verdicts == [
        (False, "image_too_small", "short_side=400"),
        (True, None, None),  # exactly 2.0
        (False, "aspect_ratio_too_large", "aspect_ratio=2.002493765586035"),
        (False, "image_format_not_kept", "format=png"),
        (False, "image_format_not_kept", "format=unknown"),
        (True, None, None),
    ]


def test_cc12m_image_relaxes_the_aspect_ratio() -> None:
    """Changpinyo et al. 2021 §2: CC3M's image rules with the aspect ratio relaxed to 2.5."""
    _, verdicts = run(Cc12mImageFilter(Cc12mImageParams()), [(401, 1002, 1), (401, 1003, 1), (401, 802, 1)],
                      ["jpeg", "jpeg", "webp"])
    assert verdicts == [(True, None, None), (False, "aspect_ratio_too_large", "aspect_ratio=2.5012468827930174"),
                        (False, "image_format_not_kept", "format=webp")]


def test_format_names_are_case_insensitive_in_params() -> None:
    _, verdicts = run(ImageChecksFilter(ImageChecksParams(formats=["JPEG", "PNG"])), [(9, 9, 1), (9, 9, 1), (9, 9, 1)],
                      ["jpeg", "png", "gif"])
    assert verdicts == [(True, None, None), (True, None, None), (False, "image_format_not_kept", "format=gif")]


@pytest.mark.parametrize("bad", [{"min_side": -1}, {"max_aspect_ratio": 0}, {"min_bytes": -5}, {"extra": True}])
def test_params_are_validated(bad) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        ImageChecksParams(**bad)
