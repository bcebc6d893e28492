"""The stage contract (DESIGN.md, Stages), in the spirit of NeMo Curator's ``ProcessingStage``
and datatrove's ``PipelineStep``.

* ``setup()`` loads models once per worker/actor, never per batch.
* ``process(batch)`` takes a whole Arrow table of *live* rows and returns it with this
  stage's columns added (vectorised; no per-row Python in hot paths).
* A :class:`Filter` splits scoring from deciding ("score once, filter many", DataComp):
  ``process`` adds score columns, ``decide`` turns them into a keep mask and a reason per
  dropped row. The engine turns every drop into a ledger row; no row is ever lost.
* A :class:`GlobalFilter` needs the whole dataset first: ``observe`` summarises a batch,
  ``aggregate`` folds the summaries into a state table persisted under ``state/``, and
  ``load_state`` hands it to every worker before ``process``/``decide`` run.
* Each stage's ``Params`` (a pydantic model) is its YAML schema; unknown keys are errors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict


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
    #: Cheap and deterministic: may be replayed by a later global stage's observe pass.
    replayable: ClassVar[bool] = True

    def __init__(self, params: StageParams, name: str | None = None):
        self.params = params
        self.name = name or self.kind

    @property
    def resources(self) -> Resources:
        return Resources()

    def bind(self, context: RunContext) -> None:  # noqa: B027  (an optional hook)
        """Take run-wide settings (output image format, served base URL), on the driver."""

    def setup(self) -> None:  # noqa: B027  (an optional hook: most stages load nothing)
        """Load models or open resources; called once per worker before the first batch."""

    @abstractmethod
    def process(self, batch: pa.Table) -> pa.Table:
        """Return ``batch`` with this stage's columns added (same rows, same order)."""


class Filter(Stage):
    """A stage that may drop rows, each with a reason."""

    @abstractmethod
    def decide(self, scored: pa.Table) -> Decision:
        """Keep mask and reasons from the columns ``process`` added."""


class GlobalFilter(Filter):
    """A two-phase filter: observe the whole input, aggregate, then decide per row."""

    @abstractmethod
    def observe(self, batch: pa.Table) -> pa.Table:
        """A small summary of ``batch`` (live rows reaching this stage)."""

    @abstractmethod
    def aggregate(self, summaries: Iterable[pa.Table]) -> pa.Table:
        """Fold all summaries into the state table that ``load_state`` receives."""

    @abstractmethod
    def load_state(self, state: pa.Table) -> None:
        """Receive the aggregated state before ``process``."""


def append_columns(batch: pa.Table, columns: dict[str, pa.Array]) -> pa.Table:
    """Add or replace columns on ``batch``."""
    for name, values in columns.items():
        index = batch.schema.get_field_index(name)
        batch = batch.set_column(index, name, values) if index >= 0 else batch.append_column(name, values)
    return batch
