"""What every input reader shares: the work unit, the ``read`` stage's bad-row record, column
checks, and the checks that turn a value of the wrong kind into a ledger row instead of a crash.

Reasons of the ``read`` stage (README, Errors):
``invalid_utf8`` bytes that are not UTF-8; ``invalid_json`` a JSONL line or tar ``.json`` member that
is not a JSON object; ``wrong_type`` a url / caption / uid value that is not a string; ``invalid_uid``
and ``duplicate_uid`` (``input.uid_column``); ``duplicate_key`` and ``too_large`` (tar inputs).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from curate import storage
from curate.config import RESERVED_STAGE_NAME, InputSpec, first_line
from curate.errors import InputError

__all__ = ["READ_STAGE", "BadRows", "Unit", "check_columns", "decode_text_column", "first_line", "json_kind",
           "loose_column", "open_binary", "ranges", "required_columns", "text_columns", "text_value"]

READ_STAGE = RESERVED_STAGE_NAME

#: Rows of a unit the ``read`` stage drops: row index within the unit -> (reason, detail).
BadRows = dict[int, tuple[str, str]]


@dataclass(frozen=True)
class Unit:
    """One work unit: rows ``[start, stop)`` of one input file (bytes ``[byte_start, byte_stop)``
    for line-based formats). ``path`` is absolute and normalised: it is the file's identity in uids."""

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


def text_columns(spec: InputSpec) -> list[str]:
    """Columns whose values must be strings: url, caption and the uid column."""
    uid = [spec.uid_column] if spec.uid_column else []
    return list(dict.fromkeys([spec.url_column, spec.caption_column, *uid]))


def required_columns(spec: InputSpec) -> list[str]:
    return list(dict.fromkeys([*text_columns(spec), *spec.keep_columns]))


def check_columns(path: str, available: list[str], spec: InputSpec, fmt: str) -> None:
    missing = [c for c in required_columns(spec) if c not in available]
    if not missing:
        return
    fix = "set input.url_column / input.caption_column / input.keep_columns"
    if fmt in ("csv", "tsv"):
        fix += (", or input.header: false if the file has no header line" if spec.header
                else " (columns of a headerless file are named by input.columns, else '0', '1', ...)")
    raise InputError(f"{path}: missing column {missing[0]!r} (has: {', '.join(available) or 'none'}; {fix})")


def ranges(total: int, per_unit: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, per_unit):
        yield start, min(total, start + per_unit)


def open_binary(path: str):
    """A binary file for a path or store URI (seekable; a store's is read by ranges), ``.gz``
    files decompressed. Local files keep Python's own file object."""
    if storage.is_local(path):
        return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")  # noqa: SIM115
    handle = storage.open_input(path)
    if not path.endswith(".gz"):
        return handle
    unzipped = gzip.GzipFile(fileobj=handle, mode="rb")
    unzipped.myfileobj = handle  # GzipFile.close() closes the file it was given only through this
    return unzipped


def json_kind(value: object) -> str:
    """The JSON name of a parsed value's type, for ledger details."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def decode_text_column(values: pa.Array | pa.ChunkedArray, name: str, bad: BadRows) -> pa.Array:
    """A string/binary column as strings; a value that is not UTF-8 becomes an ``invalid_utf8``
    row (its text, with U+FFFD for the bad bytes, stays for the ledger). Vectorised unless the
    column holds invalid bytes."""
    try:
        return pc.cast(values, pa.string())
    except pa.ArrowInvalid:
        pass
    decoded = []
    for row, value in enumerate(pc.cast(values, pa.binary()).to_pylist()):
        try:
            decoded.append(None if value is None else value.decode("utf-8"))
        except UnicodeDecodeError as err:
            bad.setdefault(row, ("invalid_utf8", f"column {name!r}: {err.reason} at byte {err.start}"))
            decoded.append(value.decode("utf-8", "replace"))
    return pa.array(decoded, pa.string())


def text_value(value: object, row: int, name: str, bad: BadRows, where: str = "") -> str | None:
    """``value`` if it is a string or null; else None and a ``wrong_type`` row for ``row``."""
    if value is None or isinstance(value, str):
        return value
    bad.setdefault(row, ("wrong_type", f"{where}{name!r} is a JSON {json_kind(value)}, expected a string"))
    return None


def loose_column(values: list) -> pa.Array:
    """A kept column of parsed JSON values: native Arrow types when they agree, else each
    non-string value as its JSON text (a kept column never stops a run)."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([v if isinstance(v, str) or v is None else json.dumps(v) for v in values], pa.string())
