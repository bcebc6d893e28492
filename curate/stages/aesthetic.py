"""Aesthetic scores on CLIP image embeddings, as LAION-Aesthetics was made: LAION's v1 linear
heads (``sa_0_4_vit_{b_32,b_16,l_14}_linear.pth``; LAION-Aesthetics V1 is the LAION-5B samples
whose L/14 score is > 7, 120M, and LAION-Art those > 8, per LAION-AI/laion-datasets
``laion-aesthetic.md``) and the improved MLP predictor (``sac+logos+ava1-l14-linearMSE.pth``,
which scored LAION-Aesthetics V2: subsets 6.5+, 6.25+, 6+, ..., laion.ai/blog/laion-aesthetics).

Reads ``clip_image_embedding`` (OpenAI CLIP of the head's width: the improved head and the L/14
v1 head take ViT-L/14, the B/32 one ViT-B/32), writes ``aesthetic`` (float32); where
``min_score`` is set, drops rows scoring ``<= min_score`` as ``aesthetic_too_low`` (detail
``aesthetic=6.1234``), i.e. keeps scores above the cut.
"""

from __future__ import annotations

from functools import partial
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, ValidationInfo, field_validator

from curate.models.laion_heads import IMAGE_EMBEDDING, AestheticHead, image_embeddings, scores_column
from curate.stages.base import Decision, Filter, Rule, StageParams, Threshold, append_columns, first_failure
from curate.stages.registry import register
from curate.stages.safety import HeadWeights, check_weights, keep_all, no_embedding


class AestheticParams(StageParams):
    head: Literal["v1", "improved"] = Field("improved", description="v1: LAION's linear head "
                                            "(sa_0_4_vit_*_linear.pth); improved: the MLP (sac+logos+ava1-l14-linearMSE.pth)")
    weights: str = Field(description="the head's state dict: a path, hf-hub:ORG/REPO/FILE or URL fetched by "
                                     "`curate models pull`")
    min_score: float | None = Field(None, description="drop rows scoring <= this (LAION-Aesthetics: 7, 6.5, 6); "
                                                      "null: tag only")

    @field_validator("weights")
    @classmethod
    def _head_loads(cls, ref: str, info: ValidationInfo) -> str:
        head = info.data.get("head")
        return ref if head is None else check_weights(ref, "aesthetic: weights", partial(AestheticHead, head=head))


@register
class AestheticFilter(Filter):
    """``aesthetic`` = LAION's aesthetic predictor on ``clip_image_embedding``."""

    kind = "aesthetic"
    Params = AestheticParams
    reads = (IMAGE_EMBEDDING,)
    writes = ("aesthetic",)

    def __init__(self, params: AestheticParams, name: str | None = None):
        super().__init__(params, name)
        self.weights = HeadWeights(params.weights, f"{self.kind}: weights", f"laion_aesthetic_{params.head}")

    def content_record(self) -> dict:
        return self.weights.record()

    def embedding_width(self) -> tuple[int, str]:
        """(the embedding width the head takes, the CLIP model it was trained on), on the driver."""
        head = AestheticHead(self.weights.local_path(), self.params.head)
        return head.dim, head.clip_model

    def setup(self) -> None:
        self._head = AestheticHead(self.weights.local_path(), self.params.head)

    def teardown(self) -> None:
        self._head = None

    def process(self, batch: pa.Table) -> pa.Table:
        head = self._head
        embeddings, valid = image_embeddings(batch, f"{self.name} ({self.params.weights})", head.dim, head.clip_model)
        return append_columns(batch, {"aesthetic": scores_column(head(embeddings), valid)})

    def thresholds(self) -> list[Threshold]:
        limit = self.params.min_score
        return [] if limit is None else [Threshold("aesthetic", limit, "above")]

    def decide(self, scored: pa.Table) -> Decision:
        if self.params.min_score is None:
            return keep_all(scored.num_rows)
        score = scored.column("aesthetic")
        low = Rule(pc.less_equal(score, self.params.min_score), "aesthetic_too_low", "aesthetic", pc.round(score, 4))
        return first_failure([no_embedding(scored, "aesthetic"), low])
