"""Spec -> ordered stages -> engine: the whole ``curate run`` (also the Python API)."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from curate.config import PipelineSpec, load_spec
from curate.engine.executor import Executor
from curate.engine.ray_runtime import ray_session
from curate.engine.rundir import RunDir
from curate.io.readers import READ_STAGE, Unit, plan_units
from curate.io.writers import REJECTS_SCHEMA, PartRecord
from curate.stages.base import GlobalFilter, Stage
from curate.stages.download import DownloadStage, ImageOutput, is_transient
from curate.stats.funnel import Funnel, build_funnel, render_funnel


@dataclass
class RunResult:
    run_dir: Path
    funnel: Funnel
    units_run: int
    resumed: bool


def run_pipeline(
    source: str | Path | dict,
    output: str | None = None,
    address: str | None = None,
    overwrite: bool = False,
    retry_failed: bool = False,
    overrides: list[str] | None = None,
    console: Console | None = None,
) -> RunResult:
    """Run a pipeline spec (YAML path or dict) to completion, resuming where possible."""
    console = console or Console(stderr=True)
    spec, stages = load_spec(source, overrides)
    if output:
        spec.output.path = output
    run = RunDir(spec.output.path or os.path.join("runs", spec.name))
    _ensure_synth(spec)
    units = plan_units(spec.input)
    stage_order = [READ_STAGE, *(s.name for s in stages)]
    if retry_failed and not run.manifest_path.exists():
        raise _user(f"{run.root}: no earlier run to retry (run without --retry-failed first)")
    resumed = run.prepare(spec, _input_fingerprint(units), len(units), overwrite)
    run.update_manifest(stage_order=stage_order, state="running")
    run.recover()
    _bind_output(stages, spec)
    units_run = 0
    with _serving(spec) as base_url, ray_session(address, spec.resources):
        _bind_base_url(stages, base_url)
        executor = Executor(spec.input, stages, uuid.uuid4().hex)
        _load_global_states(executor, run, units, stages, console)
        if retry_failed:
            units_run = _retry_failed(executor, run, units, stages, spec, console)
        else:
            done = run.done_units()
            pending = [u for u in units if u.index not in done]
            if resumed and done:
                console.print(f"resuming {run.root}: {len(done)} of {len(units)} units already complete")
            units_run = _run_units(executor, run, pending, spec, console)
    funnel = _finalize(run, units, stage_order)
    render_funnel(funnel, console, title=spec.name)
    console.print(f"run directory: {run.root}")
    return RunResult(run.root, funnel, units_run, resumed)


def _user(message: str):
    from curate.errors import UserError

    return UserError(message)


def _ensure_synth(spec: PipelineSpec) -> None:
    if spec.input.synth is None:
        return
    from curate.sample.synth import write_synth_corpus

    target = spec.input.serve or os.path.dirname(spec.input.path if isinstance(spec.input.path, str) else spec.input.path[0])
    write_synth_corpus(target, spec.input.synth.n, spec.input.synth.seed)


def _input_fingerprint(units: list[Unit]) -> list:
    files = sorted({u.path for u in units})
    return [[path, os.path.getsize(path), int(os.path.getmtime(path))] for path in files]


def _bind_output(stages: list[Stage], spec: PipelineSpec) -> None:
    out = spec.output
    for stage in stages:
        if isinstance(stage, DownloadStage):
            stage.image_output = ImageOutput(out.image_size, out.resize_mode, out.resize_only_if_bigger, out.image_format,
                                             out.encode_quality)


def _bind_base_url(stages: list[Stage], base_url: str | None) -> None:
    for stage in stages:
        if isinstance(stage, DownloadStage) and base_url and not stage.params.base_url:
            stage.params = stage.params.model_copy(update={"base_url": base_url})


@contextlib.contextmanager
def _serving(spec: PipelineSpec) -> Iterator[str | None]:
    if not spec.input.serve:
        yield None
        return
    from curate.io.http_server import serve_directory

    with serve_directory(spec.input.serve) as base_url:
        yield base_url


def _load_global_states(executor: Executor, run: RunDir, units: list[Unit], stages: list[Stage], console: Console) -> None:
    """Phase one of every global stage, or its persisted state from an earlier attempt."""
    for index, stage in enumerate(stages):
        if not isinstance(stage, GlobalFilter):
            continue
        path = run.state / f"{stage.name}.parquet"
        if not path.exists():
            with console.status(f"{stage.name}: observing the whole input ({len(units)} units)"):
                state = executor.observe(units, stage, stages[:index])
            partial = path.with_suffix(".parquet.partial")
            pq.write_table(state, partial)
            os.replace(partial, path)
        stage.load_state(pq.read_table(path))


class _UnitTracker:
    """Collects part records; commits a unit once its parts account for all its rows."""

    def __init__(self, run: RunDir, expected: dict[int, int], progress: Progress, task, finish):
        self.run, self.expected, self.progress, self.task, self.finish = run, expected, progress, task, finish
        self.parts: dict[int, dict[int, PartRecord]] = defaultdict(dict)
        self.committed = 0

    def __call__(self, record: PartRecord) -> None:
        parts = self.parts[record.unit]
        if record.row0 in parts:  # a re-executed task reporting again
            return
        parts[record.row0] = record
        self.progress.advance(self.task, record.rows)
        seen = sum(p.rows for p in parts.values())
        if seen > self.expected[record.unit]:
            raise RuntimeError(f"unit {record.unit}: {seen} rows reported for {self.expected[record.unit]}")
        if seen == self.expected[record.unit]:
            self.finish(record.unit, list(parts.values()))
            self.committed += 1
            del self.parts[record.unit]


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)


def _unit_stats(unit: int, rows: int, parts: list[PartRecord]) -> dict:
    drops: dict[str, Counter] = {}
    for part in parts:
        for stage, reasons in part.drops.items():
            drops.setdefault(stage, Counter()).update(reasons)
    return {"unit": unit, "rows": rows, "kept": sum(p.kept for p in parts), "drops": {s: dict(c) for s, c in drops.items()}}


def _run_units(executor: Executor, run: RunDir, pending: list[Unit], spec: PipelineSpec, console: Console) -> int:
    if not pending:
        return 0
    sizes = {u.index: u.size for u in pending}

    def finish(unit: int, parts: list[PartRecord]) -> None:
        run.commit(unit, [f for p in parts for f in p.files], _unit_stats(unit, sizes[unit], parts))

    with _progress(console) as progress:
        task = progress.add_task(f"{spec.name}: {len(pending)} units", total=sum(sizes.values()))
        tracker = _UnitTracker(run, sizes, progress, task, finish)
        executor.run(pending, run.tmp, spec.output.samples_per_shard, spec.output.image_format, tracker)
    if tracker.committed != len(pending):
        raise RuntimeError(f"{len(pending) - tracker.committed} units did not complete")
    return len(pending)


def _retry_failed(executor: Executor, run: RunDir, units: list[Unit], stages: list[Stage], spec: PipelineSpec,
                  console: Console) -> int:
    """Re-attempt only the rows whose download failed transiently (img2dataset #333, #452)."""
    download_names = {s.name for s in stages if isinstance(s, DownloadStage)}
    retry: dict[int, list[int]] = defaultdict(list)
    old_files: dict[int, list[str]] = defaultdict(list)
    for path in sorted(run.rejects.glob("*.parquet")):
        ledger = pq.read_table(path, columns=["stage", "reason", "unit", "row"])
        mask = pa.array([s in download_names and is_transient(r) for s, r in
                         zip(ledger.column("stage").to_pylist(), ledger.column("reason").to_pylist(), strict=True)], pa.bool_())
        hits = ledger.filter(mask)
        for unit, row in zip(hits.column("unit").to_pylist(), hits.column("row").to_pylist(), strict=True):
            retry[unit].append(row)
        for unit in set(hits.column("unit").to_pylist()):
            old_files[unit].append(f"rejects/{path.name}")
    if not retry:
        console.print("no transient download failures to retry")
        return 0
    round_no = int(run.manifest().get("retry_rounds", 0)) + 1
    tag = f"r{round_no}"
    by_index = {u.index: u for u in units}
    targets = [by_index[i] for i in sorted(retry)]
    sizes = {unit: len(rows) for unit, rows in retry.items()}
    console.print(f"retrying {sum(sizes.values())} transient download failures in {len(targets)} units")

    def finish(unit: int, parts: list[PartRecord]) -> None:
        retried = set(retry[unit])
        removed: Counter = Counter()
        rewrites = []
        for relative in old_files[unit]:
            ledger = pq.read_table(run.root / relative)
            rows = ledger.column("row").to_pylist()
            units_col = ledger.column("unit").to_pylist()
            stays = pa.array([not (u == unit and r in retried) for u, r in zip(units_col, rows, strict=True)], pa.bool_())
            for stage, reason in zip(ledger.filter(pc.invert(stays)).column("stage").to_pylist(),
                                     ledger.filter(pc.invert(stays)).column("reason").to_pylist(), strict=True):
                removed[(stage, reason)] += 1
            (run.tmp / relative).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(ledger.filter(stays).cast(REJECTS_SCHEMA), run.tmp / relative)
            rewrites.append(relative)
        stats = run.read_unit_stats(unit)
        for (stage, reason), count in removed.items():
            stats["drops"][stage][reason] -= count
            if not stats["drops"][stage][reason]:
                del stats["drops"][stage][reason]
        fresh = _unit_stats(unit, 0, parts)
        stats["kept"] += fresh["kept"]
        for stage, reasons in fresh["drops"].items():
            merged = Counter(stats["drops"].get(stage, {}))
            merged.update(reasons)
            stats["drops"][stage] = dict(merged)
        stats["drops"] = {s: r for s, r in stats["drops"].items() if r}
        run.commit(unit, [f for p in parts for f in p.files], stats, rewrites)

    with _progress(console) as progress:
        task = progress.add_task(f"retry round {round_no}", total=sum(sizes.values()))
        tracker = _UnitTracker(run, sizes, progress, task, finish)
        executor.run(targets, run.tmp, spec.output.samples_per_shard, spec.output.image_format, tracker,
                     only_rows={u: sorted(r) for u, r in retry.items()}, tag=tag)
    run.update_manifest(retry_rounds=round_no)
    return len(targets)


def _finalize(run: RunDir, units: list[Unit], stage_order: list[str]) -> Funnel:
    unit_stats = [run.read_unit_stats(u.index) for u in units]
    funnel = build_funnel(unit_stats, stage_order)
    kept = run.write_uids()
    if kept != funnel.kept:
        raise RuntimeError(f"shards hold {kept} samples but the counters say {funnel.kept}")
    (run.stats / "stats.json").write_text(json.dumps(funnel.to_json(), indent=2))
    run.update_manifest(state="complete")
    run.cleanup()
    return funnel


def load(source: str | Path | dict, overrides: list[str] | None = None):
    """Validate a spec without running it: ``(spec, stages)``."""
    return load_spec(source, overrides)
