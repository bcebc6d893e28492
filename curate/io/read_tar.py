"""WebDataset tar inputs: one row per sample; ``.txt`` is the caption, ``.json`` holds the url
and kept fields, the first image member (jpg, jpeg, png, webp) goes to ``image``.

Samples are grouped as WebDataset groups them (``webdataset.tariterators.group_by_keys``):
consecutive members with the same key form a sample, and a repeated extension starts a new
one. So a key used twice is two samples, never one merged sample: the second is a
``duplicate_key`` ledger row. A member larger than ``input.max_member_bytes`` is never read (the
tar reader seeks over it, so memory stays bounded by the cap: a 1 MB ``.tar.gz`` can hold a
1 GiB member); its sample is a ``too_large`` ledger row.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa

from curate.config import InputSpec
from curate.errors import InputError
from curate.io.read_common import (
    BadRows,
    Unit,
    first_line,
    json_kind,
    loose_column,
    open_binary,
    required_columns,
    text_columns,
    text_value,
)

_IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")


def split_key(name: str) -> tuple[str, str]:
    """WebDataset convention: the key is everything before the first dot of the basename."""
    directory, base = os.path.split(name)
    stem, _, ext = base.partition(".")
    return os.path.join(directory, stem), ext.lower()


def _grouped(tar: tarfile.TarFile) -> Iterator[tuple[int, str, tarfile.TarInfo]]:
    """``(sample index, key, member)`` for every file member, in archive order."""
    sample, key, extensions = -1, None, set()
    for member in tar:
        if not member.isfile():
            continue
        member_key, ext = split_key(member.name)
        if sample < 0 or member_key != key or ext in extensions:
            sample, key, extensions = sample + 1, member_key, set()
        extensions.add(ext)
        yield sample, member_key, member


def tar_samples(path: str) -> int:
    """How many samples the tar holds (member headers only; no data is read). Runs on a worker:
    a gzipped tar is read whole to list its members."""
    samples = 0
    try:
        with open_binary(path) as handle, tarfile.open(fileobj=handle, mode="r:*") as tar:
            for sample, _, _ in _grouped(tar):
                samples = sample + 1
    except (tarfile.TarError, OSError, EOFError) as err:
        raise InputError(
            f"{path}: not a readable tar file ({first_line(err)}); re-create it or remove it from input.path"
        ) from None
    return samples


@dataclass
class _Sample:
    key: str
    data: dict[str, bytes] = field(default_factory=dict)  # extension -> member bytes
    names: dict[str, str] = field(default_factory=dict)  # extension -> member name
    problem: tuple[str, str] | None = None  # (reason, detail) found while reading the members


def _collect(unit: Unit, cap: int) -> list[_Sample]:
    """The unit's samples; members of earlier samples are skipped, not read."""
    samples: list[_Sample] = []
    first_of_key: dict[str, int] = {}
    with open_binary(unit.path) as handle, tarfile.open(fileobj=handle, mode="r:*") as tar:
        for index, key, member in _grouped(tar):
            if index >= unit.stop:
                break
            first = first_of_key.setdefault(key, index)
            if index < unit.start:
                continue
            if index - unit.start == len(samples):
                samples.append(_Sample(key))
                if first != index:
                    samples[-1].problem = ("duplicate_key", f"key {key!r} already used by row {first} of this file")
            sample = samples[-1]
            ext = split_key(member.name)[1]
            sample.names[ext] = member.name
            if member.size > cap:
                sample.problem = sample.problem or (
                    "too_large", f"{member.name}: {member.size} bytes, over input.max_member_bytes={cap}")
                continue
            sample.data[ext] = tar.extractfile(member).read()
    return samples


def _meta(sample: _Sample, row: int, bad: BadRows) -> dict:
    raw = sample.data.get("json")
    if raw is None:
        return {}
    name = sample.names["json"]
    try:
        meta = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        bad.setdefault(row, ("invalid_utf8", f"{name}: {err.reason} at byte {err.start}"))
        return {}
    except ValueError as err:
        bad.setdefault(row, ("invalid_json", f"{name}: not JSON ({err})"))
        return {}
    if not isinstance(meta, dict):
        bad.setdefault(row, ("invalid_json", f"{name}: a JSON {json_kind(meta)}, expected an object"))
        return {}
    return meta


def _caption(sample: _Sample, meta: dict, row: int, spec: InputSpec, bad: BadRows) -> str | None:
    if "txt" not in sample.data:
        return text_value(meta.get(spec.caption_column), row, spec.caption_column, bad, f"{sample.names.get('json')}: ")
    try:
        return sample.data["txt"].decode("utf-8")
    except UnicodeDecodeError as err:
        bad.setdefault(row, ("invalid_utf8", f"{sample.names['txt']}: {err.reason} at byte {err.start}"))
        return None


def read_tar(unit: Unit, spec: InputSpec) -> tuple[pa.Table, BadRows]:
    bad: BadRows = {}
    extra_fields = [c for c in required_columns(spec) if c not in (spec.url_column, spec.caption_column)]
    urls, captions, images = [], [], []
    extra: dict[str, list] = {c: [] for c in extra_fields}
    texts = set(text_columns(spec))  # among the extra fields: the uid column
    for row, sample in enumerate(_collect(unit, spec.max_member_bytes)):
        if sample.problem:
            bad[row] = sample.problem
        meta = _meta(sample, row, bad)
        where = f"{sample.names.get('json')}: "
        urls.append(text_value(meta.get(spec.url_column, sample.key), row, spec.url_column, bad, where))
        captions.append(_caption(sample, meta, row, spec, bad))
        images.append(next((sample.data[e] for e in _IMAGE_EXTENSIONS if e in sample.data), None))
        for name in extra_fields:
            value = meta.get(name)
            extra[name].append(text_value(value, row, name, bad, where) if name in texts else value)
    columns = {spec.url_column: pa.array(urls, pa.string()), spec.caption_column: pa.array(captions, pa.string()),
               "image": pa.array(images, pa.binary())}
    return pa.table(columns | {c: loose_column(v) for c, v in extra.items()}), bad
