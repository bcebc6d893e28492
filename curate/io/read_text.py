"""Line-based inputs: csv, tsv (with or without a header line) and jsonl[.gz].

Planning (:mod:`curate.io.plan_lines`) finds the byte range of every unit, so a worker reads
only its unit's bytes. Reading takes Arrow's vectorised parsers first and falls
back to a row-by-row pass only for a unit that holds a bad row (invalid UTF-8, a line that is
not a JSON object, a url or caption that is not a string), which becomes a ``read`` ledger row.
"""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from curate.config import InputSpec
from curate.errors import InputError
from curate.io.read_common import (
    BadRows,
    Unit,
    decode_text_column,
    first_line,
    open_binary,
    required_columns,
    text_columns,
    text_value,
)


def parse_options(fmt: str) -> pacsv.ParseOptions:
    return pacsv.ParseOptions(delimiter="\t" if fmt == "tsv" else ",", newlines_in_values=True)


def read_options(names: list[str], header: bool) -> pacsv.ReadOptions:
    """A file with a header line names its columns; a headerless one gets ``names``."""
    return pacsv.ReadOptions() if header else pacsv.ReadOptions(column_names=names)


def column_names(first: bytes, fmt: str, path: str, spec: InputSpec) -> list[str]:
    """The header's names; for a headerless file ``input.columns`` or ``'0', '1', ...``."""
    options = pacsv.ReadOptions(autogenerate_column_names=not spec.header)
    try:
        fields = pacsv.read_csv(io.BytesIO(first), read_options=options, parse_options=pacsv.ParseOptions(
            delimiter="\t" if fmt == "tsv" else ",")).column_names
    except pa.ArrowException as err:
        raise InputError(f"{path}: cannot parse the {'header' if spec.header else 'first line'} ({first_line(err)})") from None
    if spec.header:
        return fields
    if spec.columns is None:
        return [str(i) for i in range(len(fields))]
    if len(spec.columns) != len(fields):
        raise InputError(f"{path}: input.columns names {len(spec.columns)} columns but the first line has {len(fields)} "
                         f"(name every column, in order)")
    return list(spec.columns)


def _read_unit_bytes(unit: Unit) -> bytes:
    with open_binary(unit.path) as handle:
        handle.seek(unit.byte_start)
        return handle.read(unit.byte_stop - unit.byte_start)


def read_csv(unit: Unit, spec: InputSpec) -> tuple[pa.Table, BadRows]:
    with open_binary(unit.path) as handle:
        first = handle.readline()
    # With a header line, the unit's bytes are parsed behind it; a headerless unit gets the names.
    head, names = (first, []) if spec.header else (b"", column_names(first, unit.format, unit.path, spec))
    body = head + _read_unit_bytes(unit)
    columns = required_columns(spec)
    options, parse = read_options(names, spec.header), parse_options(unit.format)
    try:
        convert = pacsv.ConvertOptions(include_columns=columns, column_types={c: pa.string() for c in columns})
        return pacsv.read_csv(io.BytesIO(body), read_options=options, parse_options=parse,
                              convert_options=convert), {}
    except pa.ArrowInvalid:
        # Invalid UTF-8 somewhere: read bytes, decode row by row, and ledger the bad rows.
        convert = pacsv.ConvertOptions(include_columns=columns, column_types={c: pa.binary() for c in columns})
        try:
            raw = pacsv.read_csv(io.BytesIO(body), read_options=options, parse_options=parse, convert_options=convert)
        except pa.ArrowInvalid as err:  # not an encoding problem: a malformed row (wrong column count)
            raise InputError(
                f"{unit.path}: rows {unit.start}..{unit.stop}: {first_line(err)} "
                "(fix the row, or remove the file from input.path)"
            ) from None
    bad: BadRows = {}
    return pa.table({name: decode_text_column(raw.column(name), name, bad) for name in raw.column_names}), bad


def read_jsonl(unit: Unit, spec: InputSpec) -> tuple[pa.Table, BadRows]:
    body = _read_unit_bytes(unit)
    columns, texts = required_columns(spec), text_columns(spec)
    # url, caption and uid must be JSON strings: an explicit schema makes Arrow refuse a number or
    # an object there (the slow path ledgers that row) instead of inferring, e.g., a timestamp.
    options = pajson.ParseOptions(explicit_schema=pa.schema([(c, pa.string()) for c in texts]),
                                  unexpected_field_behavior="infer")
    try:
        body.decode("utf-8")  # Arrow's JSON reader does not check UTF-8: invalid bytes go the slow path
        table = pajson.read_json(io.BytesIO(body), parse_options=options)
        if all(c in table.column_names for c in columns):
            return table.select(columns), {}
    except (pa.ArrowInvalid, UnicodeDecodeError):
        pass
    return _read_jsonl_rows(body, columns, texts)


def _read_jsonl_rows(body: bytes, columns: list[str], texts: list[str]) -> tuple[pa.Table, BadRows]:
    """One record per line; a bad line or a non-string text value becomes a ledger row."""
    bad: BadRows = {}
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
            if name in texts:
                records[name].append(text_value(value, row, name, bad))
            else:
                records[name].append(value if isinstance(value, str) or value is None else json.dumps(value))
    return pa.table({c: pa.array(v, pa.string()) for c, v in records.items()}), bad
