"""Watermark tagging as LAION-5B did it (§3.3): LAION's EfficientNet-B3 detector on the image
(curate.models.watermark), ``pwatermark`` on every sample; LAION-5B keeps ``pwatermark < 0.8``.

Reads ``image``; writes ``pwatermark`` (and ``watermark_error``, the decode error). Drops
``undecodable_image`` always and ``watermarked`` (detail ``pwatermark=0.1234``) where
``max_pwatermark`` is set (``>= max`` drops). ``weights`` is required: no copy of LAION's
weights can be had offline (``curate models pull`` the released file, or give a local path).
``device: auto`` runs on CUDA when the stage has a GPU (``resources.gpus``) and torch sees one.
"""

from __future__ import annotations

from typing import Literal

import pyarrow as pa
from pydantic import Field, field_validator

from curate.errors import UserError
from curate.models.laion_heads import scores_column
from curate.models.watermark import RELEASED
from curate.models.weights import load_state_dict
from curate.schema import IMAGE
from curate.stages.base import Decision, Filter, Resources, RunContext, StageParams, Threshold, append_columns
from curate.stages.registry import register
from curate.stages.safety import HeadWeights, at_least, check_weights, image_decision


def _load(path) -> object:
    from curate.models.watermark import load_model

    return load_model(load_state_dict(path), str(path))


def _check(path) -> None:
    from curate.models.watermark import check_state

    check_state(load_state_dict(path), str(path))


class WatermarkParams(StageParams):
    weights: str = Field(description=f"LAION's watermark detector state dict (released as {RELEASED}): a path, "
                                     "hf-hub:ORG/REPO/FILE or URL fetched by `curate models pull`")
    max_pwatermark: float | None = Field(None, ge=0.0, le=1.0, description="drop rows with pwatermark >= this "
                                                                          "(LAION keeps < 0.8); null: tag only")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when resources.gpus > 0")
    batch_size: int = Field(32, ge=1, description="images per forward pass")

    @field_validator("weights")
    @classmethod
    def _model_loads(cls, ref: str) -> str:
        return check_weights(ref, "watermark: weights", _check)


@register
class WatermarkFilter(Filter):
    """``pwatermark`` = P(watermark) of LAION's detector on ``image``."""

    kind = "watermark"
    Params = WatermarkParams
    reads = (IMAGE,)
    writes = ("pwatermark", "watermark_error")
    default_resources = Resources(cpus=1.0, batch_size=256)

    def __init__(self, params: WatermarkParams, name: str | None = None):
        super().__init__(params, name)
        self.weights = HeadWeights(params.weights, f"{self.kind}: weights", "laion_watermark_efficientnet_b3")

    def bind(self, context: RunContext) -> None:
        if self.params.device == "cuda" and self.resources.gpus <= 0:
            raise UserError(f"{self.name}: device cuda needs a GPU: set resources: {{gpus: 1, batch_size: 256}} "
                            "(or device: auto)")

    def content_record(self) -> dict:
        return self.weights.record()

    def setup(self) -> None:
        import torch

        wanted = self.params.device
        if wanted == "auto":
            wanted = "cuda" if self.resources.gpus > 0 and torch.cuda.is_available() else "cpu"
        elif wanted == "cuda" and not torch.cuda.is_available():
            raise UserError(f"{self.name}: device cuda, but torch sees no GPU on this worker (device: auto runs on CPU)")
        self._device = wanted
        self._model = _load(self.weights.local_path()).to(wanted)

    def teardown(self) -> None:
        self._model = None

    def process(self, batch: pa.Table) -> pa.Table:
        from curate.models.image_input import score_images
        from curate.models.watermark import preprocess, pwatermark

        def infer(images):
            return pwatermark(self._model, images, self._device)

        scores, decoded, errors = score_images(batch.column(IMAGE).to_pylist(), preprocess, infer, self.params.batch_size)
        return append_columns(batch, {"pwatermark": scores_column(scores[decoded], decoded),
                                      "watermark_error": pa.array(errors, pa.string())})

    def thresholds(self) -> list[Threshold]:
        limit = self.params.max_pwatermark
        return [] if limit is None else [Threshold("pwatermark", limit, "below")]

    def decide(self, scored: pa.Table) -> Decision:
        limit = self.params.max_pwatermark
        rule = at_least(scored.column("pwatermark"), limit, "watermarked", "pwatermark") if limit is not None else None
        return image_decision(scored, "watermark_error", rule)
