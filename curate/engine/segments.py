"""Segments: a global stage after a stage that must not run twice starts a new segment (issue 6 §2).

A global stage observes the whole input before any row is decided. Where only cheap,
deterministic stages precede it in its segment, its observe pass replays them. Where a stage
that must not run twice precedes it (``download``, a model), the rows reaching it are
checkpointed per unit (image bytes included, under ``checkpoints/<segment>/``), observed from
the checkpoint, and the next segment reads the checkpoint instead of recomputing. Resume is per
segment: a unit checkpointed before a kill is never downloaded again. Checkpoints are deleted
when the run completes, unless ``--keep-checkpoints``.
"""

from __future__ import annotations

from dataclasses import dataclass

from curate import storage
from curate.engine.partstore import PartStore
from curate.stages.base import GlobalFilter, Stage

CHECKPOINTS = "checkpoints"


@dataclass
class Segment:
    index: int
    stages: list[Stage]
    reads: PartStore | None  # the checkpoint it reads (None: the input)
    writes: PartStore | None  # the checkpoint it writes (None: the shards; the last segment)

    def describe(self) -> str:
        return ", ".join(stage.name for stage in self.stages) or "read"


def split_stages(stages: list[Stage]) -> list[list[Stage]]:
    """Stages grouped into segments: a new one starts at a global stage that would otherwise
    have to replay a stage that is not replayable."""
    segments: list[list[Stage]] = [[]]
    for stage in stages:
        if isinstance(stage, GlobalFilter) and any(not earlier.replayable for earlier in segments[-1]):
            segments.append([])
        segments[-1].append(stage)
    return segments


def plan_segments(stages: list[Stage], run_root: str) -> list[Segment]:
    groups = split_stages(stages)
    stores = [PartStore(storage.join(str(run_root), CHECKPOINTS, f"{index:02d}")) for index in range(1, len(groups))]
    return [Segment(index, group, stores[index - 1] if index else None, stores[index] if index < len(stores) else None)
            for index, group in enumerate(groups)]


def delete_checkpoints(run_root: str) -> None:
    storage.delete_dir(storage.join(str(run_root), CHECKPOINTS))
