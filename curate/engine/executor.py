"""One Ray Data streaming pipeline over the pending work units of one segment.

Every row carries its unit id; dropped rows travel on as ledger rows. A segment reads its units
from the input (:class:`InputSource`) or from the previous segment's checkpoint
(:class:`CheckpointSource`), applies its stages, and ends in a sink that writes each unit's part
and reports a :class:`PartRecord`: shards and ledgers (:class:`ShardSink`), a checkpoint
(:class:`CheckpointSink`) or a global stage's summaries (:class:`ObserveSink`). The driver knows
each unit's size, so a unit is complete exactly when its parts account for all of its rows;
only then is it committed (conservation is both the resume rule and a check).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.config import InputSpec
from curate.engine.blocks import split_alive
from curate.engine.global_phase import with_partition
from curate.engine.operators import add_stage, check_room_for_tasks, operators_of, ready
from curate.engine.partstore import PartStore
from curate.errors import UserError
from curate.io.readers import Unit, read_unit
from curate.io.writers import PartRecord, write_unit_part
from curate.schema import DROP_STAGE, ROW, UNIT
from curate.stages.base import GlobalFilter, Stage, feature_columns, released_columns, score_columns

# -- sources -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputSource:
    """Units read from the input files."""

    input_spec: InputSpec

    def read(self, unit: Unit) -> pa.Table:
        return read_unit(unit, self.input_spec)


@dataclass(frozen=True)
class CheckpointSource:
    """Units read back from the checkpoint the previous segment wrote (image bytes included)."""

    store: PartStore

    def read(self, unit: Unit) -> pa.Table:
        return self.store.read_unit(unit.index)


def read_units(batch: pa.Table, source: InputSource | CheckpointSource, only_rows: dict[int, list[int]] | None) -> pa.Table:
    tables = []
    for encoded in batch.column("unit").to_pylist():
        unit = Unit(**json.loads(encoded))
        table = source.read(unit)
        if only_rows is not None:
            table = table.filter(pc.is_in(table.column(ROW), pa.array(only_rows[unit.index], pa.int32())))
        tables.append(table)
    return pa.concat_tables(tables, promote_options="permissive")


# -- sinks (each returns one PartRecord row per unit part) ---------------------------------------


def _per_unit(block: pa.Table) -> Iterator[tuple[int, pa.Table]]:
    units = block.column(UNIT).to_numpy()
    for unit in np.unique(units):
        part = block.filter(pa.array(units == unit))
        yield int(unit), part.take(pa.array(np.argsort(part.column(ROW).to_numpy(), kind="stable")))


@dataclass(frozen=True)
class ShardSink:
    """The last segment's sink: shards and ledgers under ``_tmp/``, committed by the driver."""

    tmp_root: str
    samples_per_shard: int
    image_ext: str
    tag: str = ""
    feature_columns: tuple[str, ...] = ()
    score_columns: tuple[str, ...] = ()  # histogrammed per unit


def write_shards(block: pa.Table, sink: ShardSink) -> pa.Table:
    return pa.Table.from_pylist([write_unit_part(part, sink.tmp_root, sink.samples_per_shard, sink.image_ext,
                                                 sink.tag, sink.feature_columns, sink.score_columns).to_row()
                                 for _, part in _per_unit(block)])


@dataclass(frozen=True)
class CheckpointSink:
    """Every row reaching a segment boundary (dropped ones as ledger rows), per unit."""

    store: PartStore
    attempt: str


def write_checkpoint(block: pa.Table, sink: CheckpointSink) -> pa.Table:
    records = []
    for unit, part in _per_unit(block):
        row0 = int(part.column(ROW)[0].as_py())
        name = sink.store.write_part(part, unit, row0, sink.attempt)
        alive = int(pc.sum(pc.is_null(part.column(DROP_STAGE))).as_py() or 0)
        records.append(PartRecord(unit, row0, part.num_rows, alive, [name]).to_row())
    return pa.Table.from_pylist(records)


@dataclass(frozen=True)
class ObserveSink:
    """A global stage's phase one: the summary of each unit's live rows."""

    stage: GlobalFilter
    token: str
    store: PartStore
    attempt: str
    partitions: int


def write_observed(block: pa.Table, sink: ObserveSink) -> pa.Table:
    stage = ready(sink.stage, sink.token)
    records = []
    for unit, part in _per_unit(block):
        alive, _ = split_alive(part)
        summary = with_partition(stage.observe(alive), stage.key, sink.partitions)
        row0 = int(part.column(ROW)[0].as_py())
        name = sink.store.write_part(summary, unit, row0, sink.attempt)
        records.append(PartRecord(unit, row0, part.num_rows, alive.num_rows, [name]).to_row())
    return pa.Table.from_pylist(records)


_SINKS = {ShardSink: write_shards, CheckpointSink: write_checkpoint, ObserveSink: write_observed}
Sink = ShardSink | CheckpointSink | ObserveSink


class Executor:
    """Builds and runs the Ray Data plan of one segment."""

    def __init__(self, input_spec: InputSpec, stages: list[Stage], run_token: str):
        self.input_spec = input_spec
        self.stages = stages
        self.run_token = run_token
        released = released_columns(stages)
        for stage in stages:  # a drop releases every heavy and feature column, whichever stage wrote it
            stage.released = released

    def _dataset(self, units: list[Unit], source, stages: list[Stage], only_rows: dict[int, list[int]] | None = None):
        import ray
        from ray.data import DataContext

        # Ray Data reserves resources per operator so that actor pools (GPU stages) are not
        # starved; a plan of tasks only gains nothing from it and loses ~20% of its CPU slots
        # to the gaps it leaves (measured with benchmarks/parallel_efficiency.py: 78% -> 93% busy).
        parts = [part for stage in stages for _, part, _ in operators_of(stage, self.run_token)]
        DataContext.get_current().op_resource_reservation_enabled = any(p.resources.gpus > 0 for p in parts)
        check_room_for_tasks(parts, ray.cluster_resources().get("CPU", 0))
        items = [{"unit": json.dumps(asdict(u))} for u in units]
        ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
        ds = ds.map_batches(read_units, batch_size=1, batch_format="pyarrow", zero_copy_batch=True,
                            fn_kwargs={"source": source, "only_rows": only_rows})
        for stage in stages:
            ds = add_stage(ds, stage, f"{self.run_token}:{self.stages.index(stage)}")
        return ds

    def run(self, units: list[Unit], sink: Sink, on_record: Callable[[PartRecord], None],
            source: InputSource | CheckpointSource | None = None, stages: list[Stage] | None = None,
            only_rows: dict[int, list[int]] | None = None) -> None:
        """Stream ``units`` from ``source`` (default: the input) through ``stages`` (default: all)
        into ``sink``, reporting each part."""
        source = source or InputSource(self.input_spec)
        if isinstance(sink, ShardSink):
            sink = replace(sink, feature_columns=feature_columns(self.stages), score_columns=score_columns(self.stages))
        stages = self.stages if stages is None else stages
        ds = self._dataset(units, source, stages, only_rows).map_batches(
            _SINKS[type(sink)], batch_size=None, batch_format="pyarrow", fn_kwargs={"sink": sink})
        for record in _records(ds):
            on_record(record)


def _records(ds) -> Iterator[PartRecord]:
    with user_errors_unwrapped():
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            for row in batch.to_pylist():
                yield PartRecord.from_row(row)


@contextlib.contextmanager
def user_errors_unwrapped() -> Iterator[None]:
    """Re-raise a worker's :class:`UserError` (e.g. an unreadable input file) as itself, so the
    CLI prints its one line instead of Ray's wrapped traceback."""
    try:
        yield
    except UserError:
        raise
    except Exception as err:
        # Ray pickles a worker's exception without its __cause__ chain; the text keeps it.
        found = _WORKER_USER_ERROR.search(str(err))
        if found:
            raise UserError(found.group(1).strip()) from None
        raise


_WORKER_USER_ERROR = re.compile(r"curate\.errors\.\w*Error: (.+)")
