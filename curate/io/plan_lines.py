"""Planning line-based inputs (csv, tsv, jsonl[.gz]) by byte ranges: the driver never reads a file whole.

A unit is ``rows_per_unit`` rows, numbered from the file's first row (uids hash that number, so
units must not move). Blank lines are not rows. The driver checks the first line and cuts the
file into chunks of about :data:`CHUNK_BYTES` at line starts (a seek and one line read per
cut); workers count each chunk's rows (:func:`scan_chunk`, pass 1). The driver adds the counts
up, so it knows each chunk's first row, and asks again only for chunks whose first row is not
on a unit boundary, now with that offset (pass 2); each scan returns the byte offset after every
row that ends a unit. A gzip file cannot be seeked: it is one chunk, scanned by one worker.

CSV values in quotes may span lines, and then a file cannot be split at newlines. Pass 1 parses
each block of a csv/tsv chunk too; a block whose parsed rows differ from its lines, whose value
holds a newline (a quote left open at the block's end), or that does not parse, sends the file to
a whole-file parse on a worker (:func:`csv_rows`): it raises the malformed-row error, or finds
quoted newlines, and then the file is one unit, as before planning moved off the driver.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from curate.config import InputSpec
from curate.errors import InputError
from curate.io.plan_tasks import TaskRunner
from curate.io.read_common import check_columns, first_line, open_binary
from curate.io.read_text import column_names, parse_options, read_options

# A chunk is one planning task: large enough that a task's overhead (~10 ms) is small against
# counting it (~0.2 s for 64 MiB), small enough that a 1 GB file still spreads over 16 workers.
CHUNK_BYTES = 64 * 1024 * 1024
# Workers read a chunk in blocks of this size: their memory stays ~4x this, whatever the chunk.
BLOCK_BYTES = 8 * 1024 * 1024
_BLANK = np.zeros(256, bool)
_BLANK[list(b" \t\n\r\x0b\x0c")] = True  # what bytes.strip() removes: such a line is not a row


@dataclass(frozen=True)
class LineChunk:
    """Bytes ``[start, stop)`` of a file, cut at line starts; ``stop`` None: to the end (gzip)."""

    path: str
    start: int
    stop: int | None


@dataclass(frozen=True)
class ChunkScan:
    """A worker's answer for one chunk."""

    rows: int
    ends: list[int]  # byte offset after each row that ends a unit (see scan_chunk's phase)
    stop: int  # byte offset where the chunk ended (the file's end for the last chunk)
    splittable: bool = True  # csv/tsv: each block parsed to exactly its lines, no newline in a value


@dataclass
class LineFile:
    """What the driver learned of a line-based file: its columns and its chunks."""

    path: str
    fmt: str
    names: list[str]  # csv/tsv: the columns (a headerless file's from input.columns or '0', '1', ...)
    header: bool  # csv/tsv: the first line names the columns
    header_end: int  # byte offset of the first row
    chunks: list[LineChunk] = field(default_factory=list)


def open_line_file(path: str, fmt: str, spec: InputSpec, chunk_bytes: int = CHUNK_BYTES) -> LineFile:
    """Check the first line (header, columns, JSON) and cut the file into chunks at line starts."""
    try:
        with open_binary(path) as handle:
            first = handle.readline()
            names: list[str] = []
            if fmt in ("csv", "tsv"):
                names = column_names(first, fmt, path, spec)
                check_columns(path, names, spec, fmt)
            else:
                _check_jsonl_first_line(first, path, spec)
            header = fmt in ("csv", "tsv") and spec.header
            header_end = len(first) if header else 0
            if path.endswith(".gz"):  # the file open_binary decompresses: no seeking into it
                return LineFile(path, fmt, names, header, header_end, [LineChunk(path, header_end, None)])
            handle.seek(0, io.SEEK_END)
            size = handle.tell()
            starts = [header_end]
            while starts[-1] + chunk_bytes < size:
                handle.seek(starts[-1] + chunk_bytes - 1)  # the line holding this byte ends the chunk
                cut = handle.tell() + len(handle.readline())
                if cut >= size:
                    break
                starts.append(cut)
    except (OSError, EOFError) as err:
        raise InputError(f"{path}: cannot read ({first_line(err)})") from None
    bounds = [*starts, size]
    chunks = [LineChunk(path, a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]
    return LineFile(path, fmt, names, header, header_end, chunks)


def _check_jsonl_first_line(first: bytes, path: str, spec: InputSpec) -> None:
    try:
        record = json.loads(first)
    except ValueError as err:
        raise InputError(f"{path}: first line is not JSON ({err}); expected one JSON object per line") from None
    if not isinstance(record, dict):
        raise InputError(f"{path}: first line is not a JSON object; expected one object per line")
    check_columns(path, list(record), spec, "jsonl")


# -- on workers ---------------------------------------------------------------------------


def scan_chunk(chunk: LineChunk, rows_per_unit: int, phase: int, fmt: str, names: list[str]) -> ChunkScan:
    """Count the chunk's rows; ``ends`` are the offsets after its k-th rows where
    ``(phase + k) % rows_per_unit == 0`` (``phase``: the rows before the chunk, mod the unit size).
    ``names`` given (csv/tsv in pass 1): each block is also parsed, for :attr:`ChunkScan.splittable`."""
    rows, ends, splittable = 0, [], True
    position, carry = chunk.start, b""
    with open_binary(chunk.path) as handle:
        handle.seek(chunk.start)
        while True:
            want = BLOCK_BYTES if chunk.stop is None else min(BLOCK_BYTES, chunk.stop - position - len(carry))
            block = handle.read(want) if want > 0 else b""
            data = carry + block
            if not data:
                break
            cut = len(data) if not block else data.rfind(b"\n") + 1  # whole lines only, until the end
            lines, carry = data[:cut], data[cut:]
            count = _count_rows(lines, position, rows, phase, rows_per_unit, ends)
            if names and splittable:
                splittable = _parses_to(lines, count, fmt, names)
            rows += count
            position += len(lines)
    return ChunkScan(rows, ends, position, splittable)


def _count_rows(lines: bytes, offset: int, before: int, phase: int, every: int, ends: list[int]) -> int:
    """Rows (non-blank lines) in ``lines``; appends to ``ends`` the offset after each unit-ending row."""
    if not lines:
        return 0
    buffer = np.frombuffer(lines, np.uint8)
    line_ends = np.flatnonzero(buffer == 10) + 1
    if buffer[-1] != 10:
        line_ends = np.append(line_ends, len(buffer))
    line_starts = np.concatenate(([0], line_ends[:-1]))
    # every line holds at least one byte (its newline, or the last line's text), so no segment is empty
    row_ends = line_ends[np.logical_or.reduceat(~_BLANK[buffer], line_starts)]
    counts = before + np.arange(1, len(row_ends) + 1)
    ends.extend((offset + row_ends[(phase + counts) % every == 0]).tolist())
    return len(row_ends)


def _parses_to(lines: bytes, rows: int, fmt: str, names: list[str]) -> bool:
    """True when the CSV parser sees exactly ``rows`` rows in ``lines`` and no value holds a newline."""
    convert = pacsv.ConvertOptions(column_types={name: pa.binary() for name in names})
    options = pacsv.ReadOptions(column_names=names, use_threads=False)
    try:
        table = pacsv.read_csv(io.BytesIO(lines), read_options=options, parse_options=parse_options(fmt),
                               convert_options=convert)
    except pa.ArrowInvalid:
        return False
    return table.num_rows == rows and not any(pc.any(pc.match_substring(c, "\n")).as_py() for c in table.columns)


def csv_rows(path: str, fmt: str, names: list[str], header: bool) -> int:
    """Rows of the whole file as the CSV parser sees them (quoted values may span lines), streamed;
    bytes, so invalid UTF-8 counts too. A malformed row is the file's one-line error."""
    convert = pacsv.ConvertOptions(column_types={name: pa.binary() for name in names})
    try:
        with open_binary(path) as handle:
            reader = pacsv.open_csv(handle, read_options=read_options(names, header),
                                    parse_options=parse_options(fmt), convert_options=convert)
            return sum(batch.num_rows for batch in reader)
    except pa.ArrowInvalid as err:
        raise InputError(
            f"{path}: not a readable {fmt.upper()} file ({first_line(err)}); fix the row, or remove the file from input.path"
        ) from None


# -- back on the driver -------------------------------------------------------------------


def plan_line_files(files: list[LineFile], rows_per_unit: int, run_tasks: TaskRunner) -> list[list[tuple]]:
    """``(start, stop, byte_start, byte_stop)`` per unit of each file, counted on workers in two passes."""
    calls = [(scan_chunk, (c, rows_per_unit, 0, f.fmt, f.names)) for f in files for c in f.chunks]
    first = iter(run_tasks(calls))
    scans = [[next(first) for _ in f.chunks] for f in files]
    again, whole = [], []  # pass 2: chunks scanned at their true phase; csv files parsed whole
    for index, (file, found) in enumerate(zip(files, scans, strict=True)):
        before = 0
        for position, (chunk, scan) in enumerate(zip(file.chunks, found, strict=True)):
            phase = before % rows_per_unit
            if phase and scan.rows >= rows_per_unit - phase:  # it holds a unit's end, found at phase 0
                again.append((index, position, (scan_chunk, (chunk, rows_per_unit, phase, file.fmt, []))))
            before += scan.rows
        if not all(scan.splittable for scan in found):
            whole.append((index, (csv_rows, (file.path, file.fmt, file.names, file.header))))
    answers = iter(run_tasks([call for *_, call in again] + [call for _, call in whole]))
    for index, position, _ in again:
        rescan = next(answers)
        scans[index][position] = ChunkScan(scans[index][position].rows, rescan.ends, rescan.stop)
    parsed = {index: next(answers) for index, _ in whole}
    plans = []
    for index, (file, found) in enumerate(zip(files, scans, strict=True)):
        rows = sum(scan.rows for scan in found)
        stop = found[-1].stop if found else file.header_end
        if index in parsed and parsed[index] != rows:
            # Quoted values span lines: the file cannot be split on newlines, so it is one unit.
            plans.append([(0, parsed[index], file.header_end, stop)] if parsed[index] else [])
        else:
            plans.append(_unit_ranges(rows, [e for scan in found for e in scan.ends], file.header_end, stop,
                                      rows_per_unit))
    return plans


def _unit_ranges(rows: int, ends: list[int], header_end: int, stop: int, per_unit: int) -> list[tuple]:
    """Units of ``per_unit`` rows; a unit ends after its last row (``ends``), the last one at ``stop``
    unless it is full (trailing blank lines then belong to no unit, as they hold no row)."""
    units = []
    for start in range(0, rows, per_unit):
        end = min(rows, start + per_unit)
        byte_start = ends[start // per_unit - 1] if start else header_end
        byte_stop = ends[end // per_unit - 1] if end % per_unit == 0 else stop
        units.append((start, end, byte_start, byte_stop))
    return units
