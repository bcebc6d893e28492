"""The stage contract (DESIGN.md, Stages), in the spirit of NeMo Curator's ``ProcessingStage``
and datatrove's ``PipelineStep``.

* ``setup_on_node()`` runs once per node before any worker of the stage there (fetch weights into
  a node-local cache); ``setup()`` loads models once per worker/actor, never per batch;
  ``teardown()`` releases what ``setup`` took. A stage that overrides ``setup`` runs in a Ray actor
  pool (it holds something worth keeping); a stateless one runs as tasks.
* ``process(batch)`` takes a whole Arrow table of *live* rows and returns it with this
  stage's columns added (vectorised; no per-row Python in hot paths).
* A :class:`Filter` splits scoring from deciding ("score once, filter many", DataComp):
  ``process`` adds score columns, ``decide`` turns them into a keep mask and a reason per
  dropped row. The engine turns every drop into a ledger row; no row is ever lost.
* A :class:`GlobalFilter` needs the whole dataset first (see :mod:`curate.engine.global_phase`):
  ``observe`` summarises the live rows of each work unit (written under
  ``state/<stage>/observed/``), the engine hash-partitions the summaries by ``key`` on the
  cluster, ``reduce`` turns each partition into verdicts keyed by (unit, row), and in phase two
  each task joins its own unit's verdicts onto its rows before ``process``/``decide``. Nothing
  proportional to the input reaches the driver. A :class:`BroadcastFilter` instead reduces to a
  state small by nature (vocabulary or entry counts), capped at ``max_state_bytes`` and handed
  to every worker by ``load_state``.
* ``resources`` are data: the stage's ``default_resources``, overridden per stage in YAML.
* ``expand()`` may split a stage into sub-stages each sized on its own (CPU decode -> GPU
  inference actors -> CPU scoring); the engine runs the sub-stages, the ledger names the stage.
* Columns have roles (``column_roles``): ``score`` (the default: small, into the sample JSON
  and parquet; numeric ones get a histogram per unit, drawn in the report with the stage's
  ``thresholds()``), ``key`` (an identifier such as a hash: into the JSON and parquet, never
  plotted), ``heavy`` (bytes; released when the row is dropped) and ``feature``
  (embeddings: per-shard float16 files, never the sample JSON; released when dropped).
* A stage that may fail transiently names its retryable reasons (``retryable_reasons``, a
  regex), which ``curate run --retry-failed`` re-attempts.
* Each stage's ``Params`` (a pydantic model) is its YAML schema; unknown keys are errors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields, replace
from typing import ClassVar, Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict

from curate.schema import HEAVY, KEYS


class StageParams(BaseModel):
    """Base of every stage's parameter schema: strict about unknown keys."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Resources:
    """What one worker of a stage needs; the engine uses it to choose tasks or an actor pool."""

    cpus: float = 1.0
    gpus: float = 0.0
    memory_mb: int = 0
    batch_size: int | None = None  # None: the whole block (one work unit part) at once
    actors: tuple[int, int] | None = None  # actor pool size (min, max); None: from 1 up to what fits, for a stage in actors

    def overridden(self, overrides: dict) -> Resources:
        """These resources with the YAML ``resources:`` keys applied (``actors`` as [min, max])."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown resource {unknown[0]!r} (valid: {', '.join(sorted(known))})")
        values = dict(overrides)
        if values.get("actors") is not None:
            values["actors"] = tuple(values["actors"])
        return replace(self, **values)


ColumnRole = Literal["score", "key", "heavy", "feature"]


@dataclass(frozen=True)
class ImageOutput:
    """How downloaded images are resized and encoded (the spec's ``output``)."""

    image_size: int = 256
    resize_mode: str = "border"
    resize_only_if_bigger: bool = False
    image_format: str = "jpg"
    encode_quality: int = 95


@dataclass(frozen=True)
class RunContext:
    """What a run tells every stage before the stages are shipped to workers."""

    image_output: ImageOutput = ImageOutput()
    base_url: str | None = None  # where relative URLs resolve (``input.serve``)


@dataclass(frozen=True)
class Decision:
    """A filter's verdict on a batch: ``keep[i]`` is False for a dropped row, whose
    ``reason[i]`` (short, snake_case, counted in the funnel) and ``detail[i]`` (free text,
    e.g. the error message or the surviving duplicate's uid) go to the ledger."""

    keep: pa.BooleanArray
    reason: pa.Array
    detail: pa.Array | None = None


@dataclass(frozen=True)
class Threshold:
    """A filter's cut on a score column: rows are kept ``above`` (or ``below``) ``value``."""

    column: str
    value: float
    keep: Literal["above", "below"]


@dataclass(frozen=True)
class Rule:
    """One reason to drop a row: where ``fails`` is true, the row is dropped with ``reason``
    and the detail ``<label>=<value>``."""

    fails: pa.Array | pa.ChunkedArray
    reason: str
    label: str
    value: pa.Array | pa.ChunkedArray


def status_decision(scored: pa.Table, status: str, error: str) -> Decision:
    """The decision of a filter whose ``process`` wrote a reason column ``status`` (null: keep)
    and its detail ``error`` (``download_status``, ``image_status``)."""
    reason = scored.column(status).combine_chunks()
    return Decision(keep=pc.is_null(reason), reason=reason, detail=scored.column(error).combine_chunks())


def first_failure(rules: list[Rule]) -> Decision:
    """Vectorised decision from ordered rules: each row is dropped for the first rule it fails."""
    conditions = pc.make_struct(*[pc.fill_null(rule.fails, False) for rule in rules])
    null = pa.scalar(None, pa.string())
    reason = pc.case_when(conditions, *[rule.reason for rule in rules], null)
    detail = pc.case_when(
        conditions, *[pc.binary_join_element_wise(f"{r.label}=", pc.cast(r.value, pa.string()), "") for r in rules], null
    )
    reason, detail = _combined(reason), _combined(detail)
    return Decision(keep=pc.is_null(reason), reason=reason, detail=detail)


def _combined(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


class Stage(ABC):
    """One step of a pipeline. Subclasses set ``kind`` (the YAML ``stage:`` name)."""

    kind: ClassVar[str]
    Params: ClassVar[type[StageParams]] = StageParams
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ()
    #: Roles of written columns that are not ``score`` (see the module docstring).
    column_roles: ClassVar[dict[str, ColumnRole]] = {}
    #: Cheap and deterministic: may be replayed by a later global stage's observe pass. A global
    #: stage after a stage that is not replayable starts a new segment (its input is checkpointed).
    replayable: ClassVar[bool] = True
    #: Transient columns this stage uses up (a model part consumes its preprocessing part's pixels
    #: and tokens): the engine removes them from the block after the stage, dropped rows included.
    consumes: ClassVar[tuple[str, ...]] = ()
    #: Reasons (a regex over the ledger's reason) worth re-attempting with ``--retry-failed``.
    retryable_reasons: ClassVar[str | None] = None
    default_resources: ClassVar[Resources] = Resources()
    #: Cheap setup, I/O-bound work: tasks unless YAML asks for actors (download: 119.5 img/s on
    #: tasks vs 72.2 in an actor pool on 2 cores, benchmarks/stage_operators.py).
    runs_as_tasks: ClassVar[bool] = False
    #: Columns released when this stage drops a row: every heavy and feature column of the
    #: pipeline (set by the engine from all stages' ``column_roles``; see :func:`released_columns`).
    released: tuple[str, ...] = HEAVY

    def __init__(self, params: StageParams, name: str | None = None):
        self.params = params
        self.name = name or self.kind
        self.resource_overrides: dict = {}

    @property
    def resources(self) -> Resources:
        """What one worker needs: the stage's defaults with the YAML overrides applied."""
        return self.default_resources.overridden(self.resource_overrides)

    @property
    def has_setup(self) -> bool:
        """True when the stage loads something in ``setup`` (it then runs in an actor pool)."""
        return type(self).setup is not Stage.setup

    def bind(self, context: RunContext) -> None:  # noqa: B027  (an optional hook)
        """Take run-wide settings (output image format, served base URL), on the driver."""

    def expand(self) -> list[Stage]:
        """The sub-stages the engine runs for this stage (default: itself)."""
        return [self]

    def setup_on_node(self) -> None:  # noqa: B027  (an optional hook)
        """Once per node, before the node's first worker of this stage sets up (fetch weights)."""

    def setup(self) -> None:  # noqa: B027  (an optional hook: most stages load nothing)
        """Load models or open resources; called once per worker before the first batch."""

    def teardown(self) -> None:  # noqa: B027  (an optional hook)
        """Release what ``setup`` took; called when the worker is done with the stage."""

    def content_record(self) -> dict | None:
        """What identifies the content the stage reads besides its parameters (a model's weights, a
        word list, metadata), e.g. ``{"model": id, "sha256": hex}``; recorded in the manifest, and
        a resume whose stages read different content refuses as a changed spec does. Called on
        the driver after ``bind``; None: nothing beyond the parameters."""
        return None

    def thresholds(self) -> list[Threshold]:
        """The numeric thresholds this stage applies to its score columns (drawn on their
        histograms in the report); called on the driver after ``bind``."""
        return []

    def data_card(self, run_root: str, shard_parquets: list[str]) -> tuple[str, dict] | None:
        """A data card for the run's ``stats/`` (file name, JSON), made on the driver when the run
        completes (``shard_parquets``: the kept samples' metadata); None: the stage has none."""
        return None

    @abstractmethod
    def process(self, batch: pa.Table) -> pa.Table:
        """Return ``batch`` with this stage's columns added (same rows, same order)."""


class Filter(Stage):
    """A stage that may drop rows, each with a reason."""

    @abstractmethod
    def decide(self, scored: pa.Table) -> Decision:
        """Keep mask and reasons from the columns ``process`` added."""


class GlobalFilter(Filter):
    """A filter that needs the whole input: observe per unit, reduce per key partition on the
    cluster, then decide per row from the verdicts of its own unit."""

    #: Columns of the ``observe`` summary the engine hash-partitions by: every summary row with
    #: one key value reaches the same ``reduce`` call.
    key: ClassVar[tuple[str, ...]]
    #: Verdict columns ``reduce`` emits (besides ``_unit`` and ``_row``); the engine joins them
    #: onto the rows of each unit (null where a row has no verdict) before ``process``.
    verdict_types: ClassVar[dict[str, pa.DataType]] = {}

    @abstractmethod
    def observe(self, batch: pa.Table) -> pa.Table:
        """A small summary of ``batch`` (live rows reaching this stage): the ``key`` columns and
        whatever ``reduce`` needs; ``_unit`` and ``_row`` are required by verdict stages."""

    @abstractmethod
    def reduce(self, partition: pa.Table) -> pa.Table:
        """All summary rows of some keys -> verdict rows (``_unit``, ``_row`` and
        ``verdict_types``) for the rows that have one (a :class:`BroadcastFilter`: state rows)."""

    #: Where phase two finds the verdicts (set by the engine once the reduce is done).
    verdict_root: str | None = None

    def process(self, batch: pa.Table) -> pa.Table:
        """``batch`` with this unit's verdict columns joined on (null where a row has none)."""
        from curate.engine.global_phase import join_verdicts  # the engine's storage layout

        return join_verdicts(batch, self)


class BroadcastFilter(GlobalFilter):
    """A global filter whose reduced state is small by nature (vocabulary, entry counts): the
    concatenated ``reduce`` outputs are checked against ``max_state_bytes`` and given to every
    worker by ``load_state``."""

    max_state_bytes: ClassVar[int] = 256 << 20

    @abstractmethod
    def load_state(self, state: pa.Table) -> None:
        """Receive the reduced state before ``process``."""

    @abstractmethod
    def process(self, batch: pa.Table) -> pa.Table:
        """Score ``batch`` against the loaded state."""


def released_columns(stages: list[Stage]) -> tuple[str, ...]:
    """The heavy and feature columns of a pipeline: released when a row is dropped."""
    declared = [c for s in stages for c, role in s.column_roles.items() if role in ("heavy", "feature")]
    return tuple(dict.fromkeys([*HEAVY, *declared]))


def score_columns(stages: list[Stage]) -> tuple[str, ...]:
    """The score-role columns the stages write (the numeric ones get histograms)."""
    return tuple(dict.fromkeys(c for s in stages for c in s.writes
                               if s.column_roles.get(c, "key" if c in KEYS else "score") == "score"))


def feature_columns(stages: list[Stage]) -> tuple[str, ...]:
    """The feature columns of a pipeline: written to per-shard float16 files, never the sample JSON."""
    return tuple(dict.fromkeys(c for s in stages for c, role in s.column_roles.items() if role == "feature"))


def append_columns(batch: pa.Table, columns: dict[str, pa.Array]) -> pa.Table:
    """Add or replace columns on ``batch``."""
    for name, values in columns.items():
        index = batch.schema.get_field_index(name)
        batch = batch.set_column(index, name, values) if index >= 0 else batch.append_column(name, values)
    return batch
