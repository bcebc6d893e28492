"""Image checks: decisions on the original image's size, shape and bytes, all read from the
columns the download stage writes (``orig_width``, ``orig_height``, ``orig_bytes``).

* DataComp basic filtering (Gadre et al. 2023, App. "Basic filtering"): the shorter side of
  the original is at least 200 px and the aspect ratio is at most 3.
* LAION-5B (Schuhmann et al. 2022, §3.2): drop images under 5 KB (5,000 bytes here).
* Conceptual Captions (Sharma et al. 2018, §3 "Image-based filtering"): JPEG only, both sides
  over 400 px, the larger side at most twice the smaller.
* Conceptual 12M (Changpinyo et al. 2021, §2): the same with the aspect ratio relaxed to 2.5.

Undecodable images and decompression bombs never reach this stage: the download stage has
to reject them before decoding (see :mod:`curate.stages.download`).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from curate.stages.base import Decision, Filter, Rule, StageParams, Threshold, append_columns, first_failure
from curate.stages.registry import register


class ImageChecksParams(StageParams):
    min_side: int = Field(0, ge=0, description="shorter side of the original, in pixels")
    max_aspect_ratio: float | None = Field(None, gt=0, description="longer side / shorter side")
    min_bytes: int = Field(0, ge=0, description="size of the downloaded file")
    formats: list[str] | None = Field(None, description="original formats kept (lower-case PIL names: jpeg, png, "
                                                        "webp, gif, ...); null keeps every format")


@register
class ImageChecksFilter(Filter):
    """Reasons: ``image_too_small``, ``aspect_ratio_too_large``, ``image_bytes_too_small``,
    ``image_format_not_kept`` (detail ``format=png``)."""

    kind = "image_checks"
    Params = ImageChecksParams
    reads = ("orig_width", "orig_height", "orig_bytes")
    writes = ("aspect_ratio",)

    def __init__(self, params: ImageChecksParams, name: str | None = None):
        super().__init__(params, name)
        if params.formats is not None:  # only a format rule needs the format (a parquet of sizes may lack it)
            self.reads = (*type(self).reads, "orig_format")

    def process(self, batch: pa.Table) -> pa.Table:
        width = pc.cast(batch.column("orig_width"), pa.float32())
        height = pc.cast(batch.column("orig_height"), pa.float32())
        aspect = pc.divide(pc.max_element_wise(width, height), pc.max_element_wise(pc.min_element_wise(width, height), 1.0))
        return append_columns(batch, {"aspect_ratio": aspect})

    def thresholds(self) -> list[Threshold]:
        """The cuts on columns a row has (the shorter side is no column: orig_width/orig_height)."""
        cuts = [Threshold("orig_bytes", self.params.min_bytes, "above")] if self.params.min_bytes else []
        if self.params.max_aspect_ratio is not None:
            cuts.append(Threshold("aspect_ratio", self.params.max_aspect_ratio, "below"))
        return cuts

    def decide(self, scored: pa.Table) -> Decision:
        p = self.params
        short_side = pc.min_element_wise(scored.column("orig_width"), scored.column("orig_height"))
        aspect, size = scored.column("aspect_ratio"), scored.column("orig_bytes")
        rules = [
            Rule(pc.less(short_side, p.min_side), "image_too_small", "short_side", short_side),
            Rule(pc.greater(aspect, p.max_aspect_ratio or float("inf")), "aspect_ratio_too_large", "aspect_ratio", aspect),
            Rule(pc.less(size, p.min_bytes), "image_bytes_too_small", "bytes", size),
        ]
        if p.formats is not None:
            fmt = pc.fill_null(scored.column("orig_format"), "unknown")
            kept = pa.array([f.lower() for f in p.formats], pa.string())
            rules.append(Rule(pc.invert(pc.is_in(fmt, value_set=kept)), "image_format_not_kept", "format", fmt))
        return first_failure(rules)


class DataCompImageParams(ImageChecksParams):
    min_side: int = Field(200, ge=0, description="DataComp: shorter side >= 200 px")
    max_aspect_ratio: float | None = Field(3.0, gt=0, description="DataComp: aspect ratio <= 3")


@register
class DataCompImageFilter(ImageChecksFilter):
    """DataComp basic filtering's image rule: shorter side >= 200 px, aspect ratio <= 3."""

    kind = "datacomp_image"
    Params = DataCompImageParams


class LaionImageParams(ImageChecksParams):
    min_bytes: int = Field(5000, ge=0, description="LAION-5B: at least 5 KB")


@register
class LaionImageFilter(ImageChecksFilter):
    """LAION-5B's image rule: the downloaded file is at least 5 KB."""

    kind = "laion_image"
    Params = LaionImageParams


class Cc3mImageParams(ImageChecksParams):
    min_side: int = Field(401, ge=0, description="CC3M: both sides over 400 px")
    max_aspect_ratio: float | None = Field(2.0, gt=0, description="CC3M: larger side at most 2x the smaller")
    formats: list[str] | None = Field(["jpeg"], description="CC3M: JPEG only")


@register
class Cc3mImageFilter(ImageChecksFilter):
    """Conceptual Captions' image rules (Sharma et al. 2018, §3): JPEG, both sides > 400 px,
    aspect ratio <= 2."""

    kind = "cc3m_image"
    Params = Cc3mImageParams


class Cc12mImageParams(Cc3mImageParams):
    max_aspect_ratio: float | None = Field(2.5, gt=0, description="CC12M: aspect ratio relaxed to <= 2.5")


@register
class Cc12mImageFilter(ImageChecksFilter):
    """Conceptual 12M's image rules (Changpinyo et al. 2021, §2): CC3M's with the aspect ratio
    relaxed from 2 to 2.5."""

    kind = "cc12m_image"
    Params = Cc12mImageParams
