"""The parts :class:`curate.stages.clip.ClipScoreFilter` expands into, each sized on its own so the
model never waits on decoding (as NeMo Curator's and LAION's CLIP inference split them):

1. :class:`ClipPreprocess` (CPU tasks): decode ``image`` (curate's bounded decoder), apply the model's eval transform up to
   ``ToTensor`` (resize, crop: PIL), keep the result as uint8 pixels (``clip_pixels``, 150 KB
   for 224 px: a quarter of the float32 tensor through the object store), and tokenize the
   caption (``clip_tokens``). ``ToTensor`` then ``Normalize`` run on the model's device, so the
   input equals open_clip's own preprocess exactly (``ToTensor`` is a division by 255).
2. :class:`ClipEmbed` (an actor pool; GPU with autocast where one is given): image and text
   embeddings, L2-normalised, as feature columns; the transient columns are dropped.

Rows whose stored embeddings came from the same model (``clip_model`` equals the model id, as a
rerun over an earlier run's shards with ``input.features`` reads them) are neither decoded nor
embedded; when no row of a worker needs the model, the model is never loaded.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.imaging.decode import DEFAULT_MAX_DECODED_BYTES, ImageRejected, decode
from curate.models import open_clip_models
from curate.schema import CAPTION, IMAGE
from curate.stages.base import Decision, Filter, Resources, Stage, StageParams, append_columns

IMAGE_EMBEDDING = "clip_image_embedding"
TEXT_EMBEDDING = "clip_text_embedding"
MODEL_COLUMN = "clip_model"
PIXELS = "clip_pixels"
TOKENS = "clip_tokens"


def reusable(batch: pa.Table, model_id: str) -> np.ndarray:
    """Rows whose stored image and text embeddings were made by ``model_id``."""
    names = batch.column_names
    if MODEL_COLUMN not in names or IMAGE_EMBEDDING not in names or TEXT_EMBEDDING not in names:
        return np.zeros(batch.num_rows, dtype=bool)
    same = pc.fill_null(pc.equal(batch.column(MODEL_COLUMN), model_id), False)
    present = pc.and_(pc.is_valid(batch.column(IMAGE_EMBEDDING)), pc.is_valid(batch.column(TEXT_EMBEDDING)))
    return pc.and_(same, present).to_numpy(zero_copy_only=False)


def split_transform(preprocess):
    """(the PIL steps of open_clip's eval transform, its Normalize): the steps before
    ``ToTensor`` give uint8 pixels; ``ToTensor`` + ``Normalize`` run where the model is."""
    from torchvision.transforms import Normalize, ToTensor

    steps = list(preprocess.transforms)
    to_tensor = next(i for i, step in enumerate(steps) if isinstance(step, ToTensor))
    normalize = next(step for step in steps if isinstance(step, Normalize))
    return steps[:to_tensor], normalize


class ClipPreprocess(Filter):
    """Decode + resize/crop + tokenize on CPU tasks; an image that cannot be decoded is dropped
    (``clip_image_undecodable``, detail: the decoder's message), a row without one too
    (``clip_image_missing``)."""

    kind = "clip_preprocess"
    runs_as_tasks = True  # the transform and tokenizer load in milliseconds; the work is CPU-bound
    default_resources = Resources(cpus=1)

    def __init__(self, params: StageParams, ref: open_clip_models.ClipModelRef, name: str | None = None):
        super().__init__(params, name)
        self.ref = ref

    def setup(self) -> None:
        preprocess, self._tokenizer = open_clip_models.transforms(self.ref)
        self._pil_steps, _ = split_transform(preprocess)

    def _pixels(self, data: bytes) -> bytes:
        from PIL import Image

        # curate's decoder: the decode budget (no decompression bomb), alpha composited on white
        # (PIL's convert("RGB") would turn transparent pixels black), stable error messages.
        decoded = decode(data, None, DEFAULT_MAX_DECODED_BYTES).pixels
        image = Image.fromarray(decoded).convert("RGB")
        for step in self._pil_steps:
            image = step(image)
        return np.asarray(image, dtype=np.uint8).tobytes()

    def process(self, batch: pa.Table) -> pa.Table:
        skip = reusable(batch, self.ref.model_id)
        images = batch.column(IMAGE).to_pylist() if IMAGE in batch.column_names else [None] * batch.num_rows
        pixels, status, error = [], [], []
        for data, reuse in zip(images, skip, strict=True):
            value, reason, detail = None, None, None
            if reuse:
                pass
            elif data is None:
                reason, detail = "clip_image_missing", "no image bytes"
            else:
                try:
                    value = self._pixels(data)
                except ImageRejected as err:
                    reason, detail = "clip_image_undecodable", f"{err.reason}: {err}"
            pixels.append(value)
            status.append(reason)
            error.append(detail)
        need = ~skip
        captions = pc.fill_null(batch.column(CAPTION), "").to_pylist()
        tokens = self._tokenizer([c for c, n in zip(captions, need, strict=True) if n]).numpy().astype(np.int32)
        context = tokens.shape[1] if len(tokens) else self._tokenizer.context_length
        full = np.zeros((batch.num_rows, context), dtype=np.int32)
        full[need] = tokens
        token_array = pa.FixedSizeListArray.from_arrays(pa.array(full.ravel()), context)
        token_array = pc.if_else(pa.array(need), token_array, pa.scalar(None, token_array.type))
        return append_columns(batch, {PIXELS: pa.array(pixels, pa.binary()), TOKENS: token_array,
                                      "_clip_status": pa.array(status, pa.string()),
                                      "_clip_error": pa.array(error, pa.string())})

    def decide(self, scored: pa.Table) -> Decision:
        reason = scored.column("_clip_status").combine_chunks()
        return Decision(keep=pc.is_null(reason), reason=reason, detail=scored.column("_clip_error").combine_chunks())


class ClipEmbed(Stage):
    """Image and text embeddings of the rows ``ClipPreprocess`` prepared, L2-normalised (float32
    columns; the shards store them as float16 ``.npy``), and ``clip_model``."""

    kind = "clip_embed"
    consumes = (PIXELS, TOKENS, "_clip_status", "_clip_error")
    replayable = False  # a model: a global stage after it starts a new segment, never re-embeds

    def __init__(self, params: StageParams, ref: open_clip_models.ClipModelRef, device: str, precision: str,
                 name: str | None = None):
        super().__init__(params, name)
        self.ref, self.device, self.precision = ref, device, precision
        self.threads: int | None = None  # torch threads on the CPU (None: resources.cpus)
        self._model = None

    def setup(self) -> None:
        """Nothing yet: the model loads on the first batch that needs it (a rerun whose rows all
        carry this model's embeddings never loads it)."""

    def teardown(self) -> None:
        self._model = None

    def _load(self) -> None:
        import torch

        if self.device == "cpu":  # the YAML's cpus when given, else every core of the node (see ClipScoreFilter.expand)
            threads = self.threads if self.threads and "cpus" not in self.resource_overrides else self.resources.cpus
            torch.set_num_threads(max(1, int(threads)))
        self._model, preprocess, _ = open_clip_models.load(self.ref, self.device)
        _, normalize = split_transform(preprocess)
        shape = (1, 3, 1, 1)
        self._mean = torch.tensor(normalize.mean, device=self.device).view(shape)
        self._std = torch.tensor(normalize.std, device=self.device).view(shape)
        self._size = tuple(self._model.visual.image_size) if isinstance(self._model.visual.image_size, tuple | list) \
            else (self._model.visual.image_size,) * 2

    def _forward(self, pixels: list[bytes], tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch
        import torch.nn.functional as F

        height, width = self._size
        raw = np.frombuffer(bytearray(b"".join(pixels)), dtype=np.uint8).reshape(len(pixels), height, width, 3)
        images = torch.from_numpy(raw).to(self.device).permute(0, 3, 1, 2).float().div_(255)
        images = (images - self._mean) / self._std
        text = torch.tensor(tokens, dtype=torch.long, device=self.device)
        # Autocast on the GPU only: CPU fp32 is what the exactness test compares with open_clip.
        autocast = torch.autocast("cuda", dtype={"fp16": torch.float16, "bf16": torch.bfloat16}[self.precision]) \
            if self.device != "cpu" and self.precision != "fp32" else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            image_features = self._model.encode_image(images)
            text_features = self._model.encode_text(text)
        image_features = F.normalize(image_features.float(), dim=-1)
        text_features = F.normalize(text_features.float(), dim=-1)
        return image_features.cpu().numpy(), text_features.cpu().numpy()

    def process(self, batch: pa.Table) -> pa.Table:
        pixels = batch.column(PIXELS)
        need = pc.is_valid(pixels).to_numpy(zero_copy_only=False)
        image, text = _matrix(batch, IMAGE_EMBEDDING), _matrix(batch, TEXT_EMBEDDING)
        if need.any():
            if self._model is None:
                self._load()
            tokens_column = batch.column(TOKENS).combine_chunks()
            context = tokens_column.type.list_size
            tokens = pc.list_flatten(tokens_column.filter(pa.array(need))).to_numpy().reshape(-1, context)
            new_image, new_text = self._forward(pc.drop_null(pixels).to_pylist(), tokens)
            image, text = _filled(image, need, new_image), _filled(text, need, new_text)
        model = pc.if_else(pa.array(need), self.ref.model_id, batch.column(MODEL_COLUMN)) \
            if MODEL_COLUMN in batch.column_names else pa.array([self.ref.model_id] * batch.num_rows, pa.string())
        return append_columns(batch, {IMAGE_EMBEDDING: _fixed_list(image), TEXT_EMBEDDING: _fixed_list(text),
                                      MODEL_COLUMN: _combined(model)})


def _matrix(batch: pa.Table, column: str) -> np.ndarray | None:
    """A stored embedding column as a float32 matrix (NaN rows where null), or None."""
    if column not in batch.column_names:
        return None
    values = batch.column(column).combine_chunks()
    dim = values.type.list_size
    matrix = np.full((len(values), dim), np.nan, dtype=np.float32)
    valid = pc.is_valid(values).to_numpy(zero_copy_only=False)
    if valid.any():
        matrix[valid] = pc.list_flatten(values.filter(pa.array(valid))).to_numpy(zero_copy_only=False) \
            .astype(np.float32).reshape(-1, dim)
    return matrix


def _filled(matrix: np.ndarray | None, need: np.ndarray, rows: np.ndarray) -> np.ndarray:
    if matrix is None or matrix.shape[1] != rows.shape[1]:
        matrix = np.full((len(need), rows.shape[1]), np.nan, dtype=np.float32)
    matrix[need] = rows
    return matrix


def _fixed_list(matrix: np.ndarray) -> pa.Array:
    flat = pa.array(matrix.ravel(), pa.float32())
    array = pa.FixedSizeListArray.from_arrays(flat, matrix.shape[1])
    missing = np.isnan(matrix[:, 0]) if matrix.shape[1] else np.zeros(len(matrix), dtype=bool)
    return pc.if_else(pa.array(~missing), array, pa.scalar(None, array.type)) if missing.any() else array


def _combined(values):
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
