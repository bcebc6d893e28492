"""Planning: input files -> work units, in two steps so that nothing on the driver grows with the input.

:func:`plan_inputs` runs on the driver before Ray starts and checks what is cheap to check: files
exist and are not empty, formats, headers and columns (first lines, parquet footers); it cuts
line-based files into byte chunks. :meth:`InputPlan.units` then counts rows where that needs
reading: csv/tsv/jsonl chunks (:mod:`curate.io.plan_lines`) and tar member lists, as tasks of the
given runner (Ray tasks in ``curate run``). Parquet row counts come from the footers.
"""

from __future__ import annotations

from dataclasses import dataclass

from curate import storage
from curate.config import InputSpec
from curate.errors import InputError
from curate.io.plan_lines import CHUNK_BYTES, LineFile, open_line_file, plan_line_files
from curate.io.plan_tasks import TaskRunner, run_here
from curate.io.read_common import Unit
from curate.io.read_parquet import plan_parquet
from curate.io.read_tar import tar_samples


@dataclass
class _Counted:
    """A file whose units are known on the driver (parquet: its footer), or a tar to count."""

    path: str
    fmt: str
    ranges: list[tuple] | None = None  # None: a tar, counted by a task


@dataclass
class InputPlan:
    spec: InputSpec
    files: list[LineFile | _Counted]

    @property
    def paths(self) -> list[str]:
        return [f.path for f in self.files]

    def units(self, run_tasks: TaskRunner = run_here) -> list[Unit]:
        """Every file's units, in file order; rows counted by ``run_tasks``."""
        per_unit = self.spec.rows_per_unit
        lines = [f for f in self.files if isinstance(f, LineFile)]
        tars = [f for f in self.files if isinstance(f, _Counted) and f.ranges is None]
        ranges = dict(zip((f.path for f in lines), plan_line_files(lines, per_unit, run_tasks), strict=True))
        for tar, samples in zip(tars, run_tasks([(tar_samples, (f.path,)) for f in tars]), strict=True):
            ranges[tar.path] = [(start, min(samples, start + per_unit), 0, 0) for start in range(0, samples, per_unit)]
        units: list[Unit] = []
        for file in self.files:
            known = file.ranges if isinstance(file, _Counted) and file.ranges is not None else ranges[file.path]
            for start, stop, byte_start, byte_stop in known:
                units.append(Unit(len(units), file.path, file.fmt, start, stop, byte_start, byte_stop))
        if not units:
            raise InputError("input.path: the input files hold no rows")
        return units


def plan_inputs(spec: InputSpec, chunk_bytes: int = CHUNK_BYTES) -> InputPlan:
    """Check every input file on the driver; cut line-based ones into chunks of ``chunk_bytes``."""
    from curate.io.readers import expand_paths, format_of  # readers.plan_units calls this module

    files: list[LineFile | _Counted] = []
    for path in expand_paths(spec):
        fmt = spec.format if spec.format != "auto" else format_of(path)
        if fmt is None:
            raise InputError(f"{path}: cannot tell the format from the extension (set input.format)")
        if storage.file_size(path) == 0:
            raise InputError(f"{path}: file is empty (remove it from input.path)")
        if fmt not in ("csv", "tsv") and (not spec.header or spec.columns is not None):
            raise InputError(f"{path}: input.header / input.columns apply to csv and tsv files only "
                             f"(this one is {fmt}; list it in another run, or drop those settings)")
        if fmt == "parquet":
            files.append(_Counted(path, fmt, list(plan_parquet(path, fmt, spec))))
        elif fmt == "webdataset":
            files.append(_Counted(path, fmt))
        else:
            files.append(open_line_file(path, fmt, spec, chunk_bytes))
    if spec.features:
        from curate.io.features import check_feature_files

        check_feature_files([f.path for f in files], spec.features)
    return InputPlan(spec, files)
