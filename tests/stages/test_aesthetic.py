"""aesthetic (curate.stages.aesthetic) on tiny inputs and on the real rating embeddings: the
``aesthetic`` column, the exact ledger rows through apply_stage, and the one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from conftest import SHARED
from torch import nn

from curate.config import load_spec
from curate.engine.blocks import apply_stage
from curate.errors import ConfigError, UserError
from curate.models.weights import file_sha256
from curate.schema import DROP_DETAIL, DROP_REASON, DROP_STAGE, UID
from curate.stages.aesthetic import AestheticFilter, AestheticParams

MODELS = SHARED / "models"


def block(rows: list[list[float] | None], dim: int) -> pa.Table:
    n = len(rows)
    return pa.table({UID: [f"{i:032x}" for i in range(n)],
                     "clip_image_embedding": pa.array(rows, pa.list_(pa.float32(), dim)),
                     DROP_STAGE: pa.nulls(n, pa.string()), DROP_REASON: pa.nulls(n, pa.string()),
                     DROP_DETAIL: pa.nulls(n, pa.string())})


def ledger(out: pa.Table) -> list[tuple]:
    return list(zip(out.column(DROP_STAGE).to_pylist(), out.column(DROP_REASON).to_pylist(),
                    out.column(DROP_DETAIL).to_pylist(), strict=True))


@pytest.fixture
def tiny_v1(tmp_path: Path) -> Path:
    """A v1-style head on 3-d embeddings: score = 1*x0 + 2*x1 + 4*x2 + 0.5."""
    linear = nn.Linear(3, 1)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0, 2.0, 4.0]]))
        linear.bias.fill_(0.5)
    path = tmp_path / "tiny_linear.pth"
    torch.save(linear.state_dict(), path)
    return path


def aesthetic(weights: Path, **params) -> AestheticFilter:
    stage = AestheticFilter(AestheticParams(weights=str(weights), **params))
    stage.setup()
    return stage


def test_tags_by_default(tiny_v1: Path) -> None:
    stage = aesthetic(tiny_v1, head="v1")
    assert (stage.kind, stage.reads, stage.writes) == ("aesthetic", ("clip_image_embedding",), ("aesthetic",))
    assert AestheticParams.model_fields["head"].default == "improved"
    out = apply_stage(stage, block([[1, 0, 0], [0, 1, 0], None, [0, 0, 1]], 3))
    assert out.schema.field("aesthetic").type == pa.float32()
    assert out.column("aesthetic").to_pylist() == [1.5, 2.5, None, 4.5]
    assert ledger(out) == [(None, None, None)] * 4
    assert stage.content_record() == {"model": "laion_aesthetic_v1", "ref": str(tiny_v1), "sha256": file_sha256(tiny_v1),
                                      "bytes": tiny_v1.stat().st_size}


def test_min_score_keeps_scores_above_it(tiny_v1: Path) -> None:
    out = apply_stage(aesthetic(tiny_v1, head="v1", min_score=2.5), block([[1, 0, 0], [0, 1, 0], None, [0, 0, 1]], 3))
    assert ledger(out) == [("aesthetic", "aesthetic_too_low", "aesthetic=1.5"),
                           ("aesthetic", "aesthetic_too_low", "aesthetic=2.5"),
                           ("aesthetic", "no_clip_embedding", "clip_image_embedding=null"), (None, None, None)]


def ratings(tag: str) -> list[list[float]]:
    folder = MODELS / "laion-aesthetic" / f"vit_{tag}_embeddings"
    if not folder.is_dir():
        pytest.skip(f"needs {folder} (real CLIP embeddings; see ../shared/models/README.md)")
    return [np.load(folder / f"rating{i}.npy").reshape(-1).tolist() for i in range(10)]


@pytest.mark.shared_data
def test_v1_b32_on_the_rating_embeddings(shared_models) -> None:
    stage = aesthetic(MODELS / "laion-aesthetic" / "sa_0_4_vit_b_32_linear.pth", head="v1", min_score=5)
    out = apply_stage(stage, block(ratings("b_32"), 512))
    assert (np.diff(out.column("aesthetic").to_numpy()) > 0).all()
    assert ledger(out) == [("aesthetic", "aesthetic_too_low", f"aesthetic={s}") for s in ("-1.47", "0.2728", "1.99", "3.6114")] \
        + [(None, None, None)] * 6


@pytest.mark.shared_data
def test_improved_on_the_rating_embeddings(shared_models) -> None:
    stage = aesthetic(MODELS / "improved-aesthetic" / "sac+logos+ava1-l14-linearMSE.pth", min_score=5)
    out = apply_stage(stage, block(ratings("l_14"), 768))
    assert [round(s, 2) for s in out.column("aesthetic").to_pylist()] == [1.66, 2.36, 3.07, 3.67, 4.24, 4.7, 5.07, 5.37,
                                                                          5.58, 5.75]
    assert [row[1] for row in ledger(out)] == ["aesthetic_too_low"] * 6 + [None] * 4
    with pytest.raises(UserError) as err:  # the L/14 head given B/32 embeddings
        apply_stage(stage, block(ratings("b_32"), 512))
    assert str(err.value) == (f"aesthetic ({MODELS}/improved-aesthetic/sac+logos+ava1-l14-linearMSE.pth): the head takes "
                              "768-d embeddings of OpenAI CLIP ViT-L/14, but clip_image_embedding holds 512-d ones: score "
                              "images with OpenAI CLIP ViT-L/14 in clip_score, or give this head's weights for the CLIP "
                              "model used")


def spec_error(stage: dict) -> str:
    with pytest.raises(ConfigError) as err:
        load_spec({"input": {"path": "in.parquet"}, "stages": [stage]})
    return str(err.value)


def test_spec_errors(tmp_path: Path, tiny_v1: Path) -> None:
    missing = tmp_path / "sac+logos+ava1-l14-linearMSE.pth"
    assert spec_error({"stage": "aesthetic", "weights": str(missing)}) == (
        f"<dict>: stages[0].weights: aesthetic: weights: {missing} does not exist (give the path of the weights file, or a "
        "hub reference hf-hub:ORG/REPO/FILE fetched with `curate models pull`)")
    assert spec_error({"stage": "aesthetic", "weights": str(tiny_v1)}) == (  # a v1 file for the default improved head
        f"<dict>: stages[0].weights: {tiny_v1}: not a LAION aesthetic improved head: linear layers at layers.(); the "
        "improved MLP has them at layers.(0, 2, 4, 6, 7) (*-linearMSE.pth) or (0, 3, 6, 9, 11) (*-reluMSE.pth)")
    assert spec_error({"stage": "aesthetic", "head": "v1", "weights": str(tiny_v1)}) == (
        "<dict>: stages[0]: aesthetic reads 'clip_image_embedding', which no earlier stage writes (add clip_score before it)")
    assert "head" in spec_error({"stage": "aesthetic", "head": "v2", "weights": str(tiny_v1)})
