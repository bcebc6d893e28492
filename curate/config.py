"""YAML pipeline spec -> validated, typed objects.

Every mistake becomes a :class:`ConfigError` naming the file, the key and the fix; the
same spec is reachable from YAML, from ``--set key=value`` CLI overrides and from Python
(``load_spec(dict_or_path, overrides=...)``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from curate.errors import ConfigError
from curate.stages.base import Stage, StageParams

#: The ledger's stage name of the input reader (curate.io.readers.READ_STAGE).
RESERVED_STAGE_NAME = "read"


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SynthSpec(_Strict):
    """Make the synthetic corpus at ``input.serve`` when it is missing (quickstart)."""

    n: int = Field(3000, gt=0, le=10_000_000, description="samples; one image file each (10M: ~100 GB of files)")
    seed: int = 0


def _column_name(value: Any) -> Any:
    """Headerless files name columns by position: accept ``url_column: 1`` for ``'1'``."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class InputSpec(_Strict):
    path: str | list[str] = Field(description="file, directory, glob, or a list of them")
    format: Literal["auto", "parquet", "csv", "tsv", "jsonl", "webdataset"] = "auto"
    url_column: str = "url"
    caption_column: str = "caption"
    keep_columns: list[str] = Field(default_factory=list)
    uid_column: str | None = Field(
        None, description="take uids from this column (32 hex chars, e.g. DataComp's 'uid') instead of hashing")
    header: bool = Field(True, description="csv/tsv: the first line names the columns; false for a headerless file "
                                           "(Conceptual Captions' caption<TAB>url), whose columns are input.columns")
    columns: list[str] | None = Field(
        None, description="names of a headerless file's columns by position, e.g. [caption, url]; "
                          "without it they are named '0', '1', ...")
    # A unit is one Ray block that one worker reads and holds: 1M LAION rows are ~230 MB of Arrow
    # (measured on laion-10k: 98-char URLs, 58-char captions, plus uid and bookkeeping), and the
    # unit is also what a resume redoes.
    rows_per_unit: int = Field(10_000, gt=0, le=1_000_000, description="rows per work unit (at most 1M, one worker's block)")
    # The same default as the download stage's body cap: a tar member is held in memory whole,
    # so this bounds a reader's memory per sample (a 1 MB .tar.gz can hold a 1 GiB member).
    max_member_bytes: int = Field(20_000_000, gt=0, le=1_000_000_000,
                                  description="tar inputs: a larger member makes its sample a too_large ledger row")
    serve: str | None = Field(None, description="serve this directory on loopback HTTP; relative URLs resolve to it")
    synth: SynthSpec | None = None
    features: list[str] = Field(default_factory=list, description=(
        "feature columns to read from <file stem>.<name>.npy beside each input file (an earlier run's shards: "
        "clip_image_embedding, clip_text_embedding), so a stage that finds its embeddings does not recompute them"))

    @field_validator("url_column", "caption_column", "uid_column", mode="before")
    @classmethod
    def _name_by_position(cls, value: Any) -> Any:
        return _column_name(value)

    @field_validator("keep_columns", "columns", mode="before")
    @classmethod
    def _names_in_list(cls, value: Any) -> Any:
        return [_column_name(v) for v in value] if isinstance(value, list) else value

    @field_validator("columns")
    @classmethod
    def _columns_need_headerless(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if value is not None and info.data.get("header", True):
            raise ValueError("only for a headerless file: set input.header: false too")
        if value is not None and len(set(value)) != len(value):
            raise ValueError("names must be unique")
        return value


class OutputSpec(_Strict):
    path: str | None = None
    # Shards of 10k samples (img2dataset's default) are ~100-500 MB; 1M samples of 256 px JPEGs
    # is a ~20 GB tar, past what a trainer's loader shuffles well.
    samples_per_shard: int = Field(10_000, gt=0, le=1_000_000, description="samples per shard (at most 1M)")
    # 4096 px covers every CLIP/LLaVA-style input size in use (224-1024, high-res tiling up to
    # ~3.6k); 20000 px took one worker to 3 GB (issue 5).
    image_size: int = Field(256, gt=0, le=4096, description="output side in pixels (at most 4096)")
    resize_mode: Literal["no", "keep_ratio", "keep_ratio_largest", "center_crop", "border"] = "border"
    resize_only_if_bigger: bool = False
    image_format: Literal["jpg", "png", "webp"] = "jpg"
    encode_quality: int = Field(95, ge=0, le=100)


class ResourcesSpec(_Strict):
    # Embedded Ray on one machine: 1024 is above any single host's logical CPUs today.
    cpus: int | None = Field(None, gt=0, le=1024, description="CPUs of the embedded Ray (default: all; at most 1024)")
    # 4 TiB: above any single host's memory; Ray takes the value in bytes.
    object_store_memory_mb: int | None = Field(None, ge=100, le=4 << 20,
                                               description="object store of the embedded Ray, MB (100 MB to 4 TiB)")


class MetricsSpec(_Strict):
    """Live metrics through Ray's Prometheus export (:mod:`curate.stats.metrics`); how a run is
    watched, not what it computes, so not part of the spec's fingerprint."""

    enabled: bool = Field(True, description="record curate_* metrics (false: no metric is created at all)")
    export_port: int = Field(0, ge=0, le=65535, description=(
        "embedded Ray: its Prometheus export port on 127.0.0.1 (0: a free port, named in the "
        "service-discovery file); a cluster's own setting applies with --address"))


class StageResourcesSpec(_Strict):
    """A stage's ``resources:`` in YAML: overrides of its declared defaults (how it runs, not what
    it computes, so they are not part of the spec's fingerprint)."""

    cpus: float | None = Field(None, gt=0, le=1024, allow_inf_nan=False, description="CPUs per worker")
    gpus: float | None = Field(None, ge=0, le=64, allow_inf_nan=False, description="GPUs per worker (fractions share one)")
    memory_mb: int | None = Field(None, ge=0, description="memory per worker, MB (Ray schedules by it)")
    batch_size: int | None = Field(None, gt=0, le=10_000_000, description="rows per call of the stage")
    actors: tuple[int, int] | None = Field(None, description="actor pool size [min, max] of a stage that loads something")

    @field_validator("actors", mode="before")
    @classmethod
    def _pool_bounds(cls, value: Any) -> Any:
        bounds = list(value) if isinstance(value, list | tuple) else None
        if value is not None and not (bounds and len(bounds) == 2 and all(type(b) is int for b in bounds)
                                      and 1 <= bounds[0] <= bounds[1]):
            raise ValueError(f"must be [min, max], whole numbers with 1 <= min <= max, not {value!r}")
        return value


#: Keys of a stage entry that are not its parameters.
_STAGE_KEYS = ("stage", "name", "resources")


class StageSpec(_Strict):
    stage: str
    name: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    resources: dict[str, Any] | None = None  # checked by build_stages against StageResourcesSpec

    @model_validator(mode="before")
    @classmethod
    def _inline_params(cls, data: Any) -> Any:
        """Accept ``{stage: x, min_chars: 5}``: keys other than stage/name/resources are parameters."""
        if isinstance(data, dict):
            data = dict(data)
            params = dict(data.pop("params", {}) or {})
            for key in [k for k in data if k not in _STAGE_KEYS]:
                params[key] = data.pop(key)
            data["params"] = params
        return data


class PipelineSpec(_Strict):
    name: str = "pipeline"
    input: InputSpec
    stages: list[StageSpec] = Field(default_factory=list)
    output: OutputSpec = Field(default_factory=OutputSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    metrics: MetricsSpec = Field(default_factory=MetricsSpec)

    def fingerprint(self) -> str:
        """Hash of everything that decides the result (not where it goes or what runs it)."""
        body = self.model_dump(mode="json", exclude={"output": {"path"}, "resources": True, "metrics": True,
                                                     "stages": {"__all__": {"resources"}}})
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def load_spec(source: str | Path | dict, overrides: list[str] | None = None) -> tuple[PipelineSpec, list[Stage]]:
    """Parse, override and validate a pipeline; return the spec and its instantiated stages."""
    spec = parse_spec(source, overrides)
    return spec, build_stages(spec, spec_label(source))


def parse_spec(source: str | Path | dict, overrides: list[str] | None = None) -> PipelineSpec:
    """Parse, override and validate a pipeline's spec; its stages are built by :func:`build_stages`."""
    label = spec_label(source)
    raw = _read_yaml(Path(source)) if not isinstance(source, dict) else dict(source)
    for override in overrides or []:
        _apply_override(raw, override, label)
    try:
        return PipelineSpec.model_validate(raw)
    except ValidationError as err:
        raise _config_error(label, err, model=PipelineSpec) from None


def spec_label(source: str | Path | dict) -> str:
    """How errors name a spec: its path, or ``<dict>``."""
    return str(source) if not isinstance(source, dict) else "<dict>"


def build_stages(spec: PipelineSpec, label: str = "<spec>") -> list[Stage]:
    """Instantiate each stage, checking its parameters against its schema."""
    from curate.stages.registry import stage_kinds

    kinds = stage_kinds()
    stages: list[Stage] = []
    seen: set[str] = set()
    for index, entry in enumerate(spec.stages):
        key = f"stages[{index}]"
        if entry.stage not in kinds:
            raise ConfigError(label, f"{key}.stage", f"unknown stage {entry.stage!r}", f"valid: {', '.join(kinds)}")
        cls = kinds[entry.stage]
        try:
            params: StageParams = cls.Params.model_validate(entry.params)
        except ValidationError as err:
            raise _config_error(label, err, prefix=key, model=cls.Params) from None
        entry.params = params.model_dump(mode="json")  # resolved: defaults filled in (fingerprint, pipeline.yaml)
        stage = cls(params, name=entry.name)
        try:
            resources = StageResourcesSpec.model_validate(entry.resources or {})
        except ValidationError as err:
            raise _config_error(label, err, prefix=f"{key}.resources", model=StageResourcesSpec) from None
        stage.resource_overrides = resources.model_dump(exclude_none=True)
        _check_resources(stage, f"{key}.resources", label)
        if stage.name == RESERVED_STAGE_NAME:
            raise ConfigError(label, f"{key}.name", f"{stage.name!r} is the input reader's name in the ledger",
                              "give the stage another `name:`")
        if stage.name in seen:
            raise ConfigError(label, f"{key}.name", f"duplicate stage name {stage.name!r}", "give each a unique `name:`")
        seen.add(stage.name)
        stages.append(stage)
    _check_order(stages, spec, kinds, label)
    return stages


def _check_resources(stage: Stage, key: str, label: str) -> None:
    """What Ray would refuse later (or silently ignore), refused before it starts."""
    from curate.engine.operators import runs_in_actors

    resources = stage.resources
    if resources.gpus > 0 and resources.batch_size is None:
        raise ConfigError(label, key, f"{stage.kind} on GPUs needs a batch_size", "add batch_size, e.g. 256")
    if resources.actors is not None and not any(runs_in_actors(part) for part in stage.expand()):
        raise ConfigError(label, f"{key}.actors", f"{stage.kind} loads nothing, so it runs as tasks, not actors",
                          "remove actors; cpus sets what each task takes")


def _check_order(stages: list[Stage], spec: PipelineSpec, kinds: dict[str, type[Stage]], label: str) -> None:
    """Fail before Ray starts when a stage reads a column nothing upstream writes. (A global stage
    after one that must not run twice, a download, starts a new segment: curate.engine.segments.)"""
    from curate.schema import CAPTION, UID, URL
    available = {UID, URL, CAPTION, *spec.input.keep_columns, *spec.input.features}
    paths = spec.input.path if isinstance(spec.input.path, list) else [spec.input.path]
    from curate.io.readers import format_of  # the readers know the suffixes (imported late: they import this module)

    if spec.input.format == "webdataset" or any(format_of(p) == "webdataset" for p in paths):
        from curate.io.tar_images import TarImageCheck  # images of a tar input go through the download image path

        available.update(TarImageCheck.writes)
    for index, stage in enumerate(stages):
        missing = [column for column in stage.reads if column not in available]
        if missing:
            writers = [kind for kind, cls in kinds.items() if missing[0] in cls.writes]
            raise ConfigError(
                label, f"stages[{index}]", f"{stage.kind} reads {missing[0]!r}, which no earlier stage writes",
                f"add {' or '.join(writers) or 'a stage that writes it'} before it",
            )
        available.update(stage.writes)


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(str(path), "<file>", "no such pipeline file", "check the path")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "<file>"
        problem = getattr(err, "problem", None) or first_line(err)
        raise ConfigError(str(path), where, f"invalid YAML: {problem}", "fix the syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(str(path), "<file>", "expected a mapping at the top level", "see pipelines/quickstart.yaml")
    return data


def _apply_override(raw: dict, override: str, label: str) -> None:
    """``a.b.0.c=value``: the value is parsed as YAML (numbers, booleans, lists)."""
    if "=" not in override:
        raise ConfigError(label, override, "override must look like key.path=value", "e.g. --set output.samples_per_shard=1000")
    dotted, value = override.split("=", 1)
    node: Any = raw
    parts = dotted.split(".")
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(label, dotted, f"no list index {part!r}", f"use 0..{len(node) - 1}")
            part = int(part)
        elif not isinstance(node, dict):
            raise ConfigError(label, dotted, "cannot descend into a scalar", "check the key path")
        if last:
            node[part] = _override_value(value, dotted, label)
        else:
            if isinstance(node, dict) and part not in node:
                node[part] = {}
            node = node[part]


def _override_value(value: str, dotted: str, label: str) -> Any:
    """The value of ``--set key=value`` parsed as YAML, failing like a file does (one line)."""
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or first_line(err)
        raise ConfigError(label, f"--set {dotted}", f"invalid YAML: {problem}", "fix the syntax, or quote the value") from None


def _config_error(label: str, err: ValidationError, prefix: str = "", model: type[BaseModel] | None = None) -> ConfigError:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"] if p not in ("params",))
    key = ".".join(p for p in (prefix, loc) if p) or "<root>"
    kind = first["type"]
    if kind == "extra_forbidden":
        valid = _valid_keys(model, first["loc"][:-1])
        fix = f"valid: {', '.join(valid)}" if valid else "remove it or check the spelling"
        return ConfigError(label, key, "unknown key", fix)
    if kind == "missing":
        return ConfigError(label, key, "required key is missing", "add it")
    fix = ""
    ctx = first.get("ctx") or {}
    if "expected" in ctx:
        fix = f"expected {ctx['expected']}"
    # One line always: a validator's message may span lines; "Value error, " is pydantic's prefix.
    problem = " ".join(first["msg"].removeprefix("Value error, ").split())
    return ConfigError(label, key, problem, fix)


def _valid_keys(model: type[BaseModel] | None, path: tuple) -> list[str]:
    """The keys allowed where an unknown key was found: walk ``path`` through the models."""
    for part in path:
        if model is None or isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        candidates = [field.annotation, *get_args(field.annotation)]
        candidates += [arg for c in list(candidates) for arg in get_args(c)]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    return list(model.model_fields) if model is not None else []
