"""Input readers: parquet, csv, tsv, jsonl[.gz] and WebDataset tars -> Arrow row tables.

Planning (:func:`plan_units`) runs on the driver before Ray starts and checks what can be
checked cheaply: files exist, are non-empty, readable in the declared format, and hold the
URL and caption columns (as text, for parquet). It splits each file into work units of
``rows_per_unit`` rows. Reading (:func:`read_unit`) runs on workers. A row that cannot be used
(invalid UTF-8, a line or ``.json`` that is not a JSON object, a url or caption that is not a
string, an oversized tar member, a repeated tar key, a malformed or repeated uid) is not lost: it becomes a ledger row
of the ``read`` stage (reasons in :mod:`curate.io.read_common`). Format modules: ``read_text``,
``read_parquet``, ``read_tar``; the uid checks: ``duplicate_uids``.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate import storage
from curate.config import InputSpec
from curate.errors import InputError
from curate.io.duplicate_uids import DuplicateUidCheck
from curate.io.features import read_features
from curate.io.plan import plan_inputs
from curate.io.plan_tasks import TaskRunner, run_here
from curate.io.read_common import READ_STAGE, BadRows, Unit
from curate.io.read_parquet import read_parquet
from curate.io.read_tar import read_tar
from curate.io.read_text import read_csv, read_jsonl
from curate.schema import CAPTION, DROP_DETAIL, DROP_REASON, DROP_STAGE, IMAGE, ROW, UID, UNIT, URL, compute_uids, released_heavy
from curate.stages.base import Stage, append_columns

__all__ = ["READ_STAGE", "Unit", "expand_paths", "plan_units", "read_stages", "read_unit"]

_SUFFIXES = {
    ".parquet": "parquet",
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".jsonl.gz": "jsonl",
    ".json.gz": "jsonl",
    ".tar": "webdataset",
    ".tar.gz": "webdataset",
    ".tgz": "webdataset",
}


def expand_paths(spec: InputSpec) -> list[str]:
    """Files named by ``input.path`` (files, directories' supported files, globs; local paths or
    ``s3://`` / ``gs://`` URIs), local ones absolute and normalised; a file named twice (two
    patterns, a symlink) is read once."""
    patterns = spec.path if isinstance(spec.path, list) else [spec.path]
    files: list[str] = []
    for pattern in patterns:
        if not storage.is_local(pattern):
            files.extend(_expand_store(pattern.rstrip("/")))
        elif any(ch in pattern for ch in "*?["):
            matches = sorted(glob.glob(pattern, recursive=True))
            if not matches:
                raise InputError(f"input.path: no file matches {pattern!r} (check the pattern; relative to {os.getcwd()})")
            files.extend(m for m in matches if os.path.isfile(m))
        elif os.path.isdir(pattern):
            found = sorted(str(p) for p in Path(pattern).rglob("*") if p.is_file() and format_of(str(p)))
            if not found:
                raise InputError(f"input.path: directory {pattern!r} holds no parquet/csv/tsv/jsonl/tar file")
            files.extend(found)
        elif os.path.isfile(pattern):
            files.append(pattern)
        else:
            raise InputError(f"input.path: {pattern!r} does not exist (check the path, relative to {os.getcwd()})")
    unique: dict[str, str] = {}
    for name in files:
        if storage.is_local(name):
            unique.setdefault(os.path.realpath(name), os.path.normpath(os.path.abspath(name)))
        else:
            unique.setdefault(name, name)
    return list(unique.values())


def _expand_store(pattern: str) -> list[str]:
    """A store pattern: a glob, an object, or a prefix ("directory") of supported files."""
    if any(ch in pattern for ch in "*?["):
        matches = storage.glob(pattern)
        if not matches:
            raise InputError(f"input.path: no object matches {pattern!r} (check the pattern, the bucket and AWS_ENDPOINT_URL)")
        return matches
    try:
        if storage.file_size(pattern) >= 0:
            return [pattern]
    except FileNotFoundError:
        pass
    below = storage.list_files(pattern)
    found = [uri for uri in below if format_of(uri)]
    if below and not found:
        raise InputError(f"input.path: {pattern!r} holds no parquet/csv/tsv/jsonl/tar object")
    if not found:
        raise InputError(f"input.path: {pattern!r} does not exist (check the URI, the bucket and AWS_ENDPOINT_URL)")
    return found


def format_of(path: str) -> str | None:
    name = path.lower()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return _SUFFIXES[suffix]
    return None


def plan_units(spec: InputSpec, run_tasks: TaskRunner = run_here) -> list[Unit]:
    """Split every input file into work units, validating formats and columns up front; the
    reading that counting rows needs runs as ``run_tasks`` (see :mod:`curate.io.plan`)."""
    return plan_inputs(spec).units(run_tasks)


def read_stages(spec: InputSpec, units: list[Unit]) -> list[Stage]:
    """Implicit stages the pipeline runs before the user's; their drops count under ``read``.

    The cross-unit uid check comes first (a global stage replays what precedes it), then the
    image path of tar inputs. A user's global stage after a tar input replays the image decode
    in its observe pass until global stages checkpoint instead of replaying (issue #6)."""
    stages: list[Stage] = [DuplicateUidCheck(units)] if spec.uid_column else []
    if any(unit.format == "webdataset" for unit in units):
        from curate.io.tar_images import TarImageCheck  # the image path (cv2, PIL): only for tar inputs

        stages.append(TarImageCheck())
    return stages


# -- reading (on workers) ---------------------------------------------------------------


def read_unit(unit: Unit, spec: InputSpec) -> pa.Table:
    """The unit's rows with ``uid``, ``url``, ``caption``, kept columns and bookkeeping."""
    reader = {"parquet": read_parquet, "csv": read_csv, "tsv": read_csv, "jsonl": read_jsonl, "webdataset": read_tar}
    table, bad = reader[unit.format](unit, spec)
    if table.num_rows != unit.size:
        raise InputError(f"{unit.path}: expected {unit.size} rows in rows {unit.start}..{unit.stop}, read {table.num_rows}")
    return _with_bookkeeping(table, unit, spec, bad)


def _with_bookkeeping(table: pa.Table, unit: Unit, spec: InputSpec, bad: BadRows) -> pa.Table:
    """Readers hand url, caption and uid columns as strings (or null) and the bad rows apart."""
    urls = pc.cast(table.column(spec.url_column), pa.string())
    captions = pc.cast(table.column(spec.caption_column), pa.string())
    columns = {UID: _uids(table, urls, captions, unit, spec, bad), URL: urls, CAPTION: captions}
    for name in [*spec.keep_columns, *([IMAGE] if IMAGE in table.column_names else [])]:
        if name not in columns:
            columns[name] = table.column(name)
    if spec.features:
        columns.update(read_features(unit.path, unit.start, unit.stop, spec.features))
    n = table.num_rows
    columns[UNIT] = pa.array(np.full(n, unit.index, np.int32))
    columns[ROW] = pa.array(np.arange(unit.start, unit.stop, dtype=np.int32))
    columns[DROP_STAGE], columns[DROP_REASON], columns[DROP_DETAIL] = _read_drops(n, bad)
    table = pa.table(columns)
    if bad:  # a dropped row releases its heavy columns, as after any stage (engine/blocks.py)
        table = append_columns(table, released_heavy(table, pa.array(np.isin(np.arange(n), list(bad))),
                                                     (IMAGE, *spec.features)))
    return table


def _read_drops(n: int, bad: BadRows) -> tuple[pa.Array, pa.Array, pa.Array]:
    """The bookkeeping columns of a freshly read unit: rows in ``bad`` are dropped by ``read``."""
    if not bad:
        return pa.nulls(n, pa.string()), pa.nulls(n, pa.string()), pa.nulls(n, pa.string())
    stage = [READ_STAGE if i in bad else None for i in range(n)]
    reason = [bad[i][0] if i in bad else None for i in range(n)]
    detail = [bad[i][1] if i in bad else None for i in range(n)]
    return pa.array(stage, pa.string()), pa.array(reason, pa.string()), pa.array(detail, pa.string())


def _uids(table: pa.Table, urls: pa.Array, captions: pa.Array, unit: Unit, spec: InputSpec, bad: BadRows) -> pa.Array:
    """Hashed uids, or the input's own (``input.uid_column``); a malformed one is a ledger row
    (a repeated one is found across units by :class:`curate.io.duplicate_uids.DuplicateUidCheck`).

    The hash includes the file's absolute path, its identity: two files with one base name in
    two folders are two sources. So moving an input changes its hashed uids; ``input.uid_column``
    gives ids that survive a move."""
    hashed = compute_uids(urls, captions, unit.path, unit.start)
    if not spec.uid_column:
        return hashed
    raw = table.column(spec.uid_column)
    given = pc.utf8_lower(pc.cast(raw, pa.string()))
    valid = pc.fill_null(pc.match_substring_regex(given, r"^[0-9a-f]{32}$"), False)
    for row in pc.indices_nonzero(pc.invert(valid)).to_pylist():
        bad.setdefault(row, ("invalid_uid", f"{spec.uid_column}={raw[row].as_py()!r} is not 32 hex chars"))
    return pc.if_else(valid, given, hashed).combine_chunks()
