"""The funnel: per stage, rows in, kept and dropped by reason, merged from per-unit counters
(datatrove-style: each unit writes its counters; one function merges them)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table


@dataclass
class StageCounts:
    stage: str
    rows_in: int
    dropped: Counter = field(default_factory=Counter)

    @property
    def kept(self) -> int:
        return self.rows_in - sum(self.dropped.values())


@dataclass
class Funnel:
    rows: int
    kept: int
    stages: list[StageCounts]
    units: int  # units done (counted here)
    units_total: int | None = None  # units of the whole run (manifest), when known
    state: str = "complete"  # complete | interrupted | running (manifest state and the run's lock)
    holder: dict | None = None  # the live driver's host, pid and start, while running

    def to_json(self) -> dict:
        return {
            "rows": self.rows,
            "kept": self.kept,
            "units": self.units,
            "units_total": self.units if self.units_total is None else self.units_total,
            "state": self.state,
            "stages": [
                {"stage": s.stage, "in": s.rows_in, "kept": s.kept, "dropped": sum(s.dropped.values()),
                 "reasons": dict(s.dropped.most_common())}
                for s in self.stages
            ],
        }


def merge_unit_stats(unit_stats: list[dict]) -> tuple[int, int, dict[str, Counter]]:
    rows = kept = 0
    drops: dict[str, Counter] = {}
    for stats in unit_stats:
        rows += stats["rows"]
        kept += stats["kept"]
        for stage, reasons in stats["drops"].items():
            drops.setdefault(stage, Counter()).update(reasons)
    return rows, kept, drops


def build_funnel(unit_stats: list[dict], stage_order: list[str]) -> Funnel:
    """Funnel in pipeline order; raises if kept + dropped != input (a lost or invented row)."""
    rows, kept, drops = merge_unit_stats(unit_stats)
    unknown = set(drops) - set(stage_order)
    if unknown:
        raise RuntimeError(f"drops recorded for stages not in the pipeline: {sorted(unknown)}")
    stages, alive = [], rows
    for name in stage_order:
        counts = StageCounts(name, alive, drops.get(name, Counter()))
        stages.append(counts)
        alive = counts.kept
    if alive != kept:
        raise RuntimeError(f"conservation violated: {rows} rows in, {kept} kept, {rows - alive} dropped")
    return Funnel(rows=rows, kept=kept, stages=stages, units=len(unit_stats))


def load_funnel(run_dir: str | Path) -> Funnel:
    """The funnel of a run directory, from ``stats/units/*.json`` and the manifest; a run that
    is not complete says so, and how many of its units are done (issue 5 §7)."""
    from curate.engine.lock import live_holder
    from curate.engine.rundir import RunDir

    run = RunDir(run_dir)
    manifest = run.manifest()
    unit_stats = [run.read_unit_stats(u) for u in sorted(run.done_units())]
    funnel = build_funnel(unit_stats, manifest["stage_order"])
    funnel.units_total = manifest["units"]
    if manifest.get("state") != "complete":
        funnel.holder = live_holder(run.root)
        funnel.state = "running" if funnel.holder else "interrupted"
    return funnel


def render_funnel(funnel: Funnel, console: Console | None = None, title: str = "funnel") -> None:
    console = console or Console()
    table = Table(title=f"{title}: {funnel.kept:,} of {funnel.rows:,} kept ({funnel.units} units)")
    for column, justify in (("stage", "left"), ("in", "right"), ("kept", "right"), ("dropped", "right"), ("reasons", "left")):
        table.add_column(column, justify=justify)
    for s in funnel.stages:
        reasons = ", ".join(f"{r} {n:,}" for r, n in s.dropped.most_common())
        table.add_row(s.stage, f"{s.rows_in:,}", f"{s.kept:,}", f"{sum(s.dropped.values()):,}", reasons)
    console.print(table)
    if funnel.state != "complete":
        console.print(incomplete_line(funnel), soft_wrap=True, markup=False, highlight=False)


def incomplete_line(funnel: Funnel) -> str:
    done = f"{funnel.units:,} of {funnel.units_total:,} units done"
    if funnel.state == "running":
        holder = funnel.holder or {}
        return (f"run incomplete: still running (host {holder.get('host')}, pid {holder.get('pid')}, "
                f"since {holder.get('since')}); {done}")
    return f"run incomplete: interrupted; {done} (rerun the same `curate run` to finish it)"
