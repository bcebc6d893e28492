"""The run directory (DESIGN.md, Run directory): layout, manifest, atomic unit commits, resume.

Workers write a unit's parts under ``_tmp/`` (named by unit and row). The driver commits a
unit by a journal: it gives each shard the next free index (``shards/00000.tar`` with its
``.parquet`` beside, so a brace range names them all and a committed name never changes),
records every ``_tmp/`` -> final move and the unit's marker (its counters plus each file's size),
writes the journal atomically, applies it, writes the marker (``stats/units/<unit>.json``) and
removes the journal. A commit whose files are missing fails; a crash at any moment leaves no
journal or one the next start rolls forward.

On every start, each done unit's files are checked against its marker (existence and size): a
unit that lost or changed a file is redone (issue 5 §3: a shard deleted by hand was silently
gone, a deleted shard parquet failed every rerun). Files in ``shards/`` and ``rejects/`` that no
marker lists are leftovers of unfinished units and are removed, so a rerun after ``kill -9``
equals a clean run: no lost and no duplicated uid.

On an object store nothing is renamed: see :mod:`curate.engine.store_rundir`.

The manifest records ``uid_version``: uid normalisation (:func:`curate.schema.compute_uids`) is
frozen behind it, and a run made under another version is not resumed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from curate import storage
from curate.config import PipelineSpec
from curate.engine import store_rundir
from curate.engine.lock import LOCK_NAME, RunLock, StoreLock
from curate.errors import UserError
from curate.io.uids_file import write_sorted_uids

_VERSIONED = ("curate", "ray", "pyarrow", "img2dataset", "webdataset", "open_clip_torch", "torch")
SIZES_NAME = "sizes.json"  # open_clip_train.data.get_dataset_size reads it beside the shards
UID_VERSION = 1  # bump when curate.schema.compute_uids changes what uid a row gets


class RunDir:
    """A run directory. On local disk the path attributes are ``Path``s; on a store they are
    :class:`curate.storage.StoreUri` strings (they join with ``/`` too)."""

    def __init__(self, root: str | Path):
        self.local = storage.is_local(str(root))
        self.root = Path(root).resolve() if self.local else storage.StoreUri(str(root).rstrip("/"))
        self.attempt = uuid.uuid4().hex[:6]  # names a store attempt's parts apart from a dead one's
        self.shards = self.root / "shards"
        self.rejects = self.root / "rejects"
        self.stats = self.root / "stats"
        self.unit_stats = self.stats / "units"
        self.state = self.root / "state"
        self.tmp = self.root / "_tmp" if self.local else self.root  # parts go in place on a store
        self.journal = self.root / "_journal"
        self.manifest_path = self.root / "manifest.json"
        self._used: set[int] | None = None  # shard indices in use (None: not read yet)
        self._lowest_free = 0  # no index below this is free

    # -- lifecycle --------------------------------------------------------------------------

    def check_output(self, inputs: list[str], overwrite: bool) -> None:
        """Refuse, before anything is written, an output that is not ours to write or delete."""
        if self.local and self.root.exists() and not self.root.is_dir():
            raise UserError(f"{self.root}: exists and is not a directory; choose another --output")
        names = storage.children(str(self.root))
        if not names:
            return
        inside = [path for path in inputs if self._holds(path)]
        if overwrite and inside:
            raise UserError(f"{self.root}: holds this run's input {inside[0]}; --overwrite would delete it "
                            "(move the input out or choose another --output)")
        if "manifest.json" not in names and set(names) != {LOCK_NAME}:
            fix = " (--overwrite deletes only curate runs)" if overwrite else ""
            raise UserError(f"{self.root}: exists and is not a curate run directory (no manifest.json); "
                            f"choose another --output{fix}")

    def _holds(self, path: str) -> bool:
        if storage.is_local(path) != self.local:
            return False
        return Path(path).resolve().is_relative_to(self.root) if self.local else path.startswith(self.root + "/")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the run's exclusive lock (see :mod:`curate.engine.lock`) for the whole run."""
        if not self.local:
            with StoreLock(self.root):
                yield
            return
        self.root.mkdir(parents=True, exist_ok=True)
        with RunLock(self.root):
            yield

    def prepare(self, spec: PipelineSpec, input_fingerprint: list, n_units: int, overwrite: bool,
                stage_content: dict | None = None) -> bool:
        """Create or reopen the run directory (under the lock); True when resuming an earlier run.
        ``stage_content``: stage name -> what identifies the models, lists or metadata it reads."""
        stage_content = stage_content or {}
        fingerprint = spec.fingerprint()
        if storage.exists(str(self.manifest_path)) and not overwrite:
            manifest = self.manifest()
            version = manifest.get("uid_version", UID_VERSION)  # runs before uid_version had version 1's uids
            if version != UID_VERSION:
                raise UserError(f"{self.root}: made with uid_version {version}, this curate computes uid_version "
                                f"{UID_VERSION}; pass --overwrite to start over, or choose another --output")
            same_content = manifest.get("stage_content", {}) == stage_content
            if manifest.get("spec_fingerprint") == fingerprint and manifest.get("inputs") == input_fingerprint and same_content:
                return True
            changed = sorted(name for name in {*stage_content, *manifest.get("stage_content", {})}
                             if stage_content.get(name) != manifest.get("stage_content", {}).get(name))
            what = ("spec" if manifest.get("spec_fingerprint") != fingerprint else "input files"
                    if manifest.get("inputs") != input_fingerprint else f"model, list or metadata in stage {changed[0]}")
            raise UserError(f"{self.root}: holds a run of a different {what}; pass --overwrite to start over, "
                            "or choose another --output")
        self._clear()
        # The manifest first: a crash before it leaves only the lock file, which a rerun accepts.
        self.write_manifest({
            "spec_fingerprint": fingerprint,
            "inputs": input_fingerprint,
            "stage_content": stage_content,
            "units": n_units,
            "uid_version": UID_VERSION,
            "versions": _versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "state": "running",
        })
        storage.write_bytes(str(self.root / "pipeline.yaml"),
                            yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False).encode())
        if self.local:
            for path in (self.shards, self.rejects, self.unit_stats, self.state):
                path.mkdir(parents=True, exist_ok=True)
        return False

    def _clear(self) -> None:
        """Remove everything but our lock (check_output allowed this: a curate run, or only the lock)."""
        if not self.local:
            return store_rundir.clear(self.root)
        for path in self.root.iterdir():
            if path.name != LOCK_NAME:
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()

    def manifest(self) -> dict:
        return json.loads(storage.read_bytes(str(self.manifest_path)))

    def write_manifest(self, manifest: dict) -> None:
        _atomic_write(self.manifest_path, json.dumps(manifest, indent=2))

    def update_manifest(self, **fields) -> None:
        manifest = self.manifest()
        manifest.update(fields)
        self.write_manifest(manifest)

    def recover(self) -> list[str]:
        """Roll journals forward, check done units' files, remove leftovers; returns one line per
        unit that must be redone."""
        if not self.local:
            return store_rundir.recover(self)
        for path in (self.shards, self.rejects, self.unit_stats):
            path.mkdir(parents=True, exist_ok=True)
        redo = []
        for journal in sorted(self.journal.glob("*.json")) if self.journal.exists() else []:
            unit, problem = self._apply_journal(journal)
            if problem:
                redo.append(f"unit {unit}: {problem}; redoing the unit")
                (self.unit_stats / f"{unit:05d}.json").unlink(missing_ok=True)
                journal.unlink()
        shutil.rmtree(self.tmp, ignore_errors=True)
        for partial in [*self.journal.glob("*.partial"), *self.unit_stats.glob("*.partial")]:
            partial.unlink()  # a journal or marker cut short: nothing had acted on it
        listed: set[str] = set()
        for marker in sorted(self.unit_stats.glob("*.json")):
            entry = json.loads(marker.read_text())
            problem = self.damage(entry)
            if problem:
                redo.append(f"unit {entry['unit']}: {problem}; redoing the unit")
                marker.unlink()
            else:
                listed.update(entry["files"])
        for folder in (self.shards, self.rejects):
            for path in folder.iterdir():
                if f"{folder.name}/{path.name}" not in listed:
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
        self._mark_used(listed)
        return redo

    def damage(self, entry: dict, found: dict[str, int] | None = None) -> str | None:
        """What is wrong with a done unit's files, or None (``found``: a store listing's sizes)."""
        files = entry.get("files")
        if files is None:
            return "its marker lists no files (written by an older curate)"
        for relative, size in files.items():
            try:
                actual = found[relative] if found is not None else (self.root / relative).stat().st_size
            except (FileNotFoundError, KeyError):
                return f"{relative} is missing"
            if actual != size:
                return f"{relative} has {actual} bytes, its marker says {size}"
        return None

    def cleanup(self) -> None:
        """Remove the (now empty) temporary folders of a finished run."""
        if not self.local:
            return
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.journal.exists() and not any(self.journal.iterdir()):
            self.journal.rmdir()

    def marker_uris(self) -> list[str]:
        return [uri for uri in storage.list_files(str(self.unit_stats)) if uri.endswith(".json")]

    def done_units(self) -> set[int]:
        if not self.local:
            return {int(uri.rsplit("/", 1)[1].removesuffix(".json")) for uri in self.marker_uris()}
        return {int(p.stem) for p in self.unit_stats.glob("*.json")}

    # -- commits ----------------------------------------------------------------------------

    def commit(self, unit: int, files: list[str], stats: dict, replaces: tuple[str, ...] = ()) -> None:
        """Move a unit's files from ``_tmp/`` into place and write its completion marker.

        ``files`` are relative to ``_tmp/``; shards get the next free indices, other files keep
        their names (a retry round's rewritten ledger replaces the committed one). A unit that
        already has a marker (a retry round) keeps the files it lists, except ``replaces``: on a
        store, where nothing is renamed, a retry round writes its ledgers under new names and
        names the committed ones they replace.
        """
        if not self.local:
            return store_rundir.commit(self, unit, files, stats, replaces)
        journal, entry = self.write_journal(unit, files, stats)
        _, problem = self._apply_journal(journal, entry)
        if problem:
            raise RuntimeError(f"unit {unit}: {problem}")

    def part_tag(self, tag: str = "") -> str:
        """The tag of this driver's part names: none on local disk (parts are renamed into place),
        the attempt on a store (a dead attempt's straggler cannot overwrite a committed part)."""
        if self.local:
            return tag
        return f"{self.attempt}-{tag}" if tag else self.attempt

    def write_journal(self, unit: int, files: list[str], stats: dict) -> tuple[Path, dict]:
        """The commit's plan, written atomically before anything moves; fails on a missing file."""
        sizes_in_tmp = {}
        for relative in files:
            try:
                sizes_in_tmp[relative] = (self.tmp / relative).stat().st_size
            except FileNotFoundError:
                raise RuntimeError(f"unit {unit}: its commit lists {relative}, which is not in _tmp/") from None
        shard_names = {}
        for part in sorted({_part_of(f)[0] for f in files if f.startswith("shards/")}):
            shard_names[part] = f"{self._allocate():05d}"
        moves = []
        for relative in files:
            part, extension = _part_of(relative)
            target = f"shards/{shard_names[part]}{extension}" if relative.startswith("shards/") else relative
            moves.append([relative, target])
        marker_path = self.unit_stats / f"{unit:05d}.json"
        kept = json.loads(marker_path.read_text())["files"] if marker_path.exists() else {}
        sizes = {**kept, **{target: sizes_in_tmp[source] for source, target in moves}}
        entry = {"unit": unit, "moves": moves, "marker": {**stats, "files": sizes}}
        self.journal.mkdir(exist_ok=True)
        journal = self.journal / f"{unit:05d}.json"
        _atomic_write(journal, json.dumps(entry))
        return journal, entry

    def _apply_journal(self, journal: Path, entry: dict | None = None) -> tuple[int, str | None]:
        """Apply the moves (a move already done is fine) and write the marker; or the problem.
        ``entry`` is the journal's content when the caller just wrote it (else it is read)."""
        entry = entry or json.loads(journal.read_text())
        sizes = entry["marker"]["files"]
        for source, target in entry["moves"]:
            (self.root / target).parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(self.tmp / source, self.root / target)
            except FileNotFoundError:  # moved before a crash, or lost
                if not _has_size(self.root / target, sizes[target]):
                    return entry["unit"], f"its commit lists {source}, which is neither in _tmp/ nor in place"
        _atomic_write(self.unit_stats / f"{entry['unit']:05d}.json", json.dumps(entry["marker"]))
        journal.unlink()
        return entry["unit"], None

    def _allocate(self) -> int:
        """The lowest shard index no marker uses: a unit redone after damage takes its old
        indices back, so the names stay one contiguous range in the usual case."""
        if self._used is None:
            self._mark_used(name for p in self.unit_stats.glob("*.json") for name in json.loads(p.read_text()).get("files", {}))
        while self._lowest_free in self._used:  # indices are only freed by recover(), which resets this
            self._lowest_free += 1
        self._used.add(self._lowest_free)
        return self._lowest_free

    def _mark_used(self, listed) -> None:
        """The shard indices the markers' files hold; allocation restarts from the lowest."""
        self._used = {_shard_index(name) for name in listed} - {None}
        self._lowest_free = 0

    def read_unit_stats(self, unit: int) -> dict:
        return json.loads(storage.read_bytes(str(self.unit_stats / f"{unit:05d}.json")))

    def committed_files(self) -> list[str]:
        """Every file a unit marker lists, relative to the root, sorted (readers use only these)."""
        markers = self.marker_uris() if not self.local else [str(p) for p in self.unit_stats.glob("*.json")]
        return sorted(name for marker in markers for name in json.loads(storage.read_bytes(marker))["files"])

    # -- outputs ----------------------------------------------------------------------------

    def write_uids_and_sizes(self) -> dict[str, int]:
        """``shards/sizes.json``, tar basename -> samples (from the committed shard parquets'
        metadata), the file open_clip's trainer sizes its epoch from (``get_dataset_size``), and
        ``uids.npy``, the sorted kept uids in DataComp's ``u8,u8`` layout, by an external merge
        sort (:mod:`curate.io.uids_file`: no driver memory per uid). Returns the sizes."""
        parquets = [str(self.root / name) for name in self.committed_files()
                    if name.startswith("shards/") and name.endswith(".parquet")]
        sizes = {}
        for uri in parquets:
            fs, path = storage.filesystem_of(uri)
            sizes[uri.rsplit("/", 1)[1].removesuffix(".parquet") + ".tar"] = pq.read_metadata(path, filesystem=fs).num_rows
        write_sorted_uids(parquets, str(self.root / "uids.npy"), sum(sizes.values()))
        _atomic_write(self.shards / SIZES_NAME, json.dumps(sizes, indent=0))
        return sizes

    def train_data(self, sizes: dict[str, int]) -> str:
        """The shards as one ``--train-data`` string: brace ranges of consecutive indices,
        joined by ``::`` where a gap remains (open_clip's ``expand_urls`` reads both). On a store,
        one ``pipe:aws s3 cp URI -`` per shard (webdataset has no s3 scheme; the AWS CLI reads
        the same ``AWS_*`` environment), joined by ``::``."""
        if not self.local:
            return "::".join(f"pipe:aws s3 cp {self.shards / name} -" for name in sorted(sizes))
        indices = sorted(int(name.removesuffix(".tar")) for name in sizes)
        ranges: list[list[int]] = []
        for index in indices:
            # a range cannot cross a change of width: braceexpand pads both ends to one width
            if ranges and index == ranges[-1][1] + 1 and len(f"{index:05d}") == len(f"{ranges[-1][0]:05d}"):
                ranges[-1][1] = index
            else:
                ranges.append([index, index])
        parts = [f"{a:05d}" if a == b else f"{{{a:05d}..{b:05d}}}" for a, b in ranges]
        return "::".join(f"{self.shards}/{part}.tar" for part in parts)


def _part_of(relative: str) -> tuple[str, str]:
    """``shards/00012-0004000.clip.npy`` -> (``00012-0004000``, ``.clip.npy``): a part's files
    share its name up to the first dot, so they take one shard index together."""
    name = relative.rsplit("/", 1)[-1]
    stem, dot, rest = name.partition(".")
    return stem, dot + rest


def _shard_index(relative: str) -> int | None:
    folder, _, name = relative.partition("/")
    stem = name.split(".", 1)[0]
    return int(stem) if folder == "shards" and stem.isdigit() else None


def _has_size(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except FileNotFoundError:
        return False


def _atomic_write(path: Path | str, text: str) -> None:
    """Locally written, synced and renamed into place; on a store one PUT."""
    if not isinstance(path, Path):
        storage.write_bytes(path, text.encode())
        return
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
