"""``curate run --retry-failed``: re-attempt only the rows a stage failed transiently (download:
timeout, 5xx, 429, reset), which img2dataset users have asked for since its #333 and #452.

A stage says what is worth retrying with ``retryable_reasons`` (a regex over its ledger
reasons); the engine knows no stage by name. The scan streams: Ray tasks read the committed
units' ledgers (each unit's marker lists them) and the driver keeps one count per unit; the
retry's read task of a unit finds that unit's rows itself (:class:`RetryRows`).

A retry round reads the affected units again, keeps only the retried rows, and writes their
results as new parts (``<unit>-r<round>-<row>``; their shards take the next free indices). The
unit's commit rewrites its ledgers without the retried rows and adjusts its counters, in the same
journaled commit, so conservation holds; its marker keeps listing the unit's earlier files.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.console import Console

from curate import storage
from curate.config import PipelineSpec
from curate.engine.commit import shard_sink, stream_units, unit_stats
from curate.engine.executor import Executor
from curate.engine.ray_runtime import on_workers
from curate.engine.rundir import RunDir
from curate.io.readers import Unit
from curate.io.writers import PartRecord, scores_table
from curate.stages.base import Stage
from curate.stats.histogram import as_json, merge, negated, summarise

#: Units whose ledgers one scan task reads (a task costs ~10 ms; a unit's ledgers ~1 ms when small).
UNITS_PER_SCAN_TASK = 256


def retry_transient_failures(executor: Executor, run: RunDir, units: list[Unit], stages: list[Stage], spec: PipelineSpec,
                             console: Console) -> int:
    """One retry round over every committed unit with rows a stage may retry."""
    reasons = retryable_reasons(stages)
    done = sorted(run.done_units())
    batches = [done[i:i + UNITS_PER_SCAN_TASK] for i in range(0, len(done), UNITS_PER_SCAN_TASK)]
    counts = {unit: n for batch in on_workers([(count_retryable, (str(run.root), b, reasons)) for b in batches])
              for unit, n in batch if n}
    if not counts:
        console.print("no transient failures to retry")
        return 0
    round_no = int(run.manifest().get("retry_rounds", 0)) + 1
    by_index = {u.index: u for u in units}
    targets = [by_index[i] for i in sorted(counts)]
    console.print(f"retrying {sum(counts.values())} transient failures in {len(targets)} units")

    def finish(unit: int, parts: list[PartRecord]) -> None:
        stats = run.read_unit_stats(unit)
        rewritten, removed, gone = _rewrite_ledgers_without_retried(run, unit, reasons, f"r{round_no}",
                                                                    tuple(stats.get("histograms", {})))
        run.commit(unit, [*(f for p in parts for f in p.files), *rewritten.values()],
                   _adjusted_stats(stats, removed, gone, parts),
                   replaces=tuple(old for old, new in rewritten.items() if new != old))

    stream_units(executor, targets, counts, console, f"retry round {round_no}", finish, shard_sink(run, spec, f"r{round_no}"),
                 only_rows=RetryRows(str(run.root), reasons))
    run.update_manifest(retry_rounds=round_no)
    return len(targets)


def retryable_reasons(stages: list[Stage]) -> dict[str, str]:
    """Stage name -> the regex of the ledger reasons it declares worth retrying."""
    return {stage.name: stage.retryable_reasons for stage in stages if stage.retryable_reasons}


class RetryRows:
    """The rows a retry round reads again, per unit, found on the worker from the unit's own
    ledgers; indexed by unit like a dict, but it holds only the run's root and the reasons, so
    the read tasks carry a few hundred bytes however many rows are retried."""

    def __init__(self, root: str, reasons: dict[str, str]):
        self.root, self.reasons = root, reasons

    def __getitem__(self, unit: int) -> np.ndarray:
        run = RunDir(self.root)
        rows = [np.zeros(0, np.int32)]
        for name in _ledgers_of(run, unit):
            ledger = _read_ledger(run, name, ["stage", "reason", "unit", "row"])
            rows.append(ledger.column("row").filter(_retried(ledger, unit, self.reasons)).to_numpy())
        return np.sort(np.concatenate(rows))


def count_retryable(root: str, units: list[int], reasons: dict[str, str]) -> list[tuple[int, int]]:
    """``(unit, rows to retry)`` for each of ``units`` (a scan task, on a worker)."""
    run = RunDir(root)
    return [(unit, sum(pc.sum(_retried(_read_ledger(run, name, ["stage", "reason", "unit"]), unit, reasons)).as_py() or 0
                       for name in _ledgers_of(run, unit))) for unit in units]


def _ledgers_of(run: RunDir, unit: int) -> list[str]:
    """The unit's committed ledger files (relative to the run's root), as its marker lists them."""
    return sorted(name for name in run.read_unit_stats(unit)["files"] if name.startswith("rejects/"))


def _read_ledger(run: RunDir, relative: str, columns: list[str] | None = None) -> pa.Table:
    filesystem, path = storage.filesystem_of(str(run.root / relative))
    return pq.read_table(path, filesystem=filesystem, columns=columns)


def _retried(ledger: pa.Table, unit: int, reasons: dict[str, str]) -> pa.Array:
    """Which rows of ``ledger`` are of ``unit`` and dropped by a stage for a reason it declares retryable."""
    stage, reason = ledger.column("stage"), ledger.column("reason")
    match = pa.array(np.zeros(ledger.num_rows, bool))
    for name, pattern in reasons.items():
        match = pc.or_(match, pc.and_(pc.equal(stage, name), pc.match_substring_regex(reason, pattern)))
    return pc.fill_null(pc.and_(match, pc.equal(ledger.column("unit"), unit)), False)


def _rewrite_ledgers_without_retried(run: RunDir, unit: int, reasons: dict[str, str], tag: str,
                                     score_columns: tuple[str, ...]) -> tuple[dict[str, str], Counter, list[dict]]:
    """Write (to ``_tmp/``) each of the unit's ledgers that holds retried rows, minus them; the
    files rewritten (committed name -> new name), the (stage, reason) counts removed and the
    histograms of the removed rows' ``score_columns`` (the ledger keeps their scores). Its rows
    were retried just now, and the ledgers are not touched in between, so they are the rows
    :class:`RetryRows` found. On disk the new ledger replaces the old by rename, under its name;
    on a store nothing is renamed over, so it gets a new name (``-<tag>``) that the commit
    names as the old one's replacement."""
    rewritten, removed, histograms = {}, Counter(), []
    for relative in _ledgers_of(run, unit):
        ledger = _read_ledger(run, relative)
        retried = _retried(ledger, unit, reasons)
        gone = ledger.filter(retried)
        if not gone.num_rows:
            continue
        removed.update(zip(gone.column("stage").to_pylist(), gone.column("reason").to_pylist(), strict=True))
        histograms.append(summarise(scores_table(gone.column("scores").to_pylist()), score_columns))
        kept = ledger.filter(pc.invert(retried))
        name = relative if run.local else relative.replace(".parquet", f"-{tag}.parquet")
        filesystem, path = storage.filesystem_of(str(run.tmp / name))
        filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
        pq.write_table(kept, path, filesystem=filesystem)
        rewritten[relative] = name
    return rewritten, removed, histograms
def _adjusted_stats(stats: dict, removed: Counter, removed_histograms: list[dict], parts: list[PartRecord]) -> dict:
    """The unit's counters with the retried rows' old drops (and scores) replaced by their new
    outcome, their new stage seconds added."""
    drops = {stage: Counter(reasons) for stage, reasons in stats["drops"].items()}
    for (stage, reason), count in removed.items():
        drops[stage][reason] -= count
    fresh = unit_stats(stats["unit"], 0, parts)
    for stage, reasons in fresh["drops"].items():
        drops.setdefault(stage, Counter()).update(reasons)
    cleaned = {stage: {r: n for r, n in reasons.items() if n} for stage, reasons in drops.items()}
    seconds = Counter(stats.get("seconds", {}))
    seconds.update(fresh["seconds"])
    histograms = merge([stats.get("histograms", {}), fresh["histograms"], *map(negated, removed_histograms)])
    return {**stats, "kept": stats["kept"] + fresh["kept"], "drops": {s: r for s, r in cleaned.items() if r},
            "seconds": dict(seconds), "histograms": as_json(histograms), "committed_at": fresh["committed_at"]}
