"""The run directory (DESIGN.md, Run directory): layout, manifest, atomic unit commits, resume.

A unit is committed by a journal: the list of ``_tmp/`` -> final renames plus the unit's
stats, written atomically first, then applied, then the stats file (the unit's completion
marker, ``stats/units/<unit>.json``) is written and the journal removed. A crash at any
moment leaves either no journal (nothing happened, or all of it did) or a journal that the
next start rolls forward. Files of units without a marker are removed before they are redone,
so a rerun after ``kill -9`` equals a clean run: no lost and no duplicated uid.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import yaml

from curate.config import PipelineSpec
from curate.errors import UserError
from curate.schema import uids_to_datacomp, uids_to_pairs

_VERSIONED = ("curate", "ray", "pyarrow", "img2dataset", "webdataset", "open_clip_torch", "torch")


class RunDir:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.shards = self.root / "shards"
        self.rejects = self.root / "rejects"
        self.stats = self.root / "stats"
        self.unit_stats = self.stats / "units"
        self.state = self.root / "state"
        self.tmp = self.root / "_tmp"
        self.journal = self.root / "_journal"
        self.manifest_path = self.root / "manifest.json"

    # -- lifecycle --------------------------------------------------------------------------

    def prepare(self, spec: PipelineSpec, input_fingerprint: list, n_units: int, overwrite: bool) -> bool:
        """Create or reopen the run directory; returns True when resuming an earlier run."""
        fingerprint = spec.fingerprint()
        resuming = False
        if self.manifest_path.exists():
            manifest = self.manifest()
            same = manifest.get("spec_fingerprint") == fingerprint and manifest.get("inputs") == input_fingerprint
            if overwrite:
                shutil.rmtree(self.root)
            elif not same:
                what = "spec" if manifest.get("spec_fingerprint") != fingerprint else "input files"
                raise UserError(
                    f"{self.root}: holds a run of a different {what}; pass --overwrite to start over, or choose another --output"
                )
            else:
                resuming = True
        elif self.root.exists() and any(self.root.iterdir()) and not overwrite:
            raise UserError(f"{self.root}: exists and is not a curate run directory; choose another --output or pass --overwrite")
        elif overwrite and self.root.exists():
            shutil.rmtree(self.root)
        for path in (self.shards, self.rejects, self.unit_stats, self.state):
            path.mkdir(parents=True, exist_ok=True)
        if not resuming:
            resolved = spec.model_dump(mode="json")
            (self.root / "pipeline.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
            self.write_manifest({
                "spec_fingerprint": fingerprint,
                "inputs": input_fingerprint,
                "units": n_units,
                "versions": _versions(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "state": "running",
            })
        return resuming

    def manifest(self) -> dict:
        return json.loads(self.manifest_path.read_text())

    def write_manifest(self, manifest: dict) -> None:
        _atomic_write(self.manifest_path, json.dumps(manifest, indent=2))

    def update_manifest(self, **fields) -> None:
        manifest = self.manifest()
        manifest.update(fields)
        self.write_manifest(manifest)

    def recover(self) -> None:
        """Roll journals forward, drop temporary files and the leftovers of unfinished units."""
        for journal in sorted(self.journal.glob("*.json")) if self.journal.exists() else []:
            self._apply_journal(journal)
        shutil.rmtree(self.tmp, ignore_errors=True)
        done = self.done_units()
        for folder in (self.shards, self.rejects):
            for path in folder.iterdir():
                if _unit_of(path.name) not in done:
                    path.unlink()

    def cleanup(self) -> None:
        """Remove the (now empty) temporary folders of a finished run."""
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.journal.exists() and not any(self.journal.iterdir()):
            self.journal.rmdir()

    def done_units(self) -> set[int]:
        return {int(p.stem) for p in self.unit_stats.glob("*.json")}

    # -- commits ----------------------------------------------------------------------------

    def commit(self, unit: int, files: list[str], stats: dict, rewrites: list[str] = ()) -> None:
        """Move a unit's files from ``_tmp/`` into place and write its completion marker.

        ``rewrites`` are files that replace committed ones (retry rounds rewrite a ledger).
        """
        self.journal.mkdir(exist_ok=True)
        journal = self.journal / f"{unit:05d}.json"
        _atomic_write(journal, json.dumps({"unit": unit, "files": [*files, *rewrites], "stats": stats}))
        self._apply_journal(journal)

    def _apply_journal(self, journal: Path) -> None:
        entry = json.loads(journal.read_text())
        for relative in entry["files"]:
            source = self.tmp / relative
            if source.exists():
                (self.root / relative).parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, self.root / relative)
        _atomic_write(self.unit_stats / f"{entry['unit']:05d}.json", json.dumps(entry["stats"]))
        journal.unlink()

    def read_unit_stats(self, unit: int) -> dict:
        return json.loads((self.unit_stats / f"{unit:05d}.json").read_text())

    # -- outputs ----------------------------------------------------------------------------

    def write_uids(self) -> int:
        """``uids.npy``: sorted kept uids in DataComp's ``u8,u8`` layout (16 bytes a uid in
        memory, shard by shard; no Python string per uid)."""
        parts = [uids_to_pairs(pq.read_table(p, columns=["uid"]).column("uid")) for p in sorted(self.shards.glob("*.parquet"))]
        pairs = uids_to_datacomp(np.concatenate(parts) if parts else np.zeros(0, np.dtype("u8,u8")))
        with open(self.root / "uids.npy.partial", "wb") as handle:
            np.save(handle, pairs)
        os.replace(self.root / "uids.npy.partial", self.root / "uids.npy")
        return len(pairs)


def _unit_of(name: str) -> int | None:
    head = name.split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


def _versions() -> dict[str, str]:
    versions = {}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
