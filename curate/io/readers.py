"""Input readers: parquet, csv, tsv, jsonl[.gz] and WebDataset tars -> Arrow row tables.

Planning (:func:`plan_units`) runs on the driver before Ray starts and checks what can be
checked cheaply: files exist, are non-empty, readable in the declared format, and hold the
URL and caption columns. It splits each file into work units of ``rows_per_unit`` rows.
Reading (:func:`read_unit`) runs on workers. A row that cannot be decoded (invalid UTF-8,
a line that is not JSON) is not lost: it becomes a ledger row of the ``read`` stage.
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from curate.config import InputSpec
from curate.errors import InputError
from curate.schema import CAPTION, DROP_DETAIL, DROP_REASON, DROP_STAGE, ROW, UID, UNIT, URL, compute_uids

READ_STAGE = "read"
_SUFFIXES = {
    ".parquet": "parquet",
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".jsonl.gz": "jsonl",
    ".json.gz": "jsonl",
    ".tar": "webdataset",
}
_IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")


@dataclass(frozen=True)
class Unit:
    """One work unit: rows ``[start, stop)`` of one input file (bytes ``[byte_start, byte_stop)``
    for line-based formats)."""

    index: int
    path: str
    format: str
    start: int
    stop: int
    byte_start: int = 0
    byte_stop: int = 0

    @property
    def size(self) -> int:
        return self.stop - self.start


def expand_paths(spec: InputSpec) -> list[str]:
    """Files named by ``input.path``: files, directories (their supported files) and globs."""
    patterns = spec.path if isinstance(spec.path, list) else [spec.path]
    files: list[str] = []
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            matches = sorted(glob.glob(pattern, recursive=True))
            if not matches:
                raise InputError(f"input.path: no file matches {pattern!r} (check the pattern; relative to {os.getcwd()})")
            files.extend(m for m in matches if os.path.isfile(m))
        elif os.path.isdir(pattern):
            found = sorted(str(p) for p in Path(pattern).rglob("*") if p.is_file() and _format_of(str(p)))
            if not found:
                raise InputError(f"input.path: directory {pattern!r} holds no parquet/csv/tsv/jsonl/tar file")
            files.extend(found)
        elif os.path.isfile(pattern):
            files.append(pattern)
        else:
            raise InputError(f"input.path: {pattern!r} does not exist (check the path, relative to {os.getcwd()})")
    return [os.path.abspath(f) for f in files]


def _format_of(path: str) -> str | None:
    name = path.lower()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return _SUFFIXES[suffix]
    return None


def plan_units(spec: InputSpec) -> list[Unit]:
    """Split every input file into work units, validating formats and columns up front."""
    units: list[Unit] = []
    for path in expand_paths(spec):
        fmt = spec.format if spec.format != "auto" else _format_of(path)
        if fmt is None:
            raise InputError(f"{path}: cannot tell the format from the extension (set input.format)")
        if os.path.getsize(path) == 0:
            raise InputError(f"{path}: file is empty (remove it from input.path)")
        planner = {"parquet": _plan_parquet, "webdataset": _plan_tar}.get(fmt, _plan_lines)
        for start, stop, byte_start, byte_stop in planner(path, fmt, spec):
            units.append(Unit(len(units), path, fmt, start, stop, byte_start, byte_stop))
    if not units:
        raise InputError("input.path: the input files hold no rows")
    return units


def _required_columns(spec: InputSpec) -> list[str]:
    uid = [spec.uid_column] if spec.uid_column else []
    return list(dict.fromkeys([spec.url_column, spec.caption_column, *uid, *spec.keep_columns]))


def _check_columns(path: str, available: list[str], spec: InputSpec) -> None:
    missing = [c for c in _required_columns(spec) if c not in available]
    if missing:
        raise InputError(
            f"{path}: missing column {missing[0]!r} (has: {', '.join(available) or 'none'}; "
            f"set input.url_column / input.caption_column / input.keep_columns)"
        )


def _ranges(total: int, per_unit: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, per_unit):
        yield start, min(total, start + per_unit)


def _plan_parquet(path: str, fmt: str, spec: InputSpec):
    try:
        meta = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise InputError(
            f"{path}: not a readable parquet file ({_first_line(err)}); re-export it or remove it from input.path"
        ) from None
    _check_columns(path, meta.schema_arrow.names, spec)
    for start, stop in _ranges(meta.metadata.num_rows, spec.rows_per_unit):
        yield start, stop, 0, 0


def _open_binary(path: str):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")  # noqa: SIM115


def _plan_lines(path: str, fmt: str, spec: InputSpec):
    """Count lines and remember the byte offset of every ``rows_per_unit``-th row."""
    header_end = 0
    names: list[str] = []
    try:
        with _open_binary(path) as handle:
            first = handle.readline()
            if fmt in ("csv", "tsv"):
                header_end = len(first)
                names = _header_names(first, fmt, path)
                _check_columns(path, names, spec)
            else:
                _check_jsonl_first_line(first, path, spec)
            boundaries = [header_end]
            rows = 0
            position = header_end
            handle.seek(header_end)
            for line in handle:
                position += len(line)
                if line.strip():
                    rows += 1
                    if rows % spec.rows_per_unit == 0:
                        boundaries.append(position)
            if rows % spec.rows_per_unit:
                boundaries.append(position)
    except (OSError, EOFError) as err:
        raise InputError(f"{path}: cannot read ({_first_line(err)})") from None
    if fmt in ("csv", "tsv"):
        # A full parse at planning time: it finds malformed rows before Ray starts, and
        # quoted values that span lines (such a file cannot be split on newlines).
        parsed_rows = _csv_rows(path, fmt, names)
        if parsed_rows != rows:
            # Quoted values span lines: the file cannot be split on newlines, so it is one unit.
            yield 0, parsed_rows, header_end, position
            return
    for index in range(len(boundaries) - 1):
        start = index * spec.rows_per_unit
        stop = min(rows, start + spec.rows_per_unit)
        yield start, stop, boundaries[index], boundaries[index + 1]


def _csv_parse_options(fmt: str) -> pacsv.ParseOptions:
    return pacsv.ParseOptions(delimiter="\t" if fmt == "tsv" else ",", newlines_in_values=True)


def _csv_rows(path: str, fmt: str, names: list[str]) -> int:
    """Rows as a CSV parser sees them (quoted values may span lines); bytes, so bad UTF-8 counts too."""
    try:
        with _open_binary(path) as handle:
            convert = pacsv.ConvertOptions(column_types={name: pa.binary() for name in names})
            return pacsv.read_csv(handle, parse_options=_csv_parse_options(fmt), convert_options=convert).num_rows
    except pa.ArrowInvalid as err:
        raise InputError(
            f"{path}: not a readable {fmt.upper()} file ({_first_line(err)}); fix the row, or remove the file from input.path"
        ) from None


def _header_names(header: bytes, fmt: str, path: str) -> list[str]:
    try:
        table = pacsv.read_csv(io.BytesIO(header), parse_options=pacsv.ParseOptions(delimiter="\t" if fmt == "tsv" else ","))
    except pa.ArrowException as err:
        raise InputError(f"{path}: cannot parse the header ({_first_line(err)})") from None
    return table.column_names


def _check_jsonl_first_line(first: bytes, path: str, spec: InputSpec) -> None:
    try:
        record = json.loads(first)
    except ValueError as err:
        raise InputError(f"{path}: first line is not JSON ({err}); expected one JSON object per line") from None
    if not isinstance(record, dict):
        raise InputError(f"{path}: first line is not a JSON object; expected one object per line")
    _check_columns(path, list(record), spec)


def _plan_tar(path: str, fmt: str, spec: InputSpec):
    keys = _tar_keys(path)
    for start, stop in _ranges(len(keys), spec.rows_per_unit):
        yield start, stop, 0, 0


def _tar_keys(path: str) -> list[str]:
    try:
        with tarfile.open(path, "r:*") as tar:
            return list(dict.fromkeys(_split_key(m.name)[0] for m in tar if m.isfile()))
    except (tarfile.TarError, OSError) as err:
        raise InputError(
            f"{path}: not a readable tar file ({_first_line(err)}); re-create it or remove it from input.path"
        ) from None


def _split_key(name: str) -> tuple[str, str]:
    """WebDataset convention: the key is everything before the first dot of the basename."""
    directory, base = os.path.split(name)
    stem, _, ext = base.partition(".")
    return os.path.join(directory, stem), ext.lower()


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


# -- reading (on workers) ---------------------------------------------------------------


def read_unit(unit: Unit, spec: InputSpec) -> pa.Table:
    """The unit's rows with ``uid``, ``url``, ``caption``, kept columns and bookkeeping."""
    reader = {"parquet": _read_parquet, "csv": _read_csv, "tsv": _read_csv, "jsonl": _read_jsonl, "webdataset": _read_tar}
    table, bad = reader[unit.format](unit, spec)
    if table.num_rows != unit.size:
        raise InputError(f"{unit.path}: expected {unit.size} rows in rows {unit.start}..{unit.stop}, read {table.num_rows}")
    return _with_bookkeeping(table, unit, spec, bad)


def _with_bookkeeping(table: pa.Table, unit: Unit, spec: InputSpec, bad: dict[int, tuple[str, str]]) -> pa.Table:
    urls = pc.cast(table.column(spec.url_column), pa.string())
    captions = pc.cast(table.column(spec.caption_column), pa.string())
    columns = {UID: _uids(table, urls, captions, unit, spec, bad), URL: urls, CAPTION: captions}
    for name in [*spec.keep_columns, *(["jpg"] if "jpg" in table.column_names else [])]:
        if name not in columns:
            columns[name] = table.column(name)
    n = table.num_rows
    columns[UNIT] = pa.array(np.full(n, unit.index, np.int32))
    columns[ROW] = pa.array(np.arange(unit.start, unit.stop, dtype=np.int32))
    columns[DROP_STAGE], columns[DROP_REASON], columns[DROP_DETAIL] = _read_drops(n, bad)
    return pa.table(columns)


def _read_drops(n: int, bad: dict[int, tuple[str, str]]) -> tuple[pa.Array, pa.Array, pa.Array]:
    """The bookkeeping columns of a freshly read unit: rows in ``bad`` are dropped by ``read``."""
    if not bad:
        return pa.nulls(n, pa.string()), pa.nulls(n, pa.string()), pa.nulls(n, pa.string())
    stage = [READ_STAGE if i in bad else None for i in range(n)]
    reason = [bad[i][0] if i in bad else None for i in range(n)]
    detail = [bad[i][1] if i in bad else None for i in range(n)]
    return pa.array(stage, pa.string()), pa.array(reason, pa.string()), pa.array(detail, pa.string())


def _uids(table: pa.Table, urls: pa.Array, captions: pa.Array, unit: Unit, spec: InputSpec,
          bad: dict[int, tuple[str, str]]) -> pa.Array:
    """Hashed uids, or the input's own (``input.uid_column``); a malformed one is a ledger row."""
    hashed = compute_uids(urls, captions, os.path.basename(unit.path), unit.start)
    if not spec.uid_column:
        return hashed
    given = pc.utf8_lower(pc.cast(table.column(spec.uid_column), pa.string()))
    valid = pc.fill_null(pc.match_substring_regex(given, r"^[0-9a-f]{32}$"), False)
    for row in pc.indices_nonzero(pc.invert(valid)).to_pylist():
        value = table.column(spec.uid_column)[row].as_py()
        bad.setdefault(row, ("invalid_uid", f"{spec.uid_column}={value!r} is not 32 hex chars"))
    return pc.if_else(valid, given, hashed).combine_chunks()


def _read_parquet(unit: Unit, spec: InputSpec):
    handle = pq.ParquetFile(unit.path)
    groups, first_row, offset = [], 0, 0
    for index in range(handle.metadata.num_row_groups):
        rows = handle.metadata.row_group(index).num_rows
        if offset + rows > unit.start and offset < unit.stop:
            if not groups:
                first_row = offset
            groups.append(index)
        offset += rows
    # Stream the overlapping row groups and stop at the unit's end: a unit in the middle of a
    # large row group decodes up to its last row, not the whole group.
    batches, position = [], first_row
    for batch in handle.iter_batches(batch_size=min(65_536, unit.size), row_groups=groups, columns=_required_columns(spec)):
        if position + batch.num_rows > unit.start:
            batches.append(batch)
        position += batch.num_rows
        if position >= unit.stop:
            break
    table = pa.Table.from_batches(batches)
    skip = unit.start - (position - table.num_rows)
    return table.slice(skip, unit.size), {}


def _read_lines(unit: Unit) -> bytes:
    with _open_binary(unit.path) as handle:
        handle.seek(unit.byte_start)
        return handle.read(unit.byte_stop - unit.byte_start)


def _read_csv(unit: Unit, spec: InputSpec):
    with _open_binary(unit.path) as handle:
        header = handle.readline()
    body = _read_lines(unit)
    columns = _required_columns(spec)
    parse = _csv_parse_options(unit.format)
    try:
        convert = pacsv.ConvertOptions(include_columns=columns, column_types={c: pa.string() for c in columns})
        return pacsv.read_csv(io.BytesIO(header + body), parse_options=parse, convert_options=convert), {}
    except pa.ArrowInvalid:
        # Invalid UTF-8 somewhere: read bytes, decode row by row, and ledger the bad rows.
        convert = pacsv.ConvertOptions(include_columns=columns, column_types={c: pa.binary() for c in columns})
        try:
            raw = pacsv.read_csv(io.BytesIO(header + body), parse_options=parse, convert_options=convert)
        except pa.ArrowInvalid as err:  # not an encoding problem: a malformed row (wrong column count)
            raise InputError(
                f"{unit.path}: rows {unit.start}..{unit.stop}: {_first_line(err)} "
                "(fix the row, or remove the file from input.path)"
            ) from None
        return _decode_binary_columns(raw)


def _decode_binary_columns(raw: pa.Table):
    bad: dict[int, tuple[str, str]] = {}
    decoded = {}
    for name in raw.column_names:
        values = []
        for row, value in enumerate(raw.column(name).to_pylist()):
            try:
                values.append(None if value is None else value.decode("utf-8"))
            except UnicodeDecodeError as err:
                bad.setdefault(row, ("invalid_utf8", f"column {name!r}: {err.reason} at byte {err.start}"))
                values.append(value.decode("utf-8", "replace"))
        decoded[name] = pa.array(values, pa.string())
    return pa.table(decoded), bad


def _read_jsonl(unit: Unit, spec: InputSpec):
    body = _read_lines(unit)
    columns = _required_columns(spec)
    try:
        body.decode("utf-8")  # Arrow's JSON reader does not check UTF-8: invalid bytes go the slow path
        table = pajson.read_json(io.BytesIO(body))
        if all(c in table.column_names for c in columns):
            return table.select(columns), {}
    except (pa.ArrowInvalid, UnicodeDecodeError):
        pass
    # Slow path: one record per line, bad lines become ledger rows.
    bad: dict[int, tuple[str, str]] = {}
    records: dict[str, list] = {c: [] for c in columns}
    for row, line in enumerate(x for x in body.split(b"\n") if x.strip()):
        record: dict = {}
        try:
            parsed = json.loads(line.decode("utf-8"))
            if not isinstance(parsed, dict):
                raise ValueError("not a JSON object")
            record = parsed
        except UnicodeDecodeError as err:
            bad[row] = ("invalid_utf8", f"{err.reason} at byte {err.start}")
        except ValueError as err:
            bad[row] = ("invalid_json", str(err))
        for name in columns:
            value = record.get(name)
            records[name].append(value if isinstance(value, str) or value is None else json.dumps(value))
    return pa.table({c: pa.array(v, pa.string()) for c, v in records.items()}), bad


def _read_tar(unit: Unit, spec: InputSpec):
    """WebDataset samples: ``.txt`` is the caption, ``.json`` fields (``url``, kept columns),
    the first image member goes to ``jpg``."""
    samples: dict[str, dict] = {}
    order: list[str] = []
    with tarfile.open(unit.path, "r:*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, ext = _split_key(member.name)
            if key not in samples:
                order.append(key)
                samples[key] = {}
                if len(order) > unit.stop:
                    break
            if unit.start <= len(order) - 1 < unit.stop:
                samples[key][ext] = tar.extractfile(member).read()
    bad: dict[int, tuple[str, str]] = {}
    fields_from_json = [c for c in _required_columns(spec) if c not in (spec.url_column, spec.caption_column)]
    urls, captions, images = [], [], []
    extra: dict[str, list] = {c: [] for c in fields_from_json}
    for row, key in enumerate(order[unit.start : unit.stop]):
        fields = samples[key]
        meta: dict = {}
        try:
            meta = json.loads(fields["json"]) if "json" in fields else {}
            caption = fields["txt"].decode("utf-8") if "txt" in fields else meta.get(spec.caption_column)
        except (UnicodeDecodeError, ValueError) as err:
            bad[row] = ("invalid_sample", f"{key}: {err}")
            caption = None
        urls.append(meta.get(spec.url_column, key))
        captions.append(caption)
        images.append(next((fields[e] for e in _IMAGE_EXTENSIONS if e in fields), None))
        for name in fields_from_json:
            extra[name].append(meta.get(name))
    columns = {spec.url_column: pa.array(urls, pa.string()), spec.caption_column: pa.array(captions, pa.string()),
               "jpg": pa.array(images, pa.binary())}
    return pa.table(columns | {c: pa.array(v) for c, v in extra.items()}), bad
