"""``curate run --retry-failed``: re-attempt only the rows whose download failed transiently
(timeout, 5xx, 429, reset), which img2dataset users have asked for since its #333 and #452.

A retry round reads the affected units again, keeps only the retried rows, and writes their
results as new parts (``<unit>-r<round>-<row>``; their shards take the next free indices). The
unit's commit rewrites its ledgers without the retried rows and adjusts its counters, in the same
journaled commit, so conservation holds; its marker keeps listing the unit's earlier files.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.console import Console

from curate.config import PipelineSpec
from curate.engine.commit import stream_units, unit_stats
from curate.engine.executor import Executor
from curate.engine.rundir import RunDir
from curate.io.readers import Unit
from curate.io.writers import REJECTS_SCHEMA, PartRecord
from curate.stages.base import Stage
from curate.stages.download import TRANSIENT_REASONS, DownloadStage


def retry_transient_failures(executor: Executor, run: RunDir, units: list[Unit], stages: list[Stage], spec: PipelineSpec,
                             console: Console) -> int:
    """One retry round over every committed unit with transient download failures."""
    retry, ledgers = _transient_rows(run, {s.name for s in stages if isinstance(s, DownloadStage)})
    if not retry:
        console.print("no transient download failures to retry")
        return 0
    round_no = int(run.manifest().get("retry_rounds", 0)) + 1
    by_index = {u.index: u for u in units}
    targets = [by_index[i] for i in sorted(retry)]
    sizes = {unit: len(rows) for unit, rows in retry.items()}
    console.print(f"retrying {sum(sizes.values())} transient download failures in {len(targets)} units")

    def finish(unit: int, parts: list[PartRecord]) -> None:
        removed = _rewrite_ledgers_without(run, ledgers[unit], unit, set(retry[unit]))
        run.commit(unit, [*(f for p in parts for f in p.files), *ledgers[unit]],
                   _adjusted_stats(run.read_unit_stats(unit), removed, parts))

    stream_units(executor, run, targets, sizes, spec, console, f"retry round {round_no}", finish,
                 only_rows={u: sorted(rows) for u, rows in retry.items()}, tag=f"r{round_no}")
    run.update_manifest(retry_rounds=round_no)
    return len(targets)


def _transient_rows(run: RunDir, download_stages: set[str]) -> tuple[dict[int, list[int]], dict[int, list[str]]]:
    """Rows to retry per unit, and the ledger files that hold them."""
    retry: dict[int, list[int]] = defaultdict(list)
    ledgers: dict[int, list[str]] = defaultdict(list)
    for path in sorted(run.rejects.glob("*.parquet")):
        ledger = pq.read_table(path, columns=["stage", "reason", "unit", "row"])
        transient = pc.and_(pc.is_in(ledger.column("stage"), pa.array(sorted(download_stages), pa.string())),
                            pc.match_substring_regex(ledger.column("reason"), TRANSIENT_REASONS))
        hits = ledger.filter(pc.fill_null(transient, False))
        for unit, row in zip(hits.column("unit").to_pylist(), hits.column("row").to_pylist(), strict=True):
            retry[unit].append(row)
        for unit in set(hits.column("unit").to_pylist()):
            ledgers[unit].append(f"rejects/{path.name}")
    return retry, ledgers


def _rewrite_ledgers_without(run: RunDir, files: list[str], unit: int, rows: set[int]) -> Counter:
    """Write (to ``_tmp/``) the unit's ledgers minus the retried rows; count what was removed."""
    removed: Counter = Counter()
    for relative in files:
        ledger = pq.read_table(run.root / relative)
        retried = pc.and_(pc.equal(ledger.column("unit"), unit),
                          pc.is_in(ledger.column("row"), pa.array(sorted(rows), pa.int32())))
        gone = ledger.filter(retried)
        removed.update(zip(gone.column("stage").to_pylist(), gone.column("reason").to_pylist(), strict=True))
        (run.tmp / relative).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(ledger.filter(pc.invert(retried)).cast(REJECTS_SCHEMA), run.tmp / relative)
    return removed


def _adjusted_stats(stats: dict, removed: Counter, parts: list[PartRecord]) -> dict:
    """The unit's counters with the retried rows' old drops replaced by their new outcome."""
    drops = {stage: Counter(reasons) for stage, reasons in stats["drops"].items()}
    for (stage, reason), count in removed.items():
        drops[stage][reason] -= count
    fresh = unit_stats(stats["unit"], 0, parts)
    for stage, reasons in fresh["drops"].items():
        drops.setdefault(stage, Counter()).update(reasons)
    cleaned = {stage: {r: n for r, n in reasons.items() if n} for stage, reasons in drops.items()}
    return {**stats, "kept": stats["kept"] + fresh["kept"], "drops": {s: r for s, r in cleaned.items() if r}}
