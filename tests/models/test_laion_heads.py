"""LAION's CLIP-embedding heads (curate.models.laion_heads): the NSFW detector against a naive
per-row implementation of the forward pass documented in ../shared/models/README.md (its
categorical-column quirk included), the aesthetic heads on the ten real rating embeddings, and
the one-line errors (wrong file, wrong embedding width)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from conftest import SHARED
from torch import nn

from curate.errors import UserError
from curate.models.laion_heads import AestheticHead, ClipNsfwHead, _key_codes, _percent_f_codes, image_embeddings

MODELS = SHARED / "models"
BACKBONES = [("b_32", 512), ("l_14", 768)]


@pytest.fixture(scope="module")
def models() -> Path:
    if not MODELS.is_dir():
        pytest.skip(f"needs {MODELS} (real LAION heads; see ../shared/models/README.md)")
    return MODELS


def printf(value) -> str:
    return "%f" % value  # noqa: UP031 (the README's key, literally)


def naive_forward(npz: dict, row: np.ndarray) -> np.float32:
    """The README's forward pass for one float32 row, literally: a dict lookup of ``"%f" % x[c]``,
    then (x - mean) / max(sqrt(variance), 1e-7), dense layers with ReLU between, sigmoid; in
    float64 after the lookup, as the head computes (see test_float32_forward_is_within_rounding)."""
    x = np.array(row, np.float32)
    for c in npz["cat_cols"]:
        table = dict(zip(npz[f"cat{c}_keys"].tolist(), npz[f"cat{c}_vals"].tolist(), strict=True))
        x[c] = table.get(printf(x[c]), 0)
    h = (x.astype(np.float64) - npz["mean"].astype(np.float64)) / np.maximum(np.sqrt(npz["variance"].astype(np.float64)), 1e-7)
    layers = sum(1 for name in npz if name.startswith("W"))
    for i in range(layers):
        h = h @ npz[f"W{i}"].astype(np.float64) + npz[f"b{i}"].astype(np.float64)
        if i < layers - 1:
            h = np.maximum(h, 0)
    return np.float32(1 / (1 + np.exp(-h[0])))


def real_embeddings(models: Path, tag: str) -> np.ndarray:
    """The violence-detection prompt embeddings (2) and the ten rating embeddings of a backbone."""
    rows = [np.load(models / "laion-clip-nsfw" / f"violence_detection_vit_{tag}.npy")]
    rows += [np.load(models / "laion-aesthetic" / f"vit_{tag}_embeddings" / f"rating{i}.npy").reshape(1, -1) for i in range(10)]
    return np.concatenate(rows).astype(np.float32)


def with_categorical_hits(npz: dict, rows: np.ndarray) -> np.ndarray:
    """Copies of ``rows`` whose categorical columns hold values whose "%f" is a key of the table
    (the real rows rarely do), so the lookup itself is exercised."""
    planted = rows.copy()
    for c in npz["cat_cols"]:
        keys = npz[f"cat{c}_keys"]
        values = np.array([np.float32(float(k)) for k in keys[:200]], np.float32)
        values = values[np.array([printf(v) for v in values]) == keys[:200]]  # keys a float32 spells back
        planted[:, c] = values[np.arange(len(rows)) * 7 % len(values)]
    return planted


def test_percent_f_codes_equal_printf() -> None:
    """The vectorised key of x[c] is exactly the code of ``"%f" % x[c]``, ties and signed zero included."""
    rng = np.random.default_rng(0)
    values = np.concatenate([
        rng.uniform(-1, 1, 200_000).astype(np.float32),
        rng.normal(0, 0.05, 100_000).astype(np.float16).astype(np.float32),  # LAION's embeddings were float16
        np.arange(-256, 257, dtype=np.float32) / 128,  # k/128: exact ties at the sixth decimal (0.0078125)
        np.array([0.0, -0.0, -1e-9, 1e-9, -4.9e-7, 4.9e-7, 5e-7, -5e-7, 0.9999995, -0.9999995], np.float32),
    ])
    printed = np.array([printf(v) for v in values])
    assert (_percent_f_codes(values) == _key_codes(printed)).all()
    assert printf(np.float32(1 / 128)) == "0.007812" and printf(np.float32(-1e-9)) == "-0.000000"
    assert _percent_f_codes(np.array([np.nan, np.inf, -np.inf], np.float32)).tolist() == [np.iinfo(np.int64).min] * 3


def test_tiny_head_by_hand(tmp_path: Path) -> None:
    """A 2-d head written here: column 1 is categorical ("0.250000" -> 3), one dense layer."""
    path = tmp_path / "tiny.npz"
    np.savez(path, mean=np.array([0.5, 1.0], np.float32), variance=np.array([4.0, 0.0], np.float32),
             W0=np.array([[2.0], [1e-7]], np.float32), b0=np.array([0.25], np.float32), cat_cols=np.array([1]),
             cat1_keys=np.array(["0.250000", "-0.000000"]), cat1_vals=np.array([3, 5]))
    head = ClipNsfwHead(path)
    got = head(np.array([[1.5, 0.25], [0.5, -1e-9], [0.5, 0.5]], np.float32))
    # row 0: x=(1.5, 3) -> h=((1.5-.5)/2, (3-1)/1e-7) -> .5*2 + 2e7*1e-7 + .25 = 3.25
    # row 1: "-0.000000" -> 5: (0, 4e7) -> 4 + .25; row 2: absent -> 0: (0, -1e7) -> -1 + .25
    expected = 1 / (1 + np.exp(-np.array([3.25, 4.25, -0.75])))
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got.dtype == np.float32 and (head.dim, head.clip_model) == (2, "a 2-d CLIP")


@pytest.mark.shared_data
@pytest.mark.parametrize(("tag", "dim"), BACKBONES)
def test_nsfw_head_is_the_documented_forward_pass(models: Path, tag: str, dim: int) -> None:
    path = models / "laion-clip-nsfw" / f"clip_nsfw_vit_{tag}.npz"
    npz = dict(np.load(path))
    head = ClipNsfwHead(path)
    assert (head.dim, head.clip_model) == (dim, f"OpenAI CLIP ViT-{tag[0].upper()}/{tag[2:]}")
    rows = real_embeddings(models, tag)
    planted = with_categorical_hits(npz, rows)
    for batch in (rows, planted):
        got = head(batch)
        assert got.dtype == np.float32
        assert got.tolist() == [naive_forward(npz, row) for row in batch]  # exactly
        assert got.tolist() == np.concatenate([head(batch[i:i + 1]) for i in range(len(batch))]).tolist()
    assert not np.array_equal(head(planted), head(rows))  # the planted keys changed the inputs the net saw
    assert ((head(rows) >= 0) & (head(rows) < 0.5)).all()  # ordinary photos and prompts: safe for LAION


@pytest.mark.shared_data
@pytest.mark.parametrize(("tag", "dim"), BACKBONES)
def test_float32_forward_is_within_rounding(models: Path, tag: str, dim: int) -> None:
    """The same pass in float32 (as Keras ran it) differs by float32 rounding only."""
    path = models / "laion-clip-nsfw" / f"clip_nsfw_vit_{tag}.npz"
    npz = dict(np.load(path))
    rows = real_embeddings(models, tag)
    for c in npz["cat_cols"]:  # absent keys become 0, as in the head
        table = dict(zip(npz[f"cat{c}_keys"].tolist(), npz[f"cat{c}_vals"].tolist(), strict=True))
        rows_c = [table.get(printf(v), 0) for v in rows[:, c]]
        rows[:, c] = rows_c
    h = (rows - npz["mean"]) / np.maximum(np.sqrt(npz["variance"]), np.float32(1e-7))
    layers = sum(1 for name in npz if name.startswith("W"))
    for i in range(layers):
        h = h @ npz[f"W{i}"] + npz[f"b{i}"]
        h = np.maximum(h, 0) if i < layers - 1 else h
    float32 = 1 / (1 + np.exp(-h[:, 0]))
    np.testing.assert_allclose(ClipNsfwHead(path)(real_embeddings(models, tag)), float32, rtol=1e-5)


@pytest.mark.shared_data
@pytest.mark.parametrize(("tag", "dim"), BACKBONES)
def test_v1_scores_the_ratings_in_order(models: Path, tag: str, dim: int) -> None:
    head = AestheticHead(models / "laion-aesthetic" / f"sa_0_4_vit_{tag}_linear.pth", "v1")
    assert (head.dim, head.clip_model) == (dim, f"OpenAI CLIP ViT-{tag[0].upper()}/{tag[2:]}")
    scores = head(real_embeddings(models, tag)[2:])
    assert scores.dtype == np.float32 and (np.diff(scores) > 0).all()
    if tag == "l_14":  # the README's figures
        assert (round(float(scores[0]), 2), round(float(scores[-1]), 2)) == (-2.46, 11.3)


class ReferenceMLP(nn.Module):
    """improved-aesthetic-predictor's simple_inference.py ``MLP`` (the LightningModule's layers)."""

    def __init__(self, input_size: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(input_size, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1))

    def forward(self, x):
        return self.layers(x)


@pytest.mark.shared_data
def test_improved_head_loads_strict_and_scores_the_ratings(models: Path) -> None:
    path = models / "improved-aesthetic" / "sac+logos+ava1-l14-linearMSE.pth"
    head = AestheticHead(path, "improved")
    assert (head.dim, head.clip_model) == (768, "OpenAI CLIP ViT-L/14")
    ratings = real_embeddings(models, "l_14")[2:]
    scores = head(ratings)
    reference = ReferenceMLP(768)
    reference.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    with torch.no_grad():
        assert scores.tolist() == reference.eval()(torch.from_numpy(ratings))[:, 0].tolist()
    # observed 1.66, 2.36, 3.07, 3.67, 4.24, 4.70, 5.07, 5.37, 5.58, 5.75: monotone in the rating, on 1..10
    assert (np.diff(scores) > 0).all() and 1 < scores[0] < 2 and 5.5 < scores[-1] < 6
    relu = AestheticHead(models / "improved-aesthetic" / "ava+logos-l14-reluMSE.pth", "improved")  # the other layout
    assert ((relu(ratings) > 3) & (relu(ratings) < 5)).all()


def test_wrong_files_are_one_line_errors(tmp_path: Path) -> None:
    v1 = tmp_path / "sa_0_4_vit_b_32_linear.pth"
    torch.save(nn.Linear(512, 1).state_dict(), v1)
    with pytest.raises(UserError) as err:
        AestheticHead(v1, "improved")
    assert str(err.value) == (f"{v1}: not a LAION aesthetic improved head: linear layers at layers.(); the improved MLP "
                              "has them at layers.(0, 2, 4, 6, 7) (*-linearMSE.pth) or (0, 3, 6, 9, 11) (*-reluMSE.pth)")
    mlp = tmp_path / "mlp.pth"
    torch.save(ReferenceMLP(768).state_dict(), mlp)
    with pytest.raises(UserError) as err:
        AestheticHead(mlp, "v1")
    assert str(err.value).startswith(f"{mlp}: not a LAION aesthetic v1 head: keys ['layers.0.bias', ")
    bad = tmp_path / "head.npz"
    np.savez(bad, mean=np.zeros(4, np.float32))
    with pytest.raises(UserError) as err:
        ClipNsfwHead(bad)
    assert str(err.value) == (f"{bad}: not a LAION CLIP NSFW head (the released autokeras .zip, or the .npz layout of "
                              "the docs: mean, variance, W0, b0 ..., cat_cols): no array 'variance'")


def test_wrong_width_names_the_clip_model() -> None:
    batch = pa.table({"clip_image_embedding": pa.array([[0.6, 0.8, 0.0]] * 2, pa.list_(pa.float32(), 3)),
                      "clip_model": ["ViT-B-16/random", "ViT-B-16/random"]})
    with pytest.raises(UserError) as err:
        image_embeddings(batch, "aesthetic (sa_0_4_vit_l_14_linear.pth)", 768, "OpenAI CLIP ViT-L/14")
    assert str(err.value) == ("aesthetic (sa_0_4_vit_l_14_linear.pth): the head takes 768-d embeddings of OpenAI CLIP "
                              "ViT-L/14, but clip_image_embedding holds 3-d ones (from ViT-B-16/random): score images "
                              "with OpenAI CLIP ViT-L/14 in clip_score, or give this head's weights for the CLIP model used")
    matrix, valid = image_embeddings(pa.table({"clip_image_embedding": pa.array([[0.6, 0.8], None, [1, 0]],
                                                                                 pa.list_(pa.float32()))}), "x", 2, "m")
    assert matrix.tolist() == [[pytest.approx(0.6), pytest.approx(0.8)], [1.0, 0.0]] and valid.tolist() == [True, False, True]
