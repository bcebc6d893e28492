"""LAION's watermark detector (curate.models.watermark): a state dict of LAION's architecture (as
their inference.py builds it) loads strict, from .safetensors or a DataParallel .pt; another
model's is a one-line error; P(watermark) equals LAION's own transforms + forward + softmax[:, 0]."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torchvision.transforms as T
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from curate.errors import UserError
from curate.models import watermark
from curate.models.weights import load_state_dict


def laion_model() -> nn.Module:
    """LAION-5B-WatermarkDetection inference.py's load_model, written out again (random weights)."""
    model = timm.create_model("efficientnet_b3", pretrained=False, num_classes=2)
    model.classifier = nn.Sequential(nn.Linear(1536, 625), nn.ReLU(), nn.Dropout(p=0.3), nn.Linear(625, 256), nn.ReLU(),
                                     nn.Linear(256, 2))
    return model.eval()


@pytest.fixture(scope="module")
def reference() -> nn.Module:
    torch.manual_seed(0)
    return laion_model()


def jpeg(size: tuple[int, int], seed: int, mode: str = "RGB") -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format="PNG" if mode != "RGB" else "JPEG")
    return buffer.getvalue()


def test_laion_state_dicts_load_strict(tmp_path: Path, reference: nn.Module) -> None:
    state = reference.state_dict()
    assert {"classifier.0.weight", "classifier.3.weight", "classifier.5.bias", "conv_stem.weight"} <= set(state)
    save_file(state, tmp_path / "watermark.safetensors")
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "watermark_model_v1.pt")  # a DataParallel save
    for name in ("watermark.safetensors", "watermark_model_v1.pt"):
        model = watermark.load_model(load_state_dict(tmp_path / name), name)
        assert not model.training
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), state.values(), strict=True))


def test_another_models_state_dict_is_a_one_line_error() -> None:
    plain = timm.create_model("efficientnet_b3", pretrained=False, num_classes=2).state_dict()  # timm's own head
    with pytest.raises(UserError) as err:
        watermark.load_model(plain, "plain.pt")
    assert str(err.value) == ("plain.pt: not LAION's watermark detector state dict (efficientnet_b3 with the MLP head): "
                              "its keys differ (e.g. classifier.0.weight, classifier.0.bias, classifier.3.weight)")
    state = laion_model().state_dict()
    state["classifier.5.weight"] = torch.zeros(3, 256)
    with pytest.raises(UserError) as err:
        watermark.load_model(state, "x.pt")
    assert str(err.value).endswith(": tensor shapes differ (e.g. classifier.5.weight)")


def test_pwatermark_is_laions_softmax_column_zero(reference: nn.Module) -> None:
    images = [jpeg((300, 200), 1), jpeg((256, 256), 2), jpeg((64, 500), 3, mode="L")]
    laion_transforms = T.Compose([T.Resize((256, 256)), T.ToTensor(),
                                  T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    batch = torch.stack([laion_transforms(Image.open(io.BytesIO(b)).convert("RGB")) for b in images])
    with torch.no_grad():
        expected = torch.softmax(reference(batch), dim=1)[:, 0].numpy()
    got = watermark.pwatermark(reference, np.stack([watermark.preprocess(b) for b in images]), "cpu")
    assert got.dtype == np.float32 and got.tolist() == expected.tolist()
