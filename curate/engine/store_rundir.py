"""The run directory's commit protocol on an object store (issue 6 §3), for :class:`RunDir`.

On an object store (``s3://``, ``gs://``) there is no atomic rename, so nothing is moved: workers
write each part whole under its final name, which carries the driver's attempt
(``shards/<unit>-<attempt>[-r<round>]-<row0>.tar``, its ``.parquet`` and ``.<feature>.npy``
beside it; ``rejects/<unit>-<attempt>-<row0>.parquet``), so a dead attempt's straggler can never
overwrite a committed part, and the unit's marker (``stats/units/<unit>.json``, its counters and
each file's size), written last in one PUT, is the commit. Readers and ``curate stats`` use only
files a marker lists; on every start, done units are checked against their markers as on disk
and files no marker lists (a dead attempt's) are removed. There is no journal and no ``_tmp/``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from curate import storage
from curate.engine.lock import LOCK_NAME

if TYPE_CHECKING:
    from curate.engine.rundir import RunDir


def clear(root: str) -> None:
    """Delete everything below ``root`` but the lock (``--overwrite``)."""
    for name in storage.children(root):
        if name == LOCK_NAME:
            continue
        uri = storage.join(root, name)
        storage.delete_dir(uri) if storage.list_files(uri) else storage.delete(uri)  # a prefix, or an object


def recover(run: RunDir) -> list[str]:
    """Check the markers against one listing of ``shards/`` and ``rejects/``; remove the files
    no marker lists. Returns one line per unit to redo (its marker is deleted)."""
    found = {**storage.list_sizes(run.shards), **storage.list_sizes(run.rejects)}
    prefix = len(run.root) + 1
    found = {uri[prefix:]: size for uri, size in found.items()}
    redo, listed = [], set()
    for marker in run.marker_uris():
        entry = json.loads(storage.read_bytes(marker))
        problem = run.damage(entry, found)
        if problem:
            redo.append(f"unit {entry['unit']}: {problem}; redoing the unit")
            storage.delete(marker)
        else:
            listed.update(entry["files"])
    for relative in sorted(set(found) - listed):
        storage.delete(run.root / relative)
    return redo


def commit(run: RunDir, unit: int, files: list[str], stats: dict, replaces: tuple[str, ...]) -> None:
    """The parts are already in place: the marker is the commit. A unit's earlier marker (a retry
    round) keeps its files but ``replaces``, which are deleted after the marker is written (a
    crash before that leaves them to :func:`recover`)."""
    sizes = {}
    for relative in files:
        try:
            sizes[relative] = storage.file_size(run.root / relative)
        except FileNotFoundError:
            raise RuntimeError(f"unit {unit}: its commit lists {relative}, which is not in {run.root}") from None
    marker = run.unit_stats / f"{unit:05d}.json"
    kept = json.loads(storage.read_bytes(marker))["files"] if storage.exists(marker) else {}
    kept = {name: size for name, size in kept.items() if name not in replaces}
    storage.write_bytes(marker, json.dumps({**stats, "files": {**kept, **sizes}}).encode())
    for relative in replaces:
        storage.delete(run.root / relative)
