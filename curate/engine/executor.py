"""One Ray Data streaming pipeline over all pending work units.

Every row carries its unit id; dropped rows travel on as ledger rows; writer tasks write each
unit's part under ``_tmp/`` and report a :class:`PartRecord`. The driver knows each unit's
input size, so a unit is complete exactly when its parts account for all of its rows; only
then are its files renamed into place and its marker written (conservation is both the
resume rule and a check).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.config import InputSpec
from curate.engine.blocks import split_alive
from curate.engine.operators import add_stage, ready
from curate.errors import UserError
from curate.io.readers import Unit, read_unit
from curate.io.writers import PartRecord, write_unit_part
from curate.schema import ROW, UNIT
from curate.stages.base import GlobalFilter, Stage


def _read_block(batch: pa.Table, input_spec: InputSpec, only_rows: dict[int, list[int]] | None) -> pa.Table:
    tables = []
    for encoded in batch.column("unit").to_pylist():
        unit = Unit(**json.loads(encoded))
        table = read_unit(unit, input_spec)
        if only_rows is not None:
            table = table.filter(pc.is_in(table.column(ROW), pa.array(only_rows[unit.index], pa.int32())))
        tables.append(table)
    return pa.concat_tables(tables, promote_options="permissive")


def _observe_block(block: pa.Table, stage: GlobalFilter, token: str) -> pa.Table:
    alive, _ = split_alive(block)
    return ready(stage, token).observe(alive)


def _write_block(block: pa.Table, tmp_root: str, samples_per_shard: int, image_ext: str, tag: str) -> pa.Table:
    units = block.column(UNIT).to_numpy()
    records = []
    for unit in np.unique(units):
        part = block.filter(pa.array(units == unit))
        records.append(write_unit_part(part, Path(tmp_root), samples_per_shard, image_ext, tag).to_row())
    return pa.Table.from_pylist(records)


class Executor:
    """Builds and runs the Ray Data plan for a list of stages."""

    def __init__(self, input_spec: InputSpec, stages: list[Stage], run_token: str):
        self.input_spec = input_spec
        self.stages = stages
        self.run_token = run_token

    def _dataset(self, units: list[Unit], stages: list[Stage], only_rows: dict[int, list[int]] | None = None):
        import ray
        from ray.data import DataContext

        # Ray Data reserves resources per operator so that actor pools (GPU stages) are not
        # starved; a plan of tasks only gains nothing from it and loses ~20% of its CPU slots
        # to the gaps it leaves (measured with benchmarks/parallel_efficiency.py: 78% -> 93% busy).
        DataContext.get_current().op_resource_reservation_enabled = any(s.resources.gpus > 0 for s in stages)
        items = [{"unit": json.dumps(asdict(u))} for u in units]
        ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
        ds = ds.map_batches(_read_block, batch_size=1, batch_format="pyarrow", zero_copy_batch=True,
                            fn_kwargs={"input_spec": self.input_spec, "only_rows": only_rows})
        for index, stage in enumerate(stages):
            ds = add_stage(ds, stage, f"{self.run_token}:{index}")
        return ds

    def observe(self, units: list[Unit], stage: GlobalFilter, prefix: list[Stage]) -> pa.Table:
        """Phase one of a global stage: run the (replayable) prefix, summarise, aggregate."""
        ds = self._dataset(units, prefix).map_batches(
            _observe_block, batch_size=None, batch_format="pyarrow",
            fn_kwargs={"stage": stage, "token": f"{self.run_token}:observe:{stage.name}"})
        with user_errors_unwrapped():
            return stage.aggregate(list(ds.iter_batches(batch_size=None, batch_format="pyarrow")))

    def run(self, units: list[Unit], tmp_root: Path, samples_per_shard: int, image_ext: str,
            on_record: Callable[[PartRecord], None], only_rows: dict[int, list[int]] | None = None, tag: str = "") -> None:
        """Stream every unit through the stages and the writer, reporting each part."""
        ds = self._dataset(units, self.stages, only_rows).map_batches(
            _write_block, batch_size=None, batch_format="pyarrow",
            fn_kwargs={"tmp_root": str(tmp_root), "samples_per_shard": samples_per_shard, "image_ext": image_ext, "tag": tag})
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
