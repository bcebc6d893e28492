"""Per-unit parquet parts under one run-directory prefix, committed by a marker written last.

Global stages' observe summaries (``state/<stage>/observed/``) and segment checkpoints
(``checkpoints/<segment>/``) are stored this way. Workers write each part whole under its final
name, ``<unit>-<row0>-<attempt>.parquet`` (an attempt token per driver start, so a dead attempt's
part never shares a name with a live one); the driver writes ``_units/<unit>.json``, listing the
unit's parts, once they account for all of its rows. Readers use only listed parts, and a start
removes parts no marker lists. The protocol needs no rename, so it holds on object stores
(issue 6 §3) as on local disk.
"""

from __future__ import annotations

import json
import uuid

import pyarrow as pa
import pyarrow.parquet as pq

from curate import storage
from curate.schema import ROW, UNIT

MARKERS = "_units"


def new_attempt() -> str:
    return uuid.uuid4().hex[:8]


class PartStore:
    """The parts of many units below ``root`` (a local path or a store URI)."""

    def __init__(self, root: str):
        self.root = str(root)

    def __repr__(self) -> str:
        return f"PartStore({self.root!r})"

    # -- workers ------------------------------------------------------------------------------

    def write_part(self, table: pa.Table, unit: int, row0: int, attempt: str) -> str:
        """Write one part (rows of one unit) whole; returns its name, relative to the store."""
        name = f"{unit:05d}-{row0:07d}-{attempt}.parquet"
        fs, path = storage.filesystem_of(storage.join(self.root, name))
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        pq.write_table(table, path, filesystem=fs)
        return name

    def read_unit(self, unit: int, columns: list[str] | None = None) -> pa.Table:
        """All rows of a committed unit, in row order."""
        marker = json.loads(storage.read_bytes(self._marker(unit)))
        tables = []
        for name in marker["parts"]:
            fs, path = storage.filesystem_of(storage.join(self.root, name))
            tables.append(pq.read_table(path, filesystem=fs, columns=columns))
        table = pa.concat_tables(tables, promote_options="permissive") if tables else None
        if table is None or ROW not in table.column_names:
            return table
        return table.sort_by([(ROW, "ascending")])

    # -- driver -------------------------------------------------------------------------------

    def commit(self, unit: int, rows: int, parts: list[str]) -> None:
        storage.write_bytes(self._marker(unit), json.dumps({"unit": unit, "rows": rows, "parts": sorted(parts)}).encode())

    def done_units(self) -> set[int]:
        return {int(name.rsplit("/", 1)[-1].split(".")[0]) for name in storage.list_files(storage.join(self.root, MARKERS))
                if name.endswith(".json")}

    def committed_parts(self) -> list[str]:
        """URIs of every part some marker lists."""
        parts = []
        for marker in storage.list_files(storage.join(self.root, MARKERS)):
            if marker.endswith(".json"):
                parts += [storage.join(self.root, name) for name in json.loads(storage.read_bytes(marker))["parts"]]
        return sorted(parts)

    def remove_unlisted(self) -> int:
        """Delete parts of attempts that never committed (a killed run's leftovers)."""
        listed = set(self.committed_parts())
        stale = [uri for uri in storage.list_files(self.root)
                 if uri.endswith(".parquet") and f"/{MARKERS}/" not in uri and uri not in listed]
        for uri in stale:
            storage.delete(uri)
        return len(stale)

    def delete(self) -> None:
        storage.delete_dir(self.root)

    def _marker(self, unit: int) -> str:
        return storage.join(self.root, MARKERS, f"{unit:05d}.json")


def unit_of(table: pa.Table) -> int:
    return int(table.column(UNIT)[0].as_py())
