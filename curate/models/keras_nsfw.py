"""LAION's CLIP NSFW detector as released (``clip_autokeras_nsfw_b32.zip``,
``clip_autokeras_binary_nsfw.zip``: autokeras SavedModels) read without TensorFlow, into the
arrays of the ``.npz`` layout (curate.models.laion_heads).

A SavedModel keeps its variables in a TensorFlow tensor bundle: ``variables.index`` is a LevelDB
table (uncompressed blocks) from tensor name to a ``BundleEntryProto`` (dtype, shape, offset and
size in ``variables.data-00000-of-00001``, little-endian). From it: ``layer_with_weights-*/mean``
and ``variance`` (the normalisation) and each dense layer's ``kernel``/``bias`` in layer order.
The categorical columns are the ``"int"`` entries of the ``encoding`` list in
``keras_metadata.pb``; their vocabularies are not variables (the checkpointed ``token_counts``
tables are empty) but ``Const`` pairs in ``saved_model.pb``'s graph: a string tensor of ``"%f"``
keys followed by the int64 tensor of their values, one pair per categorical column in column
order. Both released files convert to exactly the arrays of ``../shared/models/laion-clip-nsfw``
(tests/models/test_keras_nsfw.py).
"""

from __future__ import annotations

import json
import re
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

_TABLE_MAGIC = 0xDB4775248B80FB57
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64}  # TensorFlow DataType -> numpy
_DT_STRING, _DT_INT64 = 7, 9
_VARIABLE = re.compile(r"layer_with_weights-(\d+)/(\w+)/\.ATTRIBUTES/VARIABLE_VALUE")


def read_release(path: Path) -> dict[str, np.ndarray]:
    """The ``.npz``-layout arrays of a released autokeras NSFW zip; ValueError when it is not one."""
    with zipfile.ZipFile(path) as archive:
        members = {Path(name).name: name for name in archive.namelist() if not name.endswith("/")}
        needed = ("variables.index", "variables.data-00000-of-00001", "saved_model.pb", "keras_metadata.pb")
        missing = [name for name in needed if name not in members]
        if missing:
            raise ValueError(f"no {missing[0]} in the zip (a Keras SavedModel of LAION's CLIP NSFW detector)")
        index, data, graph, metadata = (archive.read(members[name]) for name in needed)
    layers = _layer_variables(index, data)
    arrays = next(({"mean": v["mean"], "variance": v["variance"]} for v in layers.values() if "mean" in v), None)
    if arrays is None:
        raise ValueError("no normalisation layer (mean, variance) among the variables")
    dense = [layers[n] for n in sorted(layers) if "kernel" in layers[n] and "bias" in layers[n]]
    for i, layer in enumerate(dense):
        arrays[f"W{i}"], arrays[f"b{i}"] = layer["kernel"], layer["bias"]
    columns = _categorical_columns(metadata)
    vocabularies = _vocabularies(graph)
    if len(vocabularies) != len(columns):
        raise ValueError(f"{len(columns)} categorical columns but {len(vocabularies)} vocabularies in the graph")
    arrays["cat_cols"] = np.array(columns, np.int64)
    for column, (keys, values) in zip(columns, vocabularies, strict=True):
        arrays[f"cat{column}_keys"], arrays[f"cat{column}_vals"] = keys, values
    return arrays


def _layer_variables(index: bytes, data: bytes) -> dict[int, dict[str, np.ndarray]]:
    """Numeric variables of the bundle by layer number and name (``mean``, ``kernel``, ...)."""
    layers: dict[int, dict[str, np.ndarray]] = {}
    for key, entry in _table(index):
        named = _VARIABLE.fullmatch(key.decode("utf-8", "replace"))
        if not named:
            continue
        fields = dict(_fields(entry))
        dtype = _DTYPES.get(fields.get(1, 0))
        if dtype is None:
            continue
        shape = [dict(_fields(dim)).get(1, 0) for number, dim in _fields(fields.get(2, b"")) if number == 2]
        offset, size = fields.get(4, 0), fields.get(5, 0)
        values = np.frombuffer(data[offset:offset + size], np.dtype(dtype).newbyteorder("<")).astype(dtype)
        layers.setdefault(int(named.group(1)), {})[named.group(2)] = values.reshape(shape)
    return layers


def _categorical_columns(metadata: bytes) -> list[int]:
    """The columns autokeras encoded as categorical: ``"int"`` in the ``encoding`` list."""
    found = re.search(rb'"encoding": (\[[^\]]*\])', metadata)
    if found is None:
        raise ValueError("no categorical encoding list in keras_metadata.pb")
    return [i for i, kind in enumerate(json.loads(found.group(1))) if kind == "int"]


def _vocabularies(graph: bytes) -> list[tuple[np.ndarray, np.ndarray]]:
    """(keys, values) of each string ``Const`` followed by an int64 ``Const`` of its length, in
    graph order (SavedModel -> MetaGraphDef 2 -> GraphDef 2 -> NodeDef 1)."""
    constants = []
    for number, meta in _fields(graph):
        if number != 2:
            continue
        for number2, graph_def in _fields(meta):
            if number2 != 2:
                continue
            constants += [t for number3, node in _fields(graph_def) if number3 == 1 and (t := _const_tensor(node))]
    pairs = []
    for (keys_type, keys), (values_type, values) in zip(constants, constants[1:], strict=False):
        if keys_type == _DT_STRING and values_type == _DT_INT64 and len(keys) == len(values) > 0:
            pairs.append((np.array([k.decode() for k in keys]), np.array(values, np.int64)))
    return pairs


def _const_tensor(node: bytes) -> tuple[int, list] | None:
    """(dtype, values) of a ``Const`` NodeDef holding a string or int64 vector, else None."""
    fields = list(_fields(node))
    if (2, b"Const") not in fields:
        return None
    for number, attr in fields:
        entry = dict(_fields(attr)) if number == 5 else {}
        if entry.get(1) != b"value":
            continue
        tensor = list(_fields(dict(_fields(entry[2])).get(8, b"")))
        dtype = next((v for n, v in tensor if n == 1), 0)
        if dtype == _DT_STRING:
            return dtype, [v for n, v in tensor if n == 8]
        content = next((v for n, v in tensor if n == 4), None)
        if dtype == _DT_INT64 and content is not None:
            return dtype, np.frombuffer(content, "<i8").tolist()
    return None


def _table(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """The (key, value) entries of a LevelDB table with uncompressed blocks (TensorFlow's
    ``variables.index``): footer -> index block -> data blocks."""
    if len(data) < 48 or struct.unpack_from("<Q", data, len(data) - 8)[0] != _TABLE_MAGIC:
        raise ValueError("variables.index is not a LevelDB table")
    footer = data[-48:]
    _, at = _varint(footer, 0)
    _, at = _varint(footer, at)  # the metaindex handle (unused)
    index_offset, at = _varint(footer, at)
    index_size, _ = _varint(footer, at)
    for _, handle in _block(data, index_offset, index_size):
        offset, at = _varint(handle, 0)
        size, _ = _varint(handle, at)
        yield from _block(data, offset, size)


def _block(data: bytes, offset: int, size: int) -> Iterator[tuple[bytes, bytes]]:
    if data[offset + size] != 0:
        raise ValueError("variables.index has compressed blocks")
    block = data[offset:offset + size]
    restarts = struct.unpack_from("<I", block, size - 4)[0]
    end, at, key = size - 4 - 4 * restarts, 0, b""
    while at < end:
        shared, at = _varint(block, at)
        unshared, at = _varint(block, at)
        length, at = _varint(block, at)
        key = key[:shared] + block[at:at + unshared]
        at += unshared
        yield key, block[at:at + length]
        at += length


def _fields(message: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message: varints as int, length-delimited as bytes."""
    at = 0
    while at < len(message):
        tag, at = _varint(message, at)
        kind = tag & 7
        if kind == 0:
            value, at = _varint(message, at)
        elif kind == 2:
            length, at = _varint(message, at)
            value, at = message[at:at + length], at + length
        elif kind in (1, 5):
            width = 8 if kind == 1 else 4
            value, at = message[at:at + width], at + width
        else:
            raise ValueError(f"protobuf wire type {kind} is not used by these files")
        yield tag >> 3, value


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data):
            raise ValueError("truncated varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at
