"""CLIP image-text scoring: ``clip_score`` is the cosine of the L2-normalised image and text
embeddings of an open_clip model (Radford et al. 2021).

Thresholds by source: LAION-400M dropped pairs under 0.3 and LAION-5B under 0.28, both with
OpenAI's ViT-B/32 (Schuhmann et al. 2021, §2; 2022, §3.2). DataComp's "CLIP score" baselines
keep a *fraction* of the pool (top 30 % by ViT-L/14, Gadre et al. 2023, §4 and Table 3): that is
the global stage ``top_fraction`` on ``clip_score`` after this one. A filtering network (Fang et
al. 2023) is a CLIP trained on trusted data to score a pool: ``filter_net: DIR`` uses one curate
trained (``train:`` trains it there when it is missing), with its calibrated threshold.

The stage expands into CPU preprocessing tasks, an embedding actor pool (GPU with autocast where
the cluster has one, CPU otherwise) and this scoring step (:mod:`curate.stages.clip_parts`). The
embeddings are feature columns, stored per shard as float16 ``.npy`` row-aligned with the shard
parquet, so heads (NSFW, aesthetic), dedup and reruns reuse them; ``clip_model`` names the
model and weights hash that made each row's embeddings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from curate.errors import UserError
from curate.models import open_clip_models
from curate.schema import CAPTION, IMAGE
from curate.stages.base import Decision, Filter, Resources, RunContext, StageParams, Threshold, append_columns
from curate.stages.clip_parts import (
    IMAGE_EMBEDDING,
    MODEL_COLUMN,
    PIXELS,
    TEXT_EMBEDDING,
    TOKENS,
    ClipEmbed,
    ClipPreprocess,
)
from curate.stages.registry import register

CALIBRATED = "calibrated"


class ClipScoreParams(StageParams):
    model: str = Field("ViT-B-32", description="open_clip model name (ViT-B-32, ViT-L-14, ...; hf-hub:ORG/REPO)")
    pretrained: str | None = Field(None, description="a pretrained tag of the model (openai, laion2b_s34b_b79k, ...: "
                                                     "fetched by `curate models pull MODEL:TAG`), a weights file, "
                                                     "hf-hub:ORG/REPO/FILE, or random")
    filter_net: str | None = Field(None, description="a directory holding a filtering network curate trained "
                                                     "(model, weights, calibrated threshold); replaces model/pretrained")
    train: dict | None = Field(None, description="train the filtering network into filter_net when it is missing "
                                                 "(options of curate.train.filter_net.FilterNetSpec)")
    threshold: float | Literal["calibrated"] | None = Field(
        None, description="drop rows with clip_score below this (LAION-5B: 0.28, LAION-400M: 0.3 with ViT-B/32); "
                          "calibrated: the filtering network's; unset: score only")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: a GPU when the cluster has one")
    precision: Literal["fp16", "bf16", "fp32"] = Field("fp16", description="autocast dtype on the GPU (CPU runs fp32)")
    batch_size: int = Field(64, gt=0, le=8192, description="rows per model forward")

    @model_validator(mode="after")
    def _model_is_here(self) -> ClipScoreParams:
        if self.filter_net is not None:
            if self.train is None and not (Path(self.filter_net).expanduser() / "filter_net.json").is_file():
                raise ValueError(f"filter_net: {self.filter_net} holds no filtering network (filter_net.json): train one "
                                 "with `train:` or give the directory of one")
            if self.train is not None:
                from pydantic import ValidationError

                from curate.train.filter_net import FilterNetSpec

                try:
                    FilterNetSpec(**self.train)
                except ValidationError as err:
                    first = err.errors()[0]
                    raise ValueError(f"train.{'.'.join(map(str, first['loc']))}: {first['msg']} "
                                     f"(options: {', '.join(FilterNetSpec.model_fields)})") from None
            return self
        if self.train is not None:
            raise ValueError("train: needs filter_net (the directory the filtering network is trained into)")
        if self.threshold == CALIBRATED:
            raise ValueError("threshold: calibrated needs a filter_net (a pretrained model has no calibrated threshold)")
        try:
            open_clip_models.resolve(self.model, self.pretrained)
        except UserError as err:
            raise ValueError(str(err).removeprefix("clip_score: ")) from None
        return self


@register
class ClipScoreFilter(Filter):
    """``clip_score`` (float32) from the embeddings; with ``threshold``, rows below it are dropped
    (``clip_score_too_low``, detail ``clip_score=0.2345``). Rows whose image cannot be decoded
    are dropped by the preprocessing part (``clip_image_undecodable`` / ``clip_image_missing``)."""

    kind = "clip_score"
    Params = ClipScoreParams
    reads = (IMAGE, CAPTION)
    writes = (IMAGE_EMBEDDING, TEXT_EMBEDDING, "clip_score", MODEL_COLUMN)
    column_roles = {IMAGE_EMBEDDING: "feature", TEXT_EMBEDDING: "feature", PIXELS: "heavy", TOKENS: "heavy"}
    replayable = False
    default_resources = Resources(cpus=1)

    def __init__(self, params: ClipScoreParams, name: str | None = None):
        super().__init__(params, name)
        self.ref: open_clip_models.ClipModelRef | None = None
        self.threshold: float | None = None if params.threshold == CALIBRATED else params.threshold

    def bind(self, context: RunContext) -> None:
        """Resolve the model on the driver (training the filtering network first if asked)."""
        params = self.params
        if params.filter_net is None:
            self.ref = open_clip_models.resolve(params.model, params.pretrained)
            return
        from curate.train.filter_net import FilterNetSpec, ensure_filter_net, load_filter_net

        net = ensure_filter_net(params.filter_net, FilterNetSpec(**params.train)) if params.train is not None \
            else load_filter_net(params.filter_net)
        self.ref = open_clip_models.resolve(net.model, str(net.weights))
        if params.threshold == CALIBRATED:
            self.threshold = float(net.threshold)

    def content_record(self) -> dict:
        record = dict(self.ref.record)
        if self.params.threshold == CALIBRATED:
            record["threshold"] = self.threshold
        return record

    def _device(self) -> str:
        if self.params.device != "auto":
            return self.params.device
        import ray

        return "cuda" if ray.is_initialized() and ray.cluster_resources().get("GPU", 0) >= 1 else "cpu"

    def expand(self) -> list:
        if self.ref is None:  # spec-check time (before bind): the shape of the parts is all that is asked
            self.ref = open_clip_models.ClipModelRef(self.params.model, None)
        device = self._device()
        if device == "cuda":
            import ray

            if ray.is_initialized() and ray.cluster_resources().get("GPU", 0) < 1:
                raise UserError(f"{self.name}: device: cuda, but the Ray cluster has no GPU (use device: auto or cpu)")
        batch = self.params.batch_size
        preprocess = ClipPreprocess(self.params, self.ref, name=self.name)
        preprocess.resource_overrides = {"batch_size": batch}
        embed = ClipEmbed(self.params, self.ref, device, self.params.precision, name=self.name)
        if device == "cuda":
            embed.default_resources = Resources(cpus=1, gpus=1, batch_size=batch)
        else:
            # One CPU actor per node computing on all its cores, one logical CPU left to the tasks
            # around it. Ray Data kept a single 1-CPU actor busy (one thread: 4.5 samples/s of
            # ViT-B/32 on 2 cores, against 8.3 with 2 threads; benchmarks/clip_stage.py).
            cores = _node_cpus()
            embed.default_resources = Resources(cpus=max(1, cores - 1), batch_size=batch)
            embed.threads = cores
        embed.resource_overrides = self.resource_overrides  # the YAML `resources:` size the model's actors
        return [preprocess, embed, self]

    def process(self, batch: pa.Table) -> pa.Table:
        image = batch.column(IMAGE_EMBEDDING).combine_chunks()
        text = batch.column(TEXT_EMBEDDING).combine_chunks()
        dim = image.type.list_size
        image_matrix = pc.list_flatten(image).to_numpy(zero_copy_only=False).reshape(-1, dim)
        text_matrix = pc.list_flatten(text).to_numpy(zero_copy_only=False).reshape(-1, dim)
        score = np.einsum("ij,ij->i", image_matrix, text_matrix, dtype=np.float32)
        return append_columns(batch, {"clip_score": pa.array(score, pa.float32())})

    def thresholds(self) -> list[Threshold]:
        return [] if self.threshold is None else [Threshold("clip_score", self.threshold, "above")]

    def decide(self, scored: pa.Table) -> Decision:
        score = scored.column("clip_score").combine_chunks()
        if self.threshold is None:
            return Decision(keep=pa.array(np.ones(len(score), dtype=bool)), reason=pa.nulls(len(score), pa.string()))
        low = pc.less(score, self.threshold)
        detail = pc.binary_join_element_wise("clip_score=", pc.cast(pc.round(score, 4), pa.string()), "")
        return Decision(keep=pc.invert(low), reason=pc.if_else(low, "clip_score_too_low", pa.scalar(None, pa.string())),
                        detail=pc.if_else(low, detail, pa.scalar(None, pa.string())))


def _node_cpus() -> int:
    """CPUs of the smallest node of the running Ray cluster (this machine's before Ray starts)."""
    import os

    import ray

    if ray.is_initialized():
        counts = [int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
        if counts and min(counts) > 0:
            return min(counts)
    return len(os.sched_getaffinity(0))


def check_embedding_widths(stages: list) -> None:
    """On the driver, before any row is read: a head reading ``clip_image_embedding`` (a stage
    with ``embedding_width()``) must take the width the CLIP stage before it makes; otherwise it
    would fail on its first batch, after every download."""
    source = None
    for stage in stages:
        if isinstance(stage, ClipScoreFilter) and stage.ref is not None:
            source = stage
        width_of = getattr(stage, "embedding_width", None)
        if width_of is None or source is None:
            continue
        made = open_clip_models.embed_dim(source.ref)
        takes, trained_on = width_of()
        if made is not None and takes != made:
            raise UserError(f"{stage.name}: its head takes {takes}-d embeddings ({trained_on}), but {source.name} makes "
                            f"{made}-d ones ({source.ref.record.get('model')}): give {stage.name} the head of that model, "
                            f"or score with {trained_on} in {source.name}")
