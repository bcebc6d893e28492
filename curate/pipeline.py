"""Spec -> ordered stages -> engine: the whole ``curate run`` (also the Python API)."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console

from curate import storage
from curate.config import PipelineSpec, build_stages, parse_spec, spec_label
from curate.engine.commit import run_into_store, run_pending
from curate.engine.executor import CheckpointSink, CheckpointSource, Executor, InputSource, ObserveSink
from curate.engine.global_phase import observe_all, partition_count
from curate.engine.partstore import PartStore, new_attempt
from curate.engine.ray_runtime import on_workers, ray_session
from curate.engine.retry import retry_transient_failures
from curate.engine.rundir import RunDir
from curate.engine.segments import Segment, delete_checkpoints, plan_segments
from curate.errors import UserError
from curate.io.http_server import check_serve_reachable
from curate.io.plan import plan_inputs
from curate.io.readers import READ_STAGE, Unit, read_stages
from curate.io.writers import storage_error
from curate.stages.base import GlobalFilter, ImageOutput, RunContext, Stage
from curate.stats.funnel import Funnel, build_funnel, render_funnel
from curate.stats.report import write_report


@dataclass
class RunResult:
    run_dir: Path
    funnel: Funnel
    units_run: int
    resumed: bool
    train_data: str | None  # open_clip's --train-data for the shards (None: nothing kept)


def run_pipeline(
    source: str | Path | dict,
    output: str | None = None,
    address: str | None = None,
    overwrite: bool = False,
    retry_failed: bool = False,
    overrides: list[str] | None = None,
    console: Console | None = None,
    keep_checkpoints: bool = False,
) -> RunResult:
    """Run a pipeline spec (YAML path or dict) to completion, resuming where possible."""
    console = console or Console(stderr=True)
    spec = parse_spec(source, overrides)
    _ensure_synth(spec, lists_only=True)  # a stage may read a file the corpus carries (its blocklist)
    stages = build_stages(spec, spec_label(source))
    _ensure_synth(spec)  # after the stages are checked: a missing model weighs less than drawing 3,000 images
    if output:
        spec.output.path = output
    run = RunDir(spec.output.path or os.path.join("runs", spec.name))
    check_serve_reachable(spec.input.serve, address, str(source) if not isinstance(source, dict) else "<dict>")
    plan = plan_inputs(spec.input)  # on the driver: files, formats, headers, columns; no file is read whole
    stage_order = [READ_STAGE, *(s.name for s in stages)]
    if retry_failed and not storage.exists(str(run.manifest_path)):
        raise UserError(f"{run.root}: no earlier run to retry (run without --retry-failed first)")
    run.check_output([*plan.paths, *([spec.input.serve] if spec.input.serve else [])], overwrite)
    units_run = 0
    with _storage_errors(run.root), run.locked():
        with _serving(spec) as base_url, ray_session(address, spec.resources, spec.metrics), _storage_errors(run.root):
            units = plan.units(on_workers)  # rows of csv/tsv/jsonl chunks and tar member lists counted by Ray tasks
            context = RunContext(_image_output(spec), base_url)
            for stage in stages:  # before prepare: binding reads (or builds) what content_record identifies
                stage.bind(context)
            records = {stage.name: record for stage in stages if (record := stage.content_record()) is not None}
            if any(stage.kind == "clip_score" for stage in stages):  # a caption-only run imports no model code
                from curate.stages.clip import check_embedding_widths

                check_embedding_widths(stages)
            resumed = run.prepare(spec, _input_fingerprint(plan.paths), len(units), overwrite, records)
            run.update_manifest(stage_order=stage_order, state="running")
            for line in run.recover():
                console.print(line, soft_wrap=True, markup=False, highlight=False)
            # The reader's implicit stages (repeated input uids, tar images) run first; their
            # drops count under "read", so stage_order above stays the user's stages.
            implicit = read_stages(spec.input, units)
            for stage in implicit:
                stage.bind(context)
            stages = [*implicit, *stages]
            executor = Executor(spec.input, stages, uuid.uuid4().hex)
            segments = plan_segments(stages, str(run.root))
            if retry_failed and len(segments) > 1:
                raise UserError("--retry-failed is not supported yet for a pipeline with a global stage after "
                                f"{segments[0].stages[-1].kind} (the retried rows would miss its verdicts)")
            done = run.done_units()
            if resumed and done:
                console.print(f"resuming {run.root}: {len(done)} of {len(units)} units already complete")
            units_run = _run_segments(executor, run, units, [u for u in units if u.index not in done], segments, spec,
                                      console)
            if retry_failed:
                units_run += retry_transient_failures(executor, run, units, stages, spec, console)
        funnel, train_data = _finalize(run, units, stage_order, stages)
        if not keep_checkpoints:
            delete_checkpoints(str(run.root))
    render_funnel(funnel, console, title=spec.name)
    console.print(f"run directory: {run.root} (report: {run.root / 'report.html'})", soft_wrap=True, markup=False,
                  highlight=False)
    if train_data:
        console.print(f"open_clip: --train-data {shlex.quote(train_data)} --train-num-samples {funnel.kept} "
                      "--dataset-type webdataset", soft_wrap=True, markup=False, highlight=False)
    return RunResult(run.root, funnel, units_run, resumed, train_data)


@contextlib.contextmanager
def _storage_errors(root: Path) -> Iterator[None]:
    """A full, read-only or foreign output is a one-line error (issue 5 §3); the rerun resumes."""
    try:
        yield
    except OSError as err:
        failure = storage_error(err, root)
        if failure is None:
            raise
        raise failure from err


def _ensure_synth(spec: PipelineSpec, lists_only: bool = False) -> None:
    if spec.input.synth is None:
        return
    from curate.sample.synth import write_corpus_lists, write_synth_corpus

    target = spec.input.serve or os.path.dirname(spec.input.path if isinstance(spec.input.path, str) else spec.input.path[0])
    if lists_only:
        write_corpus_lists(target)
    else:
        write_synth_corpus(target, spec.input.synth.n, spec.input.synth.seed)


def _input_fingerprint(paths: list[str]) -> list:
    return [storage.fingerprint(path) for path in sorted(paths)]


def _image_output(spec: PipelineSpec) -> ImageOutput:
    out = spec.output
    return ImageOutput(out.image_size, out.resize_mode, out.resize_only_if_bigger, out.image_format, out.encode_quality)


@contextlib.contextmanager
def _serving(spec: PipelineSpec) -> Iterator[str | None]:
    if not spec.input.serve:
        yield None
        return
    from curate.io.http_server import serve_directory

    with serve_directory(spec.input.serve) as base_url:
        yield base_url


def _run_segments(executor: Executor, run: RunDir, units: list[Unit], pending: list[Unit], segments: list[Segment],
                  spec: PipelineSpec, console: Console) -> int:
    """Each segment in turn: phase one of its global stages, then its pending units into the next
    segment's checkpoint (or, for the last, into shards); returns how many units reached shards."""
    attempt = new_attempt()
    for segment in segments:
        source = CheckpointSource(segment.reads) if segment.reads else InputSource(spec.input)
        for index, stage in enumerate(segment.stages):
            if isinstance(stage, GlobalFilter):
                _observe(executor, run, units, source, segment.stages[:index], stage, attempt, console)
        if segment.writes is None:
            return run_pending(executor, run, pending, spec, console, source=source, stages=segment.stages)
        segment.writes.remove_unlisted()
        checkpointed = segment.writes.done_units()
        todo = [u for u in pending if u.index not in checkpointed]
        run_into_store(executor, segment.writes, todo, CheckpointSink(segment.writes, attempt), console,
                       f"{spec.name}: segment {segment.index + 1} of {len(segments)} ({segment.describe()}): "
                       f"{len(todo)} units", source, segment.stages)
    raise AssertionError("the last segment writes the shards")


def _observe(executor: Executor, run: RunDir, units: list[Unit], source: InputSource | CheckpointSource,
             prefix: list[Stage], stage: GlobalFilter, attempt: str, console: Console) -> None:
    """Phase one of a global stage over every unit (replaying ``prefix`` of its segment)."""

    def observe(store: PartStore) -> None:
        done = store.done_units()
        todo = [u for u in units if u.index not in done]
        sink = ObserveSink(stage, f"{executor.run_token}:observe:{stage.name}", store, attempt,
                           partition_count(sum(u.size for u in units)))
        run_into_store(executor, store, todo, sink, console, f"{stage.name}: observing {len(todo)} units", source, prefix)

    observe_all(str(run.root), stage, console, observe)


def _finalize(run: RunDir, units: list[Unit], stage_order: list[str], stages: list[Stage]) -> tuple[Funnel, str | None]:
    """Merged counters, ``uids.npy``, ``shards/sizes.json``, the stages' thresholds and data cards,
    ``report.html``; the open_clip ``--train-data``."""
    unit_stats = [run.read_unit_stats(u.index) for u in units]
    funnel = build_funnel(unit_stats, stage_order)
    sizes = run.write_uids_and_sizes()
    if sum(sizes.values()) != funnel.kept:
        raise RuntimeError(f"shards hold {sum(sizes.values())} samples but the counters say {funnel.kept}")
    storage.write_bytes(str(run.stats / "stats.json"), json.dumps(funnel.to_json(), indent=2).encode())
    shard_parquets = [str(run.root / name) for name in run.committed_files()
                      if name.startswith("shards/") and name.endswith(".parquet")]
    thresholds = [{"stage": stage.name, **asdict(threshold)} for stage in stages for threshold in stage.thresholds()]
    storage.write_bytes(str(run.stats / "thresholds.json"), json.dumps(thresholds, indent=2).encode())
    for stage in stages:
        card = stage.data_card(str(run.root), shard_parquets)
        if card is not None:
            storage.write_bytes(str(run.stats / card[0]), json.dumps(card[1], indent=2).encode())
    run.update_manifest(state="complete")
    write_report(str(run.root))  # after the manifest says complete: the report shows the state
    run.cleanup()
    return funnel, run.train_data(sizes) if sizes else None

