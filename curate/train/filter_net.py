"""Filtering networks (Fang et al. 2023, "Data Filtering Networks"): a small CLIP trained on
trusted pairs whose ``clip_score`` then filters a pool, for users without pretrained weights.

``ensure_filter_net(directory, spec)`` makes one unless ``directory`` already holds one made from
the same spec (the quickstart calls it at bind time, so only its first run trains). Trusted data
for the quickstart is a clean synthetic corpus of its own seed (``write_synth_corpus``, ``clean``
rows only), squared to the model's input size and written straight to WebDataset shards (no Ray
run): ``trusted/train`` and ``trusted/heldout``. After training, a threshold is calibrated on the
held-out pairs: the equal-error point between matched pairs and the same pairs with their captions
shifted by one (another picture's caption: what ``mismatched_caption`` noise is). The directory
then holds ``model.safetensors`` (the state dict: ``open_clip.create_model(model,
pretrained=that file)`` loads it) and, written last, ``filter_net.json``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from curate.errors import UserError
from curate.train.shards import Pair, write_pair_shards

FORMAT_VERSION = 1
"""Bumped whenever the same spec would train a different network; a cached one is then retrained."""
MANIFEST = "filter_net.json"
WEIGHTS = "model.safetensors"
_THREADS = 2  # this machine's cores; more threads only contend (and the driver trains alone)


class FilterNetSpec(BaseModel):
    """How a filtering network is made. The defaults train ``curate-tiny-clip`` (48 px ViT) to
    ROC-AUC ~0.98 matched vs shuffled captions in about a minute on 2 cores: AUC on 200 held-out
    pairs was 0.958 after 4 epochs of 1,020 pairs and 0.980 after 8 (loss 3.9 -> 1.5)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int = Field(1800, ge=100, le=1_000_000, description="rows of the trusted synthetic corpus (~61% clean)")
    seed: int = Field(1, ge=0, description="corpus, initialisation and batch order")
    model: str = Field("curate-tiny-clip", description="open_clip model config (curate's included)")
    epochs: int = Field(8, ge=1, le=1000)
    batch_size: int = Field(64, ge=2, le=65536)
    lr: float = Field(2e-3, gt=0, le=1)
    weight_decay: float = Field(0.1, ge=0, le=10)
    warmup_fraction: float = Field(0.1, ge=0, lt=1)
    holdout: int = Field(200, ge=20, description="clean pairs held out to calibrate the threshold")

    def fingerprint(self) -> str:
        from curate.sample.synth import SYNTH_VERSION

        payload = {"spec": self.model_dump(), "format": FORMAT_VERSION, "synth": SYNTH_VERSION}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class FilterNet:
    """A trained filtering network: open_clip model name, weights, and its calibrated threshold
    on ``clip_score`` (keep ``clip_score >= threshold``)."""

    directory: Path
    model: str
    weights: Path
    threshold: float
    roc_auc: float


def _stderr(line: str) -> None:
    print(f"filter net: {line}", file=sys.stderr, flush=True)


def ensure_filter_net(directory: str | Path, spec: FilterNetSpec | None = None,
                      progress: Callable[[str], None] = _stderr) -> FilterNet:
    """The filtering network in ``directory`` if it was made from ``spec``; else trains it there."""
    spec = spec or FilterNetSpec()
    directory = Path(directory).expanduser()
    cached = _read_manifest(directory)
    if cached is not None and cached.get("spec_fingerprint") == spec.fingerprint() and (directory / WEIGHTS).is_file():
        return load_filter_net(directory)
    from curate.train.contrastive import torch_threads

    with torch_threads(_THREADS):
        return _make(directory, spec, progress)


def load_filter_net(directory: str | Path) -> FilterNet:
    """The filtering network saved in ``directory``; a one-line UserError if it is not one."""
    directory = Path(directory).expanduser()
    manifest = _read_manifest(directory)
    hint = "(train one with the quickstart's clip_score stage, or give the directory that holds it)"
    if manifest is None:
        raise UserError(f"{directory}: no readable {MANIFEST}: not a filtering network {hint}")
    missing = [k for k in ("model", "weights", "threshold", "roc_auc") if k not in manifest]
    if missing:
        raise UserError(f"{directory / MANIFEST}: incomplete (no {', '.join(missing)}) {hint}")
    weights = directory / manifest["weights"]
    if not weights.is_file():
        raise UserError(f"{directory}: {manifest['weights']} is missing: the filtering network is incomplete {hint}")
    return FilterNet(directory, str(manifest["model"]), weights, float(manifest["threshold"]),
                     float(manifest["roc_auc"]))


def _read_manifest(directory: Path) -> dict | None:
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _make(directory: Path, spec: FilterNetSpec, progress: Callable[[str], None]) -> FilterNet:
    from curate.train.contrastive import embed, load_model, pair_tensors, train_contrastive
    from curate.train.metrics import equal_error_threshold, roc_auc

    started = time.monotonic()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MANIFEST).unlink(missing_ok=True)  # the manifest goes first: a crash below never looks cached
    model, preprocess, tokenizer = load_model(spec.model, seed=spec.seed)
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    pairs = trusted_pairs(directory / "trusted" / "corpus", spec.n, spec.seed, size)
    if len(pairs) < spec.holdout + spec.batch_size:
        raise UserError(f"filter net: {len(pairs)} clean pairs from n={spec.n} cannot hold out {spec.holdout} and "
                        f"fill a batch of {spec.batch_size} (raise n)")
    heldout, train = pairs[:spec.holdout], pairs[spec.holdout:]
    write_pair_shards(directory / "trusted" / "train", train, 1000)
    write_pair_shards(directory / "trusted" / "heldout", heldout, 1000)
    progress(f"{len(train)} trusted pairs ({size} px) from a synthetic corpus of {spec.n} "
             f"(seed {spec.seed}) in {time.monotonic() - started:.1f} s; training {spec.model}")
    images, texts = pair_tensors(train, preprocess, tokenizer)
    losses = train_contrastive(model, images, texts, epochs=spec.epochs, batch_size=spec.batch_size, lr=spec.lr,
                               weight_decay=spec.weight_decay, warmup_fraction=spec.warmup_fraction,
                               seed=spec.seed, progress=progress)
    image_emb, text_emb = embed(model, *pair_tensors(heldout, preprocess, tokenizer))
    matched, shuffled = matched_and_shuffled(image_emb, text_emb, [p.caption for p in heldout])
    auc, threshold = roc_auc(matched, shuffled), equal_error_threshold(matched, shuffled)
    _save_weights(model, directory / WEIGHTS)
    seconds = time.monotonic() - started
    manifest = {"model": spec.model, "weights": WEIGHTS, "threshold": threshold, "roc_auc": auc,
                "samples": len(train), "heldout": len(heldout), "epochs": spec.epochs,
                "samples_seen": spec.epochs * (len(train) // spec.batch_size) * spec.batch_size,
                "losses": [round(loss, 4) for loss in losses], "seconds": round(seconds, 1),
                "spec": spec.model_dump(), "spec_fingerprint": spec.fingerprint()}
    _write_atomic(directory / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    progress(f"held-out ROC-AUC {auc:.3f} (matched vs shuffled captions), threshold {threshold:.4f}; "
             f"{seconds:.1f} s in all -> {directory}")
    return load_filter_net(directory)


def trusted_pairs(corpus_dir: Path, n: int, seed: int, size: int) -> list[Pair]:
    """The clean rows of the synthetic corpus ``(n, seed)``, each image squared to ``size`` px
    as open_clip's eval transform squares it (shorter side resized, centre crop), JPEG q95."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from curate.sample.synth import write_synth_corpus

    table = pq.read_table(write_synth_corpus(corpus_dir, n, seed), columns=["url", "caption", "noise", "sample_id"])
    clean = table.filter(pc.equal(table.column("noise"), "clean")).to_pylist()
    return [Pair(f"{row['sample_id']:08d}", square_jpeg(corpus_dir / row["url"], size), row["caption"],
                 {"sample_id": row["sample_id"]}) for row in clean]


def square_jpeg(path: Path, size: int) -> bytes:
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        w, h = image.size
        scale = size / min(w, h)
        image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BICUBIC)
        w, h = image.size
        left, top = (w - size) // 2, (h - size) // 2
        buffer = io.BytesIO()
        image.crop((left, top, left + size, top + size)).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def matched_and_shuffled(image_emb: np.ndarray, text_emb: np.ndarray,
                         captions: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Cosine of each matched pair, and of each image with the next row's caption (wrapping),
    leaving out the shifted pairs whose caption text is the image's own."""
    matched = np.sum(image_emb * text_emb, axis=1)
    shifted = np.roll(np.arange(len(captions)), -1)
    different = np.array([captions[i] != captions[j] for i, j in enumerate(shifted)])
    shuffled = np.sum(image_emb * text_emb[shifted], axis=1)[different]
    return matched, shuffled


def _save_weights(model, path: Path) -> None:
    from safetensors.torch import save_file

    state = {key: value.detach().contiguous() for key, value in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp))
    os.replace(tmp, path)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
