"""Writers of one work-unit part: WebDataset shards, their metadata parquet, and the ledger.

Files are written under ``tmp_root`` (a path or a store URI), named by unit and first row: on
local disk the run's ``_tmp/``, from where the driver moves them into place (shards under their
next free index); on an object store the run directory itself, under names that carry the
driver's attempt, listed by the unit's marker (see :mod:`curate.engine.rundir`). Each file
appears whole or not at all (:func:`curate.storage.open_output`). Feature columns (embeddings)
go to one float16 ``.npy`` per shard and column, ``<shard>.<column>.npy``, never into the sample
JSON or the parquet. A full or read-only disk, or a store that refuses the write, is the user's
to fix: it becomes a one-line :class:`~curate.errors.UserError`, and the rerun resumes.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate import storage
from curate.config import first_line
from curate.engine.s3_conditional import S3RequestError
from curate.errors import UserError
from curate.io.tar_writer import ShardTarWriter
from curate.schema import (
    CAPTION,
    DROP_DETAIL,
    DROP_REASON,
    DROP_STAGE,
    DROP_THUMBNAIL,
    HEAVY,
    IMAGE,
    ROW,
    SECONDS_PREFIX,
    THUMBNAILS_PER_REASON,
    UID,
    UNIT,
    URL,
    is_internal,
)
from curate.stats.histogram import summarise

#: The ledger: one row per dropped sample with its ``caption`` and ``scores`` (its other metadata
#: columns when it was dropped, as a JSON object: one schema for every ledger file, whichever
#: stages a unit's rows reached) and ``thumbnail``, a small JPEG for a few dropped rows per reason
#: that had an image (see curate.engine.blocks), null elsewhere.
REJECTS_SCHEMA = pa.schema(
    [("uid", pa.string()), ("stage", pa.string()), ("reason", pa.string()), ("detail", pa.string()),
     ("url", pa.string()), ("unit", pa.int32()), ("row", pa.int32()), ("caption", pa.string()),
     ("scores", pa.string()), ("thumbnail", pa.binary())]
)


@dataclass
class PartRecord:
    """What a writer task reports to the driver about one part of one unit."""

    unit: int
    row0: int
    rows: int
    kept: int
    files: list[str] = field(default_factory=list)
    drops: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> worker-seconds spent on these rows
    histograms: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # see curate.stats.histogram

    def to_row(self) -> dict:
        return {"unit": self.unit, "row0": self.row0, "rows": self.rows, "kept": self.kept,
                "files": json.dumps(self.files), "drops": json.dumps(self.drops), "seconds": json.dumps(self.seconds),
                "histograms": json.dumps(self.histograms)}

    @classmethod
    def from_row(cls, row: dict) -> PartRecord:
        return cls(int(row["unit"]), int(row["row0"]), int(row["rows"]), int(row["kept"]),
                   json.loads(row["files"]), json.loads(row["drops"]), json.loads(row.get("seconds") or "{}"),
                   json.loads(row.get("histograms") or "{}"))


def part_name(unit: int, row0: int, tag: str = "") -> str:
    """``00012-0004000`` (unit 12, first row 4000); ``tag`` marks retry rounds (``00012-r1-...``)."""
    return f"{unit:05d}-{tag + '-' if tag else ''}{row0:07d}"


_FREE, _WRITABLE = "free some space", "make it writable"
_STORAGE_FAULTS = {errno.ENOSPC: ("no space left on device", _FREE), errno.EDQUOT: ("disk quota exceeded", _FREE),
                   errno.EROFS: ("read-only file system", _WRITABLE), errno.EACCES: ("permission denied", _WRITABLE),
                   errno.EPERM: ("permission denied", _WRITABLE)}


def storage_error(err: OSError, root: Path | str) -> UserError | None:
    """The one-line error for an output that cannot be written (full, read-only, not ours), or
    None for any other OSError (a bug). Errors naming a file elsewhere are not the output's.
    On a store, the store's answers (pyarrow gives no errno; its messages say ``AWS Error``):
    denied access, a missing bucket, an unreachable endpoint."""
    if not storage.is_local(str(root)):
        if not _from_the_store(err):
            return None
        return UserError(f"{root}: the store refused a request ({first_line(err)}; check the bucket, "
                         "AWS_ENDPOINT_URL and the credentials; rerunning the same command resumes)")
    if err.errno not in _STORAGE_FAULTS or (err.filename is None and err.errno in (errno.EACCES, errno.EPERM)):
        return None
    if err.filename is not None and not Path(os.fsdecode(err.filename)).resolve().is_relative_to(root):
        return None
    fault, fix = _STORAGE_FAULTS[err.errno]
    where = f" writing {os.fsdecode(err.filename)}" if err.filename else ""
    return UserError(f"{root}: {fault}{where} ({fix} or choose another --output; rerunning the same command resumes)")


def _from_the_store(err: OSError) -> bool:
    return isinstance(err, S3RequestError) or "AWS Error" in str(err)


def write_unit_part(part: pa.Table, tmp_root: Path | str, samples_per_shard: int, image_ext: str, tag: str = "",
                    feature_columns: tuple[str, ...] = (), score_columns: tuple[str, ...] = ()) -> PartRecord:
    """Write the kept rows of ``part`` (rows of one unit) as shards and its drops as a ledger; the
    record counts drops, stage seconds and histograms of ``score_columns`` over all its rows."""
    tmp_root = str(tmp_root)
    try:
        return _write_unit_part(part, tmp_root, samples_per_shard, image_ext, tag, feature_columns, score_columns)
    except OSError as err:
        failure = storage_error(err, Path(tmp_root).resolve().parent if storage.is_local(tmp_root) else tmp_root)
        if failure is None:
            raise
        raise failure from err


def _write_unit_part(part: pa.Table, tmp_root: str, samples_per_shard: int, image_ext: str, tag: str,
                     feature_columns: tuple[str, ...], score_columns: tuple[str, ...]) -> PartRecord:
    unit = int(part.column(UNIT)[0].as_py())
    rows = part.column(ROW).to_numpy()
    order = np.argsort(rows, kind="stable")
    part = part.take(pa.array(order))
    row0 = int(rows[order[0]])
    dropped_mask = pc.is_valid(part.column(DROP_STAGE))
    kept = part.filter(pc.invert(dropped_mask))
    dropped = part.filter(dropped_mask)
    record = PartRecord(unit=unit, row0=row0, rows=part.num_rows, kept=kept.num_rows, drops=_count_drops(dropped),
                        seconds=stage_seconds(part), histograms=summarise(part, score_columns))
    for start in range(0, kept.num_rows, samples_per_shard):
        chunk = kept.slice(start, samples_per_shard)
        name = part_name(unit, int(chunk.column(ROW)[0].as_py()), tag)
        record.files += _write_shard(chunk, tmp_root, name, image_ext, feature_columns)
    if dropped.num_rows:
        relative = f"rejects/{part_name(unit, row0, tag)}.parquet"
        _atomic_parquet(_ledger(dropped, feature_columns), storage.join(tmp_root, relative))
        record.files.append(relative)
    return record


def _count_drops(dropped: pa.Table) -> dict[str, dict[str, int]]:
    counts = dropped.group_by([DROP_STAGE, DROP_REASON], use_threads=False).aggregate([([], "count_all")])
    result: dict[str, dict[str, int]] = {}
    for row in counts.to_pylist():
        result.setdefault(row[DROP_STAGE], {})[row[DROP_REASON]] = row["count_all"]
    return result


def stage_seconds(part: pa.Table) -> dict[str, float]:
    """Worker-seconds per stage spent on ``part``'s rows (the rows' ``_seconds:<stage>`` summed)."""
    return {name.removeprefix(SECONDS_PREFIX): float(pc.sum(part.column(name)).as_py() or 0.0)
            for name in part.column_names if name.startswith(SECONDS_PREFIX)}


def _ledger(dropped: pa.Table, feature_columns: tuple[str, ...]) -> pa.Table:
    columns = [dropped.column(name) for name in (UID, DROP_STAGE, DROP_REASON, DROP_DETAIL, URL, UNIT, ROW)]
    caption = dropped.column(CAPTION) if CAPTION in dropped.column_names else pa.nulls(dropped.num_rows, pa.string())
    thumbnails = _first_thumbnails(dropped)
    return pa.table([*columns, caption, _scores_json(dropped, feature_columns),
                     thumbnails if thumbnails is not None else pa.nulls(dropped.num_rows, pa.binary())], schema=REJECTS_SCHEMA)


def _scores_json(dropped: pa.Table, feature_columns: tuple[str, ...]) -> pa.Array:
    """Each row's other metadata columns (scores) as a JSON object, its null values left out."""
    names = [c for c in metadata_columns(dropped, feature_columns) if c not in (UID, URL, CAPTION)]
    rows = dropped.select(names).to_pylist()
    return pa.array([json.dumps({k: v for k, v in row.items() if v is not None}, default=str) for row in rows], pa.string())


def scores_table(scores: list[str | None]) -> pa.Table:
    """The ledger's ``scores`` JSON objects as columns (a column per key any row has; null where a row lacks it)."""
    rows = [json.loads(text) if text else {} for text in scores]
    names = dict.fromkeys(name for row in rows for name in row)
    return pa.table({name: [row.get(name) for row in rows] for name in names}) if names else pa.table({})


def _first_thumbnails(dropped: pa.Table) -> pa.Array | None:
    """The rows' thumbnails, at most THUMBNAILS_PER_REASON per (stage, reason) (batches each chose theirs)."""
    if DROP_THUMBNAIL not in dropped.column_names:
        return None
    column = dropped.column(DROP_THUMBNAIL)
    pictured = np.flatnonzero(pc.is_valid(column).to_numpy(zero_copy_only=False))  # a few rows, not every drop
    stages, reasons = dropped.column(DROP_STAGE).take(pictured), dropped.column(DROP_REASON).take(pictured)
    seen: dict[tuple[str, str], int] = {}
    keep = np.zeros(dropped.num_rows, bool)
    for index, key in zip(pictured, zip(stages.to_pylist(), reasons.to_pylist(), strict=True), strict=True):
        seen[key] = seen.get(key, 0) + 1
        keep[index] = seen[key] <= THUMBNAILS_PER_REASON
    return pc.if_else(pa.array(keep), column.combine_chunks(), pa.scalar(None, pa.binary()))


def metadata_columns(table: pa.Table, feature_columns: tuple[str, ...] = ()) -> list[str]:
    """Columns that go to the shard json and parquet: everything but bytes, features and bookkeeping."""
    return [c for c in table.column_names if not is_internal(c) and c not in HEAVY and c not in feature_columns]


def _write_shard(chunk: pa.Table, tmp_root: str, name: str, image_ext: str, feature_columns: tuple[str, ...]) -> list[str]:
    tar_rel, parquet_rel = f"shards/{name}.tar", f"shards/{name}.parquet"
    meta = chunk.select(metadata_columns(chunk, feature_columns))
    records = meta.to_pylist()
    images = chunk.column(IMAGE).to_pylist() if IMAGE in chunk.column_names else [None] * chunk.num_rows
    with storage.open_output(storage.join(tmp_root, tar_rel)) as handle:
        tar = ShardTarWriter(handle)
        for record, image in zip(records, images, strict=True):
            sample = {"txt": (record.get(CAPTION) or "").encode("utf-8"), "json": json.dumps(record).encode("utf-8")}
            if image is not None:
                sample[image_ext] = image
            tar.add(record[UID], sample)
        tar.close()
    _atomic_parquet(meta, storage.join(tmp_root, parquet_rel))
    files = [tar_rel, parquet_rel]
    for column in feature_columns:
        relative = f"shards/{name}.{column}.npy"
        with storage.open_output(storage.join(tmp_root, relative)) as handle:
            np.save(handle, feature_matrix(chunk.column(column)))
        files.append(relative)
    return files


def feature_matrix(values: pa.ChunkedArray) -> np.ndarray:
    """A feature column (fixed-size or variable lists of floats, one vector per row, all of one
    length) as a float16 ``rows x dim`` matrix, in the shard's sample order."""
    values = values.combine_chunks()
    if pa.types.is_fixed_size_list(values.type):
        dim = values.type.list_size
    else:
        lengths = pc.list_value_length(values).to_numpy(zero_copy_only=False)
        dim = int(lengths[0]) if len(lengths) else 0
        if len(lengths) and (lengths != dim).any():
            raise ValueError(f"feature vectors of different lengths ({sorted(set(lengths.tolist()))[:3]})")
    flat = pc.list_flatten(values).to_numpy(zero_copy_only=False)
    return flat.astype(np.float16).reshape(len(values), dim)


def _atomic_parquet(table: pa.Table, uri: str) -> None:
    with storage.open_output(uri) as handle:
        pq.write_table(table, handle)
