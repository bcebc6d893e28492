"""open_clip models: resolved on the driver (no download, one-line errors), loaded on workers.

A CLIP model is an open_clip model name (a registered config such as ``ViT-B-32``, one of
curate's own in :mod:`curate.models.clip_configs`, or ``hf-hub:ORG/REPO`` holding
``open_clip_config.json``) plus its weights (``pretrained``):

* a pretrained tag of that name (``openai``, ``laion2b_s34b_b79k``, ...): the file open_clip's
  pretrained table names, looked up in curate's cache (``curate models pull ViT-B-32:openai``);
  the tag's preprocessing (mean, std, interpolation, resize mode) and QuickGELU come with it, as
  open_clip applies them (a mismatched variant silently scores wrong, open_clip#771);
* a local ``.safetensors``/``.pt``/``.bin`` file or an ``hf-hub:ORG/REPO/FILE``;
* none, for ``model: hf-hub:ORG/REPO`` or ``model: local-dir:DIR`` (a config and its weights together);
* ``random``: an untrained model of the architecture (tests, speed benchmarks).

:func:`resolve` runs at spec-check time and returns a picklable :class:`ClipModelRef` whose
``record`` (name, tag, weights hash) goes to the manifest, so a run says exactly which model
scored it; :func:`load` builds the model on a worker.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path

from curate.errors import UserError
from curate.models import clip_configs
from curate.models.weights import (
    HF_PREFIX,
    cached_hf_file,
    materialize,
    not_cached,
    pull_file,
    resolve_weights,
    split_hf,
    url_path,
    weights_record,
)

RANDOM = "random"
HUB_CONFIG = "open_clip_config.json"
#: open_clip's file names in a hub repository, safetensors first (no code runs when loading it).
HUB_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass(frozen=True)
class ClipModelRef:
    """A resolved CLIP model: what ``load`` needs on a worker, and what the manifest records."""

    name: str  # the open_clip model name given to create_model (``local-dir:...`` for a hub model)
    weights: str | None  # local weights file; None: random init, or inside a local-dir model
    options: dict = field(default_factory=dict)  # create_model_and_transforms keywords from the tag
    record: dict = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        """A short id of model and weights, written per row (``clip_model``) so stored embeddings
        are reused only by the same model."""
        digest = self.record.get("sha256", "")[:16]
        return f"{self.record.get('model')}@{digest}" if digest else f"{self.record.get('model')}:{self.record.get('pretrained')}"


def _known_name(model: str, what: str) -> None:
    if model.startswith(("local-dir:", HF_PREFIX)):
        return
    names = clip_configs.known_models()
    if model not in names:
        close = difflib.get_close_matches(model, names, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"e.g. {', '.join(names[:4])}"
        raise UserError(f"{what}: {model!r} is not an open_clip model name ({hint}; `python -c \"import open_clip; "
                        f"print(open_clip.list_models())\"` lists all {len(names)})")


def _tag_options(model: str, tag: str) -> dict:
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model, tag)
    options = {"force_quick_gelu": bool(cfg.get("quick_gelu", False))}
    for key, option in (("mean", "image_mean"), ("std", "image_std"), ("interpolation", "image_interpolation"),
                        ("resize_mode", "image_resize_mode")):
        if cfg.get(key) is not None:
            options[option] = cfg[key]
    return options


def tag_sources(model: str, tag: str) -> list[str]:
    """Weights references of an open_clip pretrained tag, in preference order (safetensors first)."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model, tag)
    sources = []
    if cfg.get("hf_hub"):
        repo, filename = cfg["hf_hub"].rstrip("/"), ""
        if cfg["hf_hub"].count("/") >= 2 and not cfg["hf_hub"].endswith("/"):
            repo, filename = cfg["hf_hub"].rsplit("/", 1)
        filename = filename or HUB_WEIGHTS[1]
        if filename.endswith(".bin"):
            sources.append(f"{HF_PREFIX}{repo}/{filename.removesuffix('pytorch_model.bin')}model.safetensors")
        sources.append(f"{HF_PREFIX}{repo}/{filename}")
    if cfg.get("url"):
        sources.append(cfg["url"])
    return sources


def _cached_source(sources: list[str]) -> str | None:
    for source in sources:
        if source.startswith(HF_PREFIX):
            if cached_hf_file(*split_hf(source)) is not None:
                return source
        elif url_path(source).is_file():
            return source
    return None


def resolve(model: str, pretrained: str | None, what: str = "clip_score") -> ClipModelRef:
    """Check ``model`` + ``pretrained`` on the driver, without network; a one-line UserError when
    the name is unknown or the weights are not here (naming `curate models pull` and a local path)."""
    _known_name(model, f"{what}: model")
    if pretrained is None and not model.startswith(("local-dir:", HF_PREFIX)):
        raise UserError(f"{what}: pretrained is required: a tag of {model} (e.g. openai), a weights file, "
                        f"an hf-hub:ORG/REPO/FILE, or `random` for an untrained model")
    record = {"model": model, "pretrained": pretrained}
    if model.startswith("local-dir:"):  # open_clip's directory form: open_clip_config.json + weights
        folder = Path(model.removeprefix("local-dir:")).expanduser()
        weights = [folder / f for f in HUB_WEIGHTS if (folder / f).is_file()]
        if not (folder / HUB_CONFIG).is_file() or not weights:
            raise UserError(f"{what}: model: {folder} must hold {HUB_CONFIG} and one of {', '.join(HUB_WEIGHTS)} "
                            "(open_clip's local-dir layout, as a hub repository holds them)")
        return ClipModelRef(f"local-dir:{folder}", None, {}, {**record, **weights_record(model, weights[0]).as_dict()})
    if model.startswith(HF_PREFIX):
        repo = model[len(HF_PREFIX):].strip("/")
        config = cached_hf_file(repo, HUB_CONFIG)
        weights = next((w for w in (cached_hf_file(repo, f) for f in HUB_WEIGHTS) if w is not None), None)
        if config is None or weights is None:
            raise not_cached(f"{what}: model", model)
        return ClipModelRef(f"local-dir:{config.parent}", None, {}, {**record, **weights_record(model, weights).as_dict()})
    if pretrained == RANDOM:
        return ClipModelRef(model, None, {}, record)
    import open_clip

    if pretrained in open_clip.list_pretrained_tags_by_model(model):
        sources = tag_sources(model, pretrained)
        source = _cached_source(sources)
        if source is None:
            raise not_cached(f"{what}: pretrained", f"{model}:{pretrained}")
        path = resolve_weights(source, f"{what}: pretrained")
        return ClipModelRef(model, str(path), _tag_options(model, pretrained),
                            {**record, **weights_record(source, path).as_dict()})
    looks_like_tag = not pretrained.startswith((HF_PREFIX, "http")) and not Path(pretrained).expanduser().exists() \
        and "/" not in pretrained and "." not in pretrained
    if looks_like_tag:
        tags = open_clip.list_pretrained_tags_by_model(model)
        raise UserError(f"{what}: pretrained {pretrained!r} is not a tag of {model} "
                        f"({', '.join(tags[:6]) or 'it has none'}) nor a weights file")
    path = resolve_weights(pretrained, f"{what}: pretrained")
    return ClipModelRef(model, str(path), {}, {**record, **weights_record(pretrained, path).as_dict()})


def load(ref: ClipModelRef, device: str = "cpu"):
    """(model in eval mode on ``device``, its eval preprocessing transform, its tokenizer)."""
    import open_clip

    clip_configs.register()
    weights = str(materialize(ref.weights, ref.record.get("sha256"))) if ref.weights else None
    model, _, preprocess = open_clip.create_model_and_transforms(
        ref.name, pretrained=weights, device=device, weights_only=True, **ref.options)
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(ref.name)


def transforms(ref: ClipModelRef):
    """The eval preprocessing transform and tokenizer of ``ref`` without building the model (a
    CPU preprocessing worker needs only these): open_clip's defaults, then a hub model's
    ``preprocess_cfg``, the model's image size and the tag's settings, merged as ``create_model``
    merges them."""
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict

    clip_configs.register()
    if ref.name.startswith("local-dir:"):
        config = json.loads((Path(ref.name.removeprefix("local-dir:")) / HUB_CONFIG).read_text())
        model_cfg, preprocess_cfg = config["model_cfg"], config.get("preprocess_cfg", {})
    else:
        model_cfg, preprocess_cfg = clip_configs.model_config(ref.name), {}
    merged = merge_preprocess_dict(PreprocessCfg(), preprocess_cfg)
    merged["size"] = model_cfg["vision_cfg"]["image_size"]
    option_keys = {"image_mean": "mean", "image_std": "std", "image_interpolation": "interpolation",
                   "image_resize_mode": "resize_mode"}
    merged = merge_preprocess_dict(merged, {key: ref.options[o] for o, key in option_keys.items() if o in ref.options})
    return image_transform_v2(PreprocessCfg(**merged), is_train=False), open_clip.get_tokenizer(ref.name)


def embed_dim(ref: ClipModelRef) -> int | None:
    """The model's embedding width (None where the config is not at hand)."""
    if ref.name.startswith("local-dir:"):
        config = json.loads((Path(ref.name.removeprefix("local-dir:")) / HUB_CONFIG).read_text())
        return config["model_cfg"].get("embed_dim")
    config = clip_configs.model_config(ref.name)
    return config.get("embed_dim") if config else None


def pull(name: str) -> list[Path]:
    """Fetch a model into the cache: ``MODEL:TAG`` (an open_clip pretrained tag), ``hf-hub:ORG/REPO``
    (an open_clip hub model: config + weights), or a weights file (``hf-hub:ORG/REPO/FILE``, URL)."""
    if name.startswith(HF_PREFIX) and name[len(HF_PREFIX):].strip("/").count("/") == 1:
        repo = name[len(HF_PREFIX):].strip("/")
        paths = [pull_file(f"{HF_PREFIX}{repo}/{HUB_CONFIG}")]
        for filename in HUB_WEIGHTS:
            try:
                return [*paths, pull_file(f"{HF_PREFIX}{repo}/{filename}")]
            except Exception:  # noqa: BLE001 (the repository may hold only the other format)
                continue
        raise UserError(f"{name}: the repository holds none of {', '.join(HUB_WEIGHTS)}")
    if name.startswith((HF_PREFIX, "https://", "http://")):
        return [pull_file(name)]
    model, _, tag = name.partition(":")
    _known_name(model, "models pull")
    import open_clip

    if tag not in open_clip.list_pretrained_tags_by_model(model):
        raise UserError(f"models pull: {name!r}: give MODEL:TAG with a tag of {model} "
                        f"({', '.join(open_clip.list_pretrained_tags_by_model(model)[:6])})")
    errors = []
    for source in tag_sources(model, tag):
        try:
            return [pull_file(source)]
        except Exception as err:  # noqa: BLE001 (try the next source: hub safetensors, hub bin, URL)
            errors.append(f"{source}: {err}")
    raise UserError(f"models pull: {name}: no source could be fetched ({'; '.join(errors)[:300]})")
