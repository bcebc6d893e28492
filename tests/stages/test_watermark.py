"""watermark (curate.stages.watermark) with a randomly initialised state dict of LAION's
architecture (no real weights exist offline), saved to tmp as .safetensors: ``pwatermark``
equal to the bare model, any batch size, the exact ledger rows, and the one-line errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from curate.config import load_spec
from curate.engine.blocks import apply_stage
from curate.errors import ConfigError, UserError
from curate.models import watermark
from curate.models.weights import file_sha256, load_state_dict
from curate.schema import DROP_DETAIL, DROP_REASON, DROP_STAGE, IMAGE, UID
from curate.stages.base import RunContext
from curate.stages.watermark import WatermarkFilter, WatermarkParams


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("watermark") / "watermark_random.safetensors"
    save_file(watermark.build_model().state_dict(), path)
    return path


def image(seed: int, size: tuple[int, int] = (300, 200), fmt: str = "JPEG") -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def block(images: list[bytes | None]) -> pa.Table:
    n = len(images)
    return pa.table({UID: [f"{i:032x}" for i in range(n)], IMAGE: pa.array(images, pa.binary()),
                     DROP_STAGE: pa.nulls(n, pa.string()), DROP_REASON: pa.nulls(n, pa.string()),
                     DROP_DETAIL: pa.nulls(n, pa.string())})


def ledger(out: pa.Table) -> list[tuple]:
    return list(zip(out.column(DROP_STAGE).to_pylist(), out.column(DROP_REASON).to_pylist(),
                    out.column(DROP_DETAIL).to_pylist(), strict=True))


def stage(weights: Path, **params) -> WatermarkFilter:
    built = WatermarkFilter(WatermarkParams(weights=str(weights), **params))
    built.setup()
    return built


def test_scores_are_the_models_at_any_batch_size(weights: Path) -> None:
    images = [image(1), b"not an image", image(2, (64, 64), "PNG"), image(3, (500, 120))]
    tagging = stage(weights, batch_size=2)
    assert (tagging.kind, tagging.reads, tagging.writes, tagging._device) == ("watermark", ("image",),
                                                                              ("pwatermark", "watermark_error"), "cpu")
    out = apply_stage(tagging, block(images))
    bare = watermark.load_model(load_state_dict(weights), "bare")
    expected = watermark.pwatermark(bare, np.stack([watermark.preprocess(images[i]) for i in (0, 2, 3)]), "cpu").tolist()
    assert out.column("pwatermark").to_pylist() == [expected[0], None, expected[1], expected[2]]
    assert ledger(out) == [(None, None, None),
                           ("watermark", "undecodable_image", "UnidentifiedImageError: cannot identify image file"),
                           (None, None, None), (None, None, None)]
    one_by_one = apply_stage(stage(weights, batch_size=1), block(images))
    assert one_by_one.column("pwatermark").to_pylist() == out.column("pwatermark").to_pylist()
    assert tagging.content_record() == {"model": "laion_watermark_efficientnet_b3", "ref": str(weights),
                                        "sha256": file_sha256(weights), "bytes": weights.stat().st_size}


def test_drops_at_max_pwatermark(weights: Path) -> None:
    images = [image(4), image(5)]
    scores = stage(weights).process(block(images)).column("pwatermark").to_pylist()
    cut = (scores[0] + scores[1]) / 2  # one on each side
    out = apply_stage(stage(weights, max_pwatermark=cut), block(images))
    high = int(scores[1] > scores[0])
    assert ledger(out)[1 - high] == (None, None, None)
    assert ledger(out)[high][:2] == ("watermark", "watermarked")
    assert float(ledger(out)[high][2].removeprefix("pwatermark=")) == pytest.approx(scores[high], abs=5e-5)


def test_device_cuda_needs_a_gpu(weights: Path) -> None:
    cuda = WatermarkFilter(WatermarkParams(weights=str(weights), device="cuda"))
    with pytest.raises(UserError) as err:
        cuda.bind(RunContext())
    assert str(err.value) == "watermark: device cuda needs a GPU: set resources: {gpus: 1, batch_size: 256} (or device: auto)"
    cuda.resource_overrides = {"gpus": 1}
    cuda.bind(RunContext())  # the driver may have no GPU: setup on the worker checks torch
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match=r"^watermark: device cuda, but torch sees no GPU on this worker"):
            cuda.setup()


def spec_error(params: dict) -> str:
    with pytest.raises(ConfigError) as err:
        load_spec({"input": {"path": "in.parquet"}, "stages": [{"stage": "watermark", **params}]})
    return str(err.value)


def test_spec_errors(tmp_path: Path, weights: Path) -> None:
    missing = tmp_path / "watermark_model_v1.pt"
    assert spec_error({"weights": str(missing)}) == (
        f"<dict>: stages[0].weights: watermark: weights: {missing} does not exist (give the path of the weights file, or a "
        "hub reference hf-hub:ORG/REPO/FILE fetched with `curate models pull`)")
    other = tmp_path / "resnet.safetensors"
    save_file({"fc.weight": torch.zeros(2, 4)}, other)
    assert spec_error({"weights": str(other)}) == (
        f"<dict>: stages[0].weights: {other}: not LAION's watermark detector state dict (efficientnet_b3 with the MLP "
        "head): its keys differ (e.g. conv_stem.weight, bn1.weight, bn1.bias)")
    assert "required key is missing" in spec_error({})
    assert "max_pwatermark" in spec_error({"weights": str(weights), "max_pwatermark": 2})
