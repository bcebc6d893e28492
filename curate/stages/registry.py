"""Stage kind (the YAML ``stage:`` name) -> stage class, imported only when a spec uses it.

Built-in stages are a table of ``"module:Class"`` strings, so listing the kinds (an unknown
stage's error, ``curate`` help) imports nothing and a caption-only run never imports the
families it does not use (download pulls OpenCV, PIL and aiohttp; model stages pull torch).
Third-party packages add stages through the entry-point group ``curate.stages``, e.g. in their
``pyproject.toml``::

    [project.entry-points."curate.stages"]
    my_filter = "my_package.stages:MyFilter"

The entry point's name is the kind; it may not shadow a built-in stage. ``@register`` makes a
class defined at run time (a notebook, a test) available under its kind in this process.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from importlib.metadata import entry_points

from curate.errors import UserError
from curate.stages.base import Stage

ENTRY_POINT_GROUP = "curate.stages"

#: The built-in stages, by kind.
BUILTIN: dict[str, str] = {
    "caption_rules": "curate.stages.text:CaptionRulesFilter",
    "datacomp_caption": "curate.stages.text:DataCompCaptionFilter",
    "laion_caption": "curate.stages.text:LaionCaptionFilter",
    "url_dedup": "curate.stages.dedup:UrlDedupFilter",
    "download": "curate.stages.download:DownloadStage",
    "image_checks": "curate.stages.image:ImageChecksFilter",
    "datacomp_image": "curate.stages.image:DataCompImageFilter",
    "laion_image": "curate.stages.image:LaionImageFilter",
    "image_exact_dedup": "curate.stages.image_dedup:ImageExactDedupFilter",
    "align_caption": "curate.stages.align:AlignCaptionFilter",
    "align_frequency": "curate.stages.align:AlignFrequencyFilter",
    "rare_words": "curate.stages.rare_words:RareWordsFilter",
    "cc3m_caption": "curate.stages.cc3m:Cc3mCaptionFilter",
    "cc12m_caption": "curate.stages.cc12m:Cc12mCaptionFilter",
    "cc3m_image": "curate.stages.image:Cc3mImageFilter",
    "cc12m_image": "curate.stages.image:Cc12mImageFilter",
    "caption_blocklist": "curate.stages.blocklist:CaptionBlocklistFilter",
    "language_id": "curate.stages.language:LanguageIdFilter",
    "metaclip_match": "curate.stages.metaclip:MetaClipMatchStage",
    "metaclip_balance": "curate.stages.metaclip_balance:MetaClipBalanceFilter",
    "concept_balance": "curate.stages.concept_balance:ConceptBalanceFilter",
    "clip_score": "curate.stages.clip:ClipScoreFilter",
    "top_fraction": "curate.stages.top_fraction:TopFractionFilter",
    "clip_nsfw": "curate.stages.safety:ClipNsfwFilter",
    "open_nsfw": "curate.stages.safety:OpenNsfwFilter",
    "aesthetic": "curate.stages.aesthetic:AestheticFilter",
    "watermark": "curate.stages.watermark:WatermarkFilter",
}

_REGISTERED: dict[str, type[Stage]] = {}
_TARGETS: dict[str, str] | None = None  # built-in + entry points, read once per process


def register(cls: type[Stage]) -> type[Stage]:
    """Class decorator: make ``cls`` available under ``cls.kind`` in this process."""
    target = _targets().get(cls.kind)
    if target is not None and target != f"{cls.__module__}:{cls.__qualname__}":
        raise ValueError(f"stage kind {cls.kind!r} is already {target}")
    if _REGISTERED.get(cls.kind, cls) is not cls:
        raise ValueError(f"stage kind {cls.kind!r} registered twice")
    _REGISTERED[cls.kind] = cls
    return cls


class StageTable(Mapping):
    """Every known kind -> its class; a class is imported when it is first looked up."""

    def __getitem__(self, kind: str) -> type[Stage]:
        return stage_class(kind)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted({*_targets(), *_REGISTERED}))

    def __len__(self) -> int:
        return len({*_targets(), *_REGISTERED})

    def __contains__(self, kind: object) -> bool:
        return kind in _targets() or kind in _REGISTERED


def stage_kinds() -> StageTable:
    """All known stage kinds (sorted when iterated), without importing any stage module."""
    return StageTable()


def stage_class(kind: str) -> type[Stage]:
    """The class of ``kind``, importing its module; KeyError for an unknown kind."""
    if kind in _REGISTERED:
        return _REGISTERED[kind]
    target = _targets()[kind]
    module_name, _, qualname = target.partition(":")
    try:
        obj = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        if kind in BUILTIN:
            raise  # a broken built-in is a bug
        raise UserError(f"stage {kind!r} ({ENTRY_POINT_GROUP} entry point {target}) cannot be loaded: {err}") from None
    if not (isinstance(obj, type) and issubclass(obj, Stage)) or obj.kind != kind:
        raise UserError(f"stage {kind!r} ({ENTRY_POINT_GROUP} entry point {target}) "
                        f"must be a curate.stages.base.Stage subclass with kind = {kind!r}")
    return obj


def _targets() -> dict[str, str]:
    global _TARGETS
    if _TARGETS is None:
        targets = dict(BUILTIN)
        for point in entry_points(group=ENTRY_POINT_GROUP):
            if point.name in BUILTIN:
                dist = point.dist.name if point.dist is not None else "an installed package"
                raise UserError(f"{dist} declares a {ENTRY_POINT_GROUP} entry point {point.name!r}, "
                                "the name of a built-in stage (rename it there)")
            targets[point.name] = point.value
        _TARGETS = targets
    return _TARGETS
