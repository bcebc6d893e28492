"""Name -> stage class lookup, so YAML ``stage: laion_caption`` finds its class and schema."""

from __future__ import annotations

from curate.stages.base import Stage

_STAGES: dict[str, type[Stage]] = {}


def register(cls: type[Stage]) -> type[Stage]:
    """Class decorator: make ``cls`` available under ``cls.kind``."""
    if cls.kind in _STAGES and _STAGES[cls.kind] is not cls:
        raise ValueError(f"stage kind {cls.kind!r} registered twice")
    _STAGES[cls.kind] = cls
    return cls


def stage_kinds() -> dict[str, type[Stage]]:
    """All registered stages, importing the built-in families once."""
    from curate.stages import dedup, download, image, text  # noqa: F401  (registration side effect)

    return dict(sorted(_STAGES.items()))
