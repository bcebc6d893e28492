"""LAION's small heads on CLIP image embeddings: the CLIP-based NSFW detector and the aesthetic
predictors. Each takes L2-normalised *OpenAI* CLIP image embeddings (the ``clip_score`` stage's
``clip_image_embedding``) and checks their dimension against its weights.

* NSFW (LAION-5B §3.3 ``punsafe``; github.com/LAION-AI/CLIP-based-NSFW-Detector, MIT): autokeras
  MLPs for ViT-B/32 (512-d) and ViT-L/14 (768-d), read from the released ``.zip`` without
  TensorFlow (curate.models.keras_nsfw) or from the ``.npz`` layout of
  ``../shared/models/README.md``: ``mean``/``variance``, dense ``W0,b0 .. Wn,bn`` (ReLU between),
  sigmoid out, and a few ``cat_cols`` that autokeras took for categorical: their value is
  replaced by the integer its ``"%f"`` text maps to in ``cat{c}_keys``/``cat{c}_vals`` (0 when
  absent) before the normalisation.
* Aesthetic v1 (github.com/LAION-AI/aesthetic-predictor, MIT): ``nn.Linear(d, 1)`` state dicts
  ``sa_0_4_vit_{b_32,b_16,l_14}_linear.pth``; LAION-Aesthetics V1 kept L/14 scores > 7, LAION-Art > 8.
* Improved aesthetic predictor (github.com/christophschuhmann/improved-aesthetic-predictor,
  Apache-2.0; ``simple_inference.py``'s ``MLP``): 768->1024->128->64->16->1 in an
  ``nn.Sequential`` named ``layers`` with Dropout(0.2, 0.2, 0.1) between the first linears, no
  activation (``*-linearMSE.pth``: keys ``layers.{0,2,4,6,7}``) or a ReLU after each hidden
  linear (``*-reluMSE.pth``: ``layers.{0,3,6,9,11}``). ``sac+logos+ava1-l14-linearMSE.pth``
  scored LAION-Aesthetics V2 (subsets 6.5+, 6.25+, 6+, ...).
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.errors import UserError
from curate.models.keras_nsfw import read_release
from curate.models.weights import load_state_dict

IMAGE_EMBEDDING = "clip_image_embedding"
CLIP_MODEL = "clip_model"
#: The OpenAI CLIP each embedding width of LAION's heads came from (README of ../shared/models).
CLIP_BY_DIM = {512: "OpenAI CLIP ViT-B/32", 768: "OpenAI CLIP ViT-L/14"}
_VIT_IN_NAME = re.compile(r"vit[_-]?([bl])[_-]?(\d+)", re.IGNORECASE)


def clip_model_of(path: Path, dim: int) -> str:
    """The CLIP model a head's file was trained on: from its name (``vit_b_16``), else its width."""
    named = _VIT_IN_NAME.search(Path(path).name)
    if named:
        return f"OpenAI CLIP ViT-{named.group(1).upper()}/{named.group(2)}"
    return CLIP_BY_DIM.get(dim, f"a {dim}-d CLIP")


def image_embeddings(batch: pa.Table, what: str, dim: int, clip_model: str) -> tuple[np.ndarray, np.ndarray]:
    """``clip_image_embedding`` of ``batch`` as a float32 ``(rows with one, dim)`` matrix and the
    boolean mask of those rows; a width other than ``dim`` is a one-line UserError naming
    ``clip_model``, the CLIP the head expects."""
    column = batch.column(IMAGE_EMBEDDING).combine_chunks()
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    present = column.filter(pa.array(valid))
    got = column.type.list_size if pa.types.is_fixed_size_list(column.type) else None
    if got is None and len(present):
        widths = np.unique(pc.list_value_length(present).to_numpy(zero_copy_only=False))
        got = int(widths[0]) if len(widths) == 1 else -1
    if got is not None and got != dim:
        scored_by = ""
        if CLIP_MODEL in batch.column_names:
            names = [n for n in pc.unique(batch.column(CLIP_MODEL)).to_pylist() if n]
            scored_by = f" (from {', '.join(names)})" if names else ""
        held = f"{got}-d" if got >= 0 else "mixed-width"
        raise UserError(f"{what}: the head takes {dim}-d embeddings of {clip_model}, but {IMAGE_EMBEDDING} holds {held} "
                        f"ones{scored_by}: score images with {clip_model} in clip_score, or give this head's weights "
                        f"for the CLIP model used")
    flat = present.flatten().to_numpy(zero_copy_only=False) if len(present) else np.zeros(0, np.float32)
    # writable: torch refuses to wrap Arrow's read-only buffers without a warning
    return np.require(flat, np.float32, ["C", "W"]).reshape(len(present), dim), valid


def scores_column(values: np.ndarray, valid: np.ndarray) -> pa.Array:
    """A float32 column, ``values`` on the ``valid`` rows and null elsewhere."""
    full = np.zeros(len(valid), np.float32)
    full[valid] = values
    return pa.array(full, pa.float32(), mask=~valid)


# --- NSFW -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Categorical:
    """One autokeras categorical column: the integer of each ``"%f"`` text, keyed exactly (see
    :func:`_percent_f_codes`) and sorted for ``searchsorted``."""

    column: int
    codes: np.ndarray  # int64, sorted
    values: np.ndarray  # float32, aligned with codes


class _Arrays(dict):
    """The arrays of an ``.npz``; a missing one is a ValueError naming it."""

    def __init__(self, npz):
        super().__init__(npz.items())

    def __missing__(self, name: str) -> np.ndarray:
        raise ValueError(f"no array {name!r}")


class ClipNsfwHead:
    """LAION's CLIP NSFW detector from its ``.npz`` layout; ``__call__`` gives P(nsfw) (float32)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            if self.path.suffix == ".zip":  # LAION's release (autokeras SavedModel), read without TensorFlow
                self._read(_Arrays(read_release(self.path)))
            else:
                with np.load(self.path, allow_pickle=False) as arrays:
                    self._read(_Arrays(arrays))
        except (OSError, ValueError, zipfile.BadZipFile) as err:
            raise UserError(f"{self.path}: not a LAION CLIP NSFW head (the released autokeras .zip, or the .npz layout "
                            f"of the docs: mean, variance, W0, b0 ..., cat_cols): {err}") from None
        self.dim = len(self.mean)
        self.clip_model = clip_model_of(self.path, self.dim)

    def _read(self, arrays: _Arrays) -> None:
        self.mean = arrays["mean"].astype(np.float64)
        self.scale = np.maximum(np.sqrt(arrays["variance"].astype(np.float64)), 1e-7)
        count = sum(1 for name in arrays if re.fullmatch(r"W\d+", name))
        self.layers = [(arrays[f"W{i}"].astype(np.float64), arrays[f"b{i}"].astype(np.float64)) for i in range(count)]
        if not self.layers or self.layers[0][0].shape[0] != len(self.mean) or self.layers[-1][0].shape[1] != 1:
            raise ValueError(f"{count} dense layers do not map {len(self.mean)} inputs to one output")
        self.categorical = []
        for column in arrays["cat_cols"].astype(int).tolist():
            codes = _key_codes(arrays[f"cat{column}_keys"])
            order = np.argsort(codes, kind="stable")
            values = arrays[f"cat{column}_vals"].astype(np.float32)[order]
            self.categorical.append(_Categorical(column, codes[order], values))

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        x = np.array(embeddings, np.float32, copy=True)
        for cat in self.categorical:
            codes = _percent_f_codes(x[:, cat.column])
            at = np.minimum(np.searchsorted(cat.codes, codes), len(cat.codes) - 1)
            found = cat.codes[at] == codes
            x[:, cat.column] = np.where(found, cat.values[at], np.float32(0))
        # float64 after the lookup, rounded to float32 once at the end: in float32, BLAS sums a row in
        # another order in a batch than alone (outputs moved by up to 2.6e-10, a few ulp, on the
        # 12 real L/14 embeddings), so a row's punsafe would depend on its block; in float64 it does not,
        # for 6 % of speed (L/14 on 100k rows, one core: 39.3k rows/s vs 41.8k in float32)
        h = (x.astype(np.float64) - self.mean) / self.scale
        for i, (weight, bias) in enumerate(self.layers):
            h = h @ weight + bias
            if i < len(self.layers) - 1:
                np.maximum(h, 0, out=h)
        return (1 / (1 + np.exp(-h[:, 0]))).astype(np.float32)


_NOT_A_KEY = np.iinfo(np.int64).min  # NaN or infinity: "%f" gives "nan"/"inf", never a key


def _percent_f_codes(values: np.ndarray) -> np.ndarray:
    """``"%f" % v`` of float32 ``values`` as int64 codes, vectorised: ``2 * round(v * 1e6)``, plus
    1 for ``-0.000000``. Exact: a float32 has 24 significant bits and 1e6 = 2^6 * 15625 needs 14,
    so ``v * 1e6`` is exact in float64, and ``"%f"`` rounds that exact value half to even, as
    ``rint`` does (1/128 -> ``0.007812``). Checked against ``"%f"`` in tests/models/test_laion_heads.py."""
    scaled = np.rint(values.astype(np.float64) * 1e6)
    finite = np.isfinite(scaled) & (np.abs(scaled) < 2.0**61)
    ints = np.where(finite, scaled, 0).astype(np.int64)
    negative_zero = (ints == 0) & np.signbit(values)
    return np.where(finite, 2 * ints + negative_zero, _NOT_A_KEY)


def _key_codes(keys: np.ndarray) -> np.ndarray:
    """The codes of :func:`_percent_f_codes` of ``"%f"`` texts (``-0.562988`` -> -1125976)."""
    text = np.char.strip(keys.astype(str))
    negative = np.char.startswith(text, "-")
    ints = np.char.replace(np.char.lstrip(text, "-"), ".", "").astype(np.int64)
    if not np.all(np.char.count(text, ".") == 1) or not np.all(np.char.str_len(text) - np.char.find(text, ".") == 7):
        raise ValueError("categorical keys are not %f texts (six decimals)")
    signed = np.where(negative, -ints, ints)
    return 2 * signed + (negative & (ints == 0))


# --- aesthetic --------------------------------------------------------------------------------------

#: The improved predictor's two layouts: Linear indices within ``layers``, by activation.
IMPROVED_WIDTHS = (1024, 128, 64, 16, 1)
_IMPROVED_LAYOUTS = {"linear": (0, 2, 4, 6, 7), "relu": (0, 3, 6, 9, 11)}
_DROPOUTS = (0.2, 0.2, 0.1)


class AestheticHead:
    """LAION's aesthetic predictor (``head`` ``v1``: linear; ``improved``: the MLP), loaded strict
    from its state dict; ``__call__`` gives the score (float32, about 1..10)."""

    def __init__(self, path: Path, head: str):
        import torch

        self.path, self.head = Path(path), head
        state = load_state_dict(self.path)
        try:
            module, self.net = _v1_module(state) if head == "v1" else _improved_module(state)
            module.load_state_dict(state, strict=True)
        except (ValueError, RuntimeError) as err:
            raise UserError(f"{self.path}: not a LAION aesthetic {head} head: {_first_line(err)}") from None
        module.eval().requires_grad_(False)
        self.dim = state["weight" if head == "v1" else "layers.0.weight"].shape[1]
        self.clip_model = clip_model_of(self.path, self.dim)
        self._torch = torch

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            out = self.net(self._torch.from_numpy(np.ascontiguousarray(embeddings, np.float32)))
        return out[:, 0].numpy().astype(np.float32)


def _v1_module(state: dict):
    """``nn.Linear(d, 1)`` for a v1 state dict (``weight`` [1, d], ``bias`` [1])."""
    from torch import nn

    weight = state.get("weight")
    if weight is None or weight.ndim != 2 or weight.shape[0] != 1:
        raise ValueError(f"keys {sorted(state)[:4]}; a v1 head is an nn.Linear(d, 1) state dict (weight [1, d], "
                         "bias [1]), e.g. sa_0_4_vit_l_14_linear.pth (for the MLP: head improved)")
    linear = nn.Linear(weight.shape[1], 1)
    return linear, linear


def _improved_module(state: dict):
    """The improved predictor's ``MLP`` (a module holding ``layers``) in the layout of ``state``."""
    from torch import nn

    indices = tuple(sorted({int(m.group(1)) for key in state if (m := re.fullmatch(r"layers\.(\d+)\.weight", key))}))
    layout = next((name for name, at in _IMPROVED_LAYOUTS.items() if at == indices), None)
    if layout is None:
        raise ValueError(f"linear layers at layers.{indices}; the improved MLP has them at layers."
                         f"{_IMPROVED_LAYOUTS['linear']} (*-linearMSE.pth) or {_IMPROVED_LAYOUTS['relu']} (*-reluMSE.pth)")
    width = state["layers.0.weight"].shape[1]
    modules: list = []
    for i, out in enumerate(IMPROVED_WIDTHS):
        modules.append(nn.Linear(width if i == 0 else IMPROVED_WIDTHS[i - 1], out))
        if layout == "relu" and i < len(IMPROVED_WIDTHS) - 1:
            modules.append(nn.ReLU())
        if i < len(_DROPOUTS):
            modules.append(nn.Dropout(_DROPOUTS[i]))
    mlp = nn.Module()
    mlp.layers = nn.Sequential(*modules)
    return mlp, mlp.layers


def _first_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:300]
