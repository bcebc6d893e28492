"""From part records to unit commits: a unit is committed once its parts account for all its
rows (kept + dropped == input), which makes conservation both the resume rule and a check."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from curate.config import PipelineSpec
from curate.engine.executor import CheckpointSink, CheckpointSource, Executor, InputSource, ObserveSink, ShardSink, Sink
from curate.engine.partstore import PartStore
from curate.engine.rundir import RunDir
from curate.io.readers import Unit
from curate.io.writers import PartRecord
from curate.stages.base import Stage
from curate.stats import metrics
from curate.stats.histogram import as_json, merge

#: Called with a unit and all its parts once they account for every expected row.
Finish = Callable[[int, list[PartRecord]], None]


class UnitTracker:
    """Collects part records; calls ``finish`` once a unit's parts account for all its rows."""

    def __init__(self, expected: dict[int, int], finish: Finish, on_rows: Callable[[int], None], phase: str = "shards"):
        self.expected, self.finish, self.on_rows, self.phase = expected, finish, on_rows, phase
        self.parts: dict[int, dict[int, PartRecord]] = defaultdict(dict)
        self.committed = 0
        metrics.units_progress(phase, 0, len(expected))

    def __call__(self, record: PartRecord) -> None:
        parts = self.parts[record.unit]
        if record.row0 in parts:  # a re-executed task reporting again
            return
        parts[record.row0] = record
        self.on_rows(record.rows)
        seen = sum(p.rows for p in parts.values())
        if seen > self.expected[record.unit]:
            raise RuntimeError(f"unit {record.unit}: {seen} rows reported for {self.expected[record.unit]}")
        if seen == self.expected[record.unit]:
            self.finish(record.unit, list(parts.values()))
            self.committed += 1
            del self.parts[record.unit]
            metrics.units_progress(self.phase, 1, len(self.expected) - self.committed)


def unit_stats(unit: int, rows: int, parts: list[PartRecord]) -> dict:
    """The unit's counters (its completion marker): rows in, kept, drops by stage and reason, the
    worker-seconds each stage spent on its rows, the histograms of its score columns, and when the
    driver committed it (drops over time in the report)."""
    drops: dict[str, Counter] = {}
    seconds: Counter = Counter()
    for part in parts:
        for stage, reasons in part.drops.items():
            drops.setdefault(stage, Counter()).update(reasons)
        seconds.update(part.seconds)
    return {"unit": unit, "rows": rows, "kept": sum(p.kept for p in parts), "drops": {s: dict(c) for s, c in drops.items()},
            "seconds": dict(seconds), "histograms": as_json(merge(p.histograms for p in parts)),
            "committed_at": time.time()}


def stream_units(executor: Executor, units: list[Unit], expected: dict[int, int], console: Console, description: str,
                 finish: Finish, sink: Sink, source: InputSource | CheckpointSource | None = None,
                 stages: list[Stage] | None = None, only_rows: dict[int, list[int]] | None = None) -> None:
    """Run ``units`` through ``stages`` into ``sink`` with a progress bar; every unit must finish."""
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=console)
    with progress:
        task = progress.add_task(description, total=sum(expected.values()))
        tracker = UnitTracker(expected, finish, lambda rows: progress.advance(task, rows), _PHASES[type(sink)])
        with metrics.replaying(isinstance(sink, ObserveSink)):
            executor.run(units, sink, tracker, source=source, stages=stages, only_rows=only_rows)
    if tracker.committed != len(units):
        raise RuntimeError(f"{len(units) - tracker.committed} units did not complete")


#: The ``phase`` label of the units metrics: what a pass commits its units into.
_PHASES = {ShardSink: "shards", CheckpointSink: "checkpoint", ObserveSink: "observe"}


def shard_sink(run: RunDir, spec: PipelineSpec, tag: str = "") -> ShardSink:
    return ShardSink(str(run.tmp), spec.output.samples_per_shard, spec.output.image_format, run.part_tag(tag))


def run_pending(executor: Executor, run: RunDir, pending: list[Unit], spec: PipelineSpec, console: Console,
                source: InputSource | CheckpointSource | None = None, stages: list[Stage] | None = None) -> int:
    """Process the units without a completion marker into shards; returns how many ran."""
    if not pending:
        return 0
    sizes = {u.index: u.size for u in pending}

    def finish(unit: int, parts: list[PartRecord]) -> None:
        run.commit(unit, [f for p in parts for f in p.files], unit_stats(unit, sizes[unit], parts))

    stream_units(executor, pending, sizes, console, f"{spec.name}: {len(pending)} units", finish, shard_sink(run, spec),
                 source=source, stages=stages)
    return len(pending)


def run_into_store(executor: Executor, store: PartStore, pending: list[Unit], sink: CheckpointSink | ObserveSink,
                   console: Console, description: str, source: InputSource | CheckpointSource,
                   stages: list[Stage]) -> None:
    """Stream units into a part store (a checkpoint, a global stage's summaries), committing
    each unit's marker once its parts account for all of its rows."""
    if not pending:
        return
    sizes = {u.index: u.size for u in pending}

    def finish(unit: int, parts: list[PartRecord]) -> None:
        store.commit(unit, sizes[unit], [f for p in parts for f in p.files])

    stream_units(executor, pending, sizes, console, description, finish, sink, source=source, stages=stages)
