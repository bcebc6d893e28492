"""LAION's watermark detector (github.com/LAION-AI/LAION-5B-WatermarkDetection, MIT; used for
LAION-5B's ``pwatermark``, §3.3), rebuilt so that its released state dict loads strict.

From the repository's ``inference.py`` (``load_model``) and ``example_use.py``:
* timm ``efficientnet_b3a`` with ``num_classes=2``, its ``classifier`` replaced by
  ``Linear(1536, 625) -> ReLU -> Dropout(0.3) -> Linear(625, 256) -> ReLU -> Linear(256, 2)``
  (state dict keys ``classifier.{0,3,5}``). timm 0.9 renamed ``efficientnet_b3a`` to
  ``efficientnet_b3`` (same modules and keys; the ``a`` was only another pretrained config), so we
  create ``efficientnet_b3``, without pretrained weights: the released file holds them all.
* transforms ``Resize((256, 256))`` (torchvision on a PIL image: PIL bilinear), ``ToTensor``,
  ``Normalize(ImageNet mean, std)``;
* ``softmax(logits, dim=1)``: ``inference.py`` writes column 0 as ``P Watermark`` and column 1 as
  ``P Clean``, so ``pwatermark`` is column 0. LAION-5B keeps ``pwatermark < 0.8``.

The released weights are ``models/watermark_model_v1.pt`` of that repository (a URL reference
for ``curate models pull``); no copy can be had offline, so tests use a random initialisation.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

from curate.errors import UserError
from curate.models.image_input import open_rgb

ARCHITECTURE = "efficientnet_b3"
RELEASED = "https://github.com/LAION-AI/LAION-5B-WatermarkDetection/raw/main/models/watermark_model_v1.pt"
SIZE = 256
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
WATERMARK_COLUMN = 0


def build_model():
    """LAION's architecture with random weights."""
    import timm
    from torch import nn

    model = timm.create_model(ARCHITECTURE, pretrained=False, num_classes=2)
    model.classifier = nn.Sequential(
        nn.Linear(in_features=1536, out_features=625),
        nn.ReLU(),
        nn.Dropout(p=0.3),
        nn.Linear(in_features=625, out_features=256),
        nn.ReLU(),
        nn.Linear(in_features=256, out_features=2),
    )
    return model


@lru_cache(maxsize=1)
def _shapes() -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in build_model().state_dict().items()}


def check_state(state: dict, source: str) -> None:
    """A one-line UserError naming ``source`` and the first mismatching keys unless ``state``
    is a state dict of LAION's architecture (checked at spec time, without building a model)."""
    expected = _shapes()
    differ = [k for k in expected if k not in state] + [k for k in state if k not in expected]
    problem = "its keys differ"
    if not differ:
        differ = [k for k, shape in expected.items() if tuple(state[k].shape) != shape]
        problem = "tensor shapes differ"
    if differ:
        raise UserError(f"{source}: not LAION's watermark detector state dict ({ARCHITECTURE} with the MLP head): "
                        f"{problem} (e.g. {', '.join(differ[:3])})")


def load_model(state: dict, source: str):
    """LAION's architecture with ``state`` loaded strict, in eval mode."""
    check_state(state, source)
    model = build_model()
    model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False)


def preprocess(data: bytes) -> np.ndarray:
    """Encoded image -> (256, 256, 3) uint8 RGB, resized as LAION's ``T.Resize((256, 256))``."""
    image = open_rgb(data)
    return np.asarray(image.resize((SIZE, SIZE), resample=Image.Resampling.BILINEAR))


def pwatermark(model, images: np.ndarray, device: str) -> np.ndarray:
    """P(watermark) (float32) of (N, 256, 256, 3) uint8 images in one forward on ``device``:
    ``ToTensor`` and ``Normalize`` on the batch, softmax column 0."""
    import torch

    with torch.inference_mode():
        batch = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float() / 255
        mean = torch.from_numpy(MEAN).to(device).view(1, 3, 1, 1)
        std = torch.from_numpy(STD).to(device).view(1, 3, 1, 1)
        probs = torch.softmax(model((batch - mean) / std), dim=1)[:, WATERMARK_COLUMN]
        return probs.float().cpu().numpy()
