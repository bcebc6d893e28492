"""Rows of a run for ``curate show``: kept rows from the shards, dropped rows from the ledger, and
one uid wherever it went.

Only committed files are read (those a unit marker lists: a running or killed run's leftovers
are not the run's), unit by unit in input order, and lazily: the caller takes the first ``n`` and
the rest is never opened. A unit whose marker counts no drop of the asked stage and reason is
skipped without opening its ledger, so printing 10 rows of a rare reason on a run with 100k
ledger files reads markers (a few hundred bytes each) until it has found them. Looking up one uid
is the exception: nothing says where a uid is, so it reads the uid column of every committed
parquet (:func:`find_uid`).
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from curate import storage
from curate.engine.rundir import RunDir
from curate.io.writers import REJECTS_SCHEMA
from curate.schema import CAPTION, UID, URL

#: Ledger columns older runs lack: the thumbnail (JPEG, <= 128 px side; null for most rows) and
#: the row's other columns when it was dropped (a JSON object).
THUMBNAIL, SCORES = "thumbnail", "scores"
_LEDGER_FIXED = (*REJECTS_SCHEMA.names, CAPTION, SCORES, THUMBNAIL)
_TEXT_MEMBERS = ("json", "txt")


@dataclass
class ShownRow:
    """One kept or dropped row: what ``curate show`` prints and the contact sheet draws."""

    uid: str
    url: str | None
    caption: str | None
    stage: str | None  # the stage that dropped it; None for a kept row
    reason: str | None
    detail: str | None
    scores: dict  # every other non-null column of the row (score columns, sizes, kept source columns)
    file: str  # where it was found, relative to the run: shards/00003.parquet, rejects/00001-0000020.parquet
    thumbnail: bytes | None = None  # a dropped row's ledger thumbnail, when asked for and kept

    @property
    def kept(self) -> bool:
        return self.stage is None

    def to_json(self) -> dict:
        return {"uid": self.uid, "kept": self.kept, "stage": self.stage, "reason": self.reason, "detail": self.detail,
                "url": self.url, "caption": self.caption, "scores": self.scores, "file": self.file}


def kept_rows(run: RunDir) -> Iterator[ShownRow]:
    """Kept rows, unit by unit, each unit's shards in order."""
    for unit in sorted(run.done_units()):
        for relative in _parquets(run.read_unit_stats(unit), "shards/"):
            with _open(run, relative) as handle:
                for batch in pq.ParquetFile(handle).iter_batches(batch_size=256):  # stops where the caller does
                    yield from _kept(batch.to_pylist(), relative)


def ledger_rows(run: RunDir, stage: str | None = None, reason: str | None = None,
                thumbnails: bool = False) -> Iterator[ShownRow]:
    """Dropped rows (by ``stage`` and/or for ``reason`` when given), unit by unit in row order;
    units whose marker counts no such drop are skipped unread."""
    for unit in sorted(run.done_units()):
        marker = run.read_unit_stats(unit)
        if not any((stage is None or s == stage) and (reason is None or r == reason)
                   for s, reasons in marker["drops"].items() for r, count in reasons.items() if count):
            continue
        for relative in _parquets(marker, "rejects/"):
            table = _read(run, relative, thumbnails, _ledger_filter(stage, reason))
            yield from _dropped(table.to_pylist(), relative)


def find_uid(run: RunDir, uid: str, thumbnails: bool = False) -> tuple[list[ShownRow], int]:
    """Every row with this uid (a kept row, a dropped one, or both where the input repeated the
    uid) and how many files were scanned: the uid column of every committed parquet is read."""
    files = [f for folder in ("shards/", "rejects/") for f in run.committed_files()  # kept rows first
             if f.startswith(folder) and f.endswith(".parquet")]
    if not files:
        return [], 0
    fs, _ = storage.filesystem_of(str(run.root))
    paths = [storage.filesystem_of(storage.join(str(run.root), f))[1] for f in files]
    # One schema of the uid alone: ledgers of an older curate lack columns a newer one writes.
    dataset = pads.FileSystemDataset.from_paths(paths, schema=pa.schema([(UID, pa.string())]),
                                                format=pads.ParquetFileFormat(), filesystem=fs)
    hits = set(dataset.to_table(columns=[UID, "__filename"], filter=pc.field(UID) == uid).column("__filename").to_pylist())
    rows: list[ShownRow] = []
    for relative, path in zip(files, paths, strict=True):
        if path in hits:
            records = _read(run, relative, thumbnails, pc.field(UID) == uid).to_pylist()
            rows += _kept(records, relative) if relative.startswith("shards/") else _dropped(records, relative)
    return rows, len(files)


def kept_images(run: RunDir, rows: list[ShownRow]) -> dict[str, bytes]:
    """uid -> the encoded image of each kept row that has one, from its shard's tar (members
    ``<uid>.<ext>``; the tar is read header by header and left as soon as all are found)."""
    images: dict[str, bytes] = {}
    wanted_by_tar: dict[str, set[str]] = {}
    for row in rows:
        if row.kept:
            wanted_by_tar.setdefault(row.file.removesuffix(".parquet") + ".tar", set()).add(row.uid)
    for relative, left in wanted_by_tar.items():
        with _open(run, relative) as handle, tarfile.open(fileobj=handle, mode="r:") as tar:
            for member in tar:
                key, _, ext = member.name.partition(".")
                if key in left and ext not in _TEXT_MEMBERS:
                    images[key] = tar.extractfile(member).read()
                    left.discard(key)
                if not left:
                    break
    return images


def _parquets(marker: dict, folder: str) -> list[str]:
    return sorted(f for f in marker["files"] if f.startswith(folder) and f.endswith(".parquet"))


def _open(run: RunDir, relative: str):
    return storage.open_input(storage.join(str(run.root), relative))


def _read(run: RunDir, relative: str, thumbnails: bool, where: pc.Expression | None) -> pa.Table:
    """One parquet (opened once), filtered; the thumbnail column (the only heavy one) only when asked for."""
    with _open(run, relative) as handle:
        names = pq.ParquetFile(handle).schema_arrow.names
        columns = [c for c in names if thumbnails or c != THUMBNAIL]
        return pq.read_table(handle, columns=columns, filters=where)


def _ledger_filter(stage: str | None, reason: str | None) -> pc.Expression | None:
    where = None
    for column, value in (("stage", stage), ("reason", reason)):
        if value is not None:
            term = pc.field(column) == value
            where = term if where is None else where & term
    return where


def _kept(records: list[dict], relative: str) -> Iterator[ShownRow]:
    for record in records:
        scores = {k: v for k, v in record.items() if k not in (UID, URL, CAPTION) and v is not None}
        yield ShownRow(record[UID], record.get(URL), record.get(CAPTION), None, None, None, scores, relative)


def _dropped(records: list[dict], relative: str) -> Iterator[ShownRow]:
    for record in records:
        scores = json.loads(record.get(SCORES) or "{}")  # a JSON object: one ledger schema whatever a row reached
        scores.update({k: v for k, v in record.items() if k not in _LEDGER_FIXED and v is not None})
        scores = {k: v for k, v in scores.items() if v is not None}
        yield ShownRow(record[UID], record.get(URL), record.get(CAPTION), record["stage"], record["reason"],
                       record["detail"], scores, relative, record.get(THUMBNAIL))
