"""Parquet inputs: units are row ranges read by streaming the overlapping row groups.

A parquet column has one type for the whole file, so a url, caption or uid column that cannot
hold text (a list, a struct, a number) is a setting or export mistake, not a bad row: planning
refuses it with one line before Ray starts (every row of the file would otherwise be dropped).
A binary column is text when its bytes are UTF-8; a value that is not becomes an
``invalid_utf8`` ledger row.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from curate import storage
from curate.config import InputSpec
from curate.errors import InputError
from curate.io.read_common import (
    BadRows,
    Unit,
    check_columns,
    decode_text_column,
    first_line,
    ranges,
    required_columns,
    text_columns,
)


def _parquet_file(uri: str) -> pq.ParquetFile:
    """A parquet file by path or store URI (a store's is read by ranges)."""
    if storage.is_local(uri):
        return pq.ParquetFile(uri)
    fs, path = storage.filesystem_of(uri)
    return pq.ParquetFile(fs.open_input_file(path))  # pyarrow's own file: ranged reads without a Python layer


def _holds_text(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return (pa.types.is_null(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind)
            or pa.types.is_binary(kind) or pa.types.is_large_binary(kind)
            or pa.types.is_string_view(kind) or pa.types.is_binary_view(kind))


def plan_parquet(path: str, fmt: str, spec: InputSpec):
    """Yield ``(start, stop, 0, 0)`` per unit; refuse unreadable files and non-text text columns."""
    try:
        meta = _parquet_file(path)
    except (pa.ArrowException, OSError) as err:
        raise InputError(
            f"{path}: not a readable parquet file ({first_line(err)}); re-export it or remove it from input.path"
        ) from None
    schema = meta.schema_arrow
    check_columns(path, schema.names, spec, fmt)
    for name in text_columns(spec):
        kind = schema.field(name).type
        if not _holds_text(kind):
            raise InputError(f"{path}: column {name!r} holds {kind}, not text (point the input.*_column setting "
                             f"at a string column, or re-export the file with strings there)")
    for start, stop in ranges(meta.metadata.num_rows, spec.rows_per_unit):
        yield start, stop, 0, 0


def read_parquet(unit: Unit, spec: InputSpec) -> tuple[pa.Table, BadRows]:
    handle = _parquet_file(unit.path)
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
    for batch in handle.iter_batches(batch_size=min(65_536, unit.size), row_groups=groups, columns=required_columns(spec)):
        if position + batch.num_rows > unit.start:
            batches.append(batch)
        position += batch.num_rows
        if position >= unit.stop:
            break
    table = pa.Table.from_batches(batches)
    skip = unit.start - (position - table.num_rows)
    table = table.slice(skip, unit.size)
    bad: BadRows = {}
    for name in text_columns(spec):
        table = table.set_column(table.schema.get_field_index(name), name, decode_text_column(table.column(name), name, bad))
    return table, bad
