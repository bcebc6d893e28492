"""A CLIP training loop in process, on pairs decoded once into tensors: the filtering network's
trainer and the benchmarks'. open_clip's own trainer (``curate train clip``) is the one for real
runs; this loop exists because that one cannot repeat itself (webdataset seeds its sample shuffle
from the pid and the clock) and decodes every image again each epoch, while a filtering network
must come out the same for the same spec, and within a minute on 2 cores. The recipe is open_clip's:
AdamW without weight decay on gains, biases and the logit scale, cosine schedule after a linear
warmup, the symmetric InfoNCE loss, logit scale clamped to ln(100)."""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from curate.errors import UserError
from curate.train.shards import Pair


@contextmanager
def torch_threads(count: int):
    """At most ``count`` intra-op threads for the block (2 on this machine's cores), restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(count, before)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def load_model(name: str, weights: Path | None = None, seed: int = 0):
    """(model, preprocess_val, tokenizer) of open_clip model ``name`` (curate's configs included),
    randomly initialised from ``seed`` or loaded from ``weights`` (a state dict or an
    open_clip_train checkpoint); a one-line UserError for an unknown name."""
    import open_clip
    import torch

    from curate.models.clip_configs import known_models, register
    from curate.models.weights import load_state_dict

    register()
    if open_clip.get_model_config(name) is None:
        close = [m for m in known_models() if name.lower() in m.lower()][:5]
        raise UserError(f"--model {name}: not an open_clip model config"
                        + (f" (did you mean {', '.join(close)}?)" if close else " (see open_clip.list_models())"))
    torch.manual_seed(seed)
    model, _, preprocess = open_clip.create_model_and_transforms(name)
    if weights is not None:
        state = load_state_dict(Path(weights))
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            raise UserError(f"{weights}: not weights of {name} ({str(err).splitlines()[0][:160]})") from None
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(name)


def pair_tensors(pairs: Iterable[Pair], preprocess, tokenizer):
    """Images (N, 3, H, W) through the model's eval transform and tokenised captions (N, L)."""
    import torch
    from PIL import Image

    images, captions = [], []
    for pair in pairs:
        with Image.open(io.BytesIO(pair.image)) as image:
            images.append(preprocess(image.convert("RGB")))
        captions.append(pair.caption)
    if not images:
        raise UserError("no samples with both an image and a caption in the given shards")
    return torch.stack(images), tokenizer(captions)


def embed(model, images, texts, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised float32 image and text embeddings, row-aligned."""
    return _encode(model.encode_image, images, batch_size), embed_texts(model, texts, batch_size)


def embed_texts(model, texts, batch_size: int = 256) -> np.ndarray:
    return _encode(model.encode_text, texts, batch_size)


def _encode(encode, inputs, batch_size: int) -> np.ndarray:
    import torch

    with torch.no_grad():
        parts = [encode(inputs[start:start + batch_size], normalize=True) for start in range(0, len(inputs), batch_size)]
    return torch.cat(parts).float().numpy()


def train_contrastive(model, images, texts, *, epochs: int, batch_size: int, lr: float, weight_decay: float,
                      warmup_fraction: float, seed: int, steps: int | None = None,
                      progress: Callable[[str], None] | None = None) -> list[float]:
    """Trains ``model`` in place on row-aligned pairs; returns the mean loss of each epoch.
    Batches are a seeded permutation per epoch (the last partial batch dropped). ``steps``, when
    given, replaces ``epochs``: that many batches, the last epoch cut short (equal samples seen
    on sets of different sizes)."""
    import open_clip
    import torch
    from open_clip_train.scheduler import cosine_lr

    steps_per_epoch = len(images) // batch_size
    if steps_per_epoch < 1:
        raise UserError(f"{len(images)} training pairs are fewer than one batch of {batch_size}")
    total = steps if steps is not None else steps_per_epoch * epochs
    epochs = -(-total // steps_per_epoch)
    warmup = max(1, round(total * warmup_fraction))
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "bias" in n or "logit_scale" in n]
    decay = [p for n, p in model.named_parameters() if not (p.ndim < 2 or "bias" in n or "logit_scale" in n)]
    optimizer = torch.optim.AdamW([{"params": no_decay, "weight_decay": 0.0},
                                   {"params": decay, "weight_decay": weight_decay}], lr=lr)
    loss_fn = open_clip.ClipLoss()
    schedule = cosine_lr(optimizer, lr, warmup, total)  # open_clip_train's own schedule
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    step, started = 0, time.monotonic()
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        total_loss, batches = 0.0, min(steps_per_epoch, total - step)
        for batch in range(batches):
            schedule(step)
            index = order[batch * batch_size:(batch + 1) * batch_size]
            image_features, text_features, logit_scale = model(images[index], texts[index])
            loss = loss_fn(image_features, text_features, logit_scale)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            total_loss += loss.item()
            step += 1
        losses.append(total_loss / batches)
        if progress is not None:
            progress(f"epoch {epoch + 1}/{epochs}: loss {losses[-1]:.3f} ({time.monotonic() - started:.1f} s)")
    model.eval()
    return losses
