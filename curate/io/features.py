"""Feature files read back as columns (``input.features``): a rerun reuses stored embeddings.

A run writes each feature column (a CLIP embedding) per shard as ``shards/NNNNN.<name>.npy``, a
float16 ``rows x dim`` matrix row-aligned with ``NNNNN.tar`` and ``NNNNN.parquet`` (the layout
clip-retrieval's users know). With ``input.features: [clip_image_embedding, ...]`` a run over
those shards reads each input file's ``<stem>.<name>.npy`` beside it into a float32 column, so a
stage that finds its embeddings there (same model, ``clip_model``) does not run its model again.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa

from curate import storage
from curate.errors import InputError

_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".parquet", ".jsonl.gz", ".json.gz", ".jsonl", ".json", ".csv", ".tsv")


def feature_path(input_path: str, name: str) -> str:
    """``shards/00000.tar`` -> ``shards/00000.<name>.npy``."""
    stem = next((input_path[: -len(s)] for s in _SUFFIXES if input_path.endswith(s)), input_path)
    return f"{stem}.{name}.npy"


def check_feature_files(paths: list[str], names: list[str]) -> None:
    """On the driver, before Ray starts: every input file has each feature file beside it."""
    for path in paths:
        for name in names:
            if not storage.exists(feature_path(path, name)):
                raise InputError(f"input.features: {feature_path(path, name)} is missing (a run writes "
                                 f"<shard>.{name}.npy beside each shard when a stage makes {name}; list only "
                                 "features the input's run wrote)")


def read_features(path: str, start: int, stop: int, names: list[str]) -> dict[str, pa.Array]:
    """Rows ``[start, stop)`` of each feature file of ``path`` as float32 fixed-size lists."""
    columns = {}
    for name in names:
        source = feature_path(path, name)
        local = storage.is_local(source)  # a shard's matrix is small (1000 x 768 x 2 bytes): remote ones read whole
        matrix = np.load(source, mmap_mode="r") if local else np.load(io.BytesIO(storage.read_bytes(source)))
        if matrix.ndim != 2 or matrix.shape[0] < stop:
            raise InputError(f"{source}: holds {matrix.shape[0] if matrix.ndim else 0} rows of "
                             f"{'x'.join(map(str, matrix.shape))}, but {path} has at least {stop}: not this file's features")
        rows = np.asarray(matrix[start:stop], dtype=np.float32)
        columns[name] = pa.FixedSizeListArray.from_arrays(pa.array(rows.ravel(), pa.float32()), rows.shape[1])
    return columns
