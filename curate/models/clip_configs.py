"""open_clip model configs that curate ships (``curate/models/configs/*.json``): small CLIP
architectures for filtering networks trained on a user's own trusted data (Fang et al. 2023,
"Data Filtering Networks"), registered with open_clip's config registry so that every open_clip
entry point (``create_model``, ``open_clip_train --model``) knows them by name."""

from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
_registered = False


def register() -> None:
    """Add curate's configs to open_clip's registry (once per process)."""
    global _registered
    if not _registered:
        import open_clip

        open_clip.add_model_config(CONFIG_DIR)
        _registered = True


def known_models() -> list[str]:
    """Every open_clip model name, curate's included."""
    import open_clip

    register()
    return open_clip.list_models()


def model_config(name: str) -> dict | None:
    """The open_clip config of ``name`` (``embed_dim``, ``vision_cfg``, ``text_cfg``), or None."""
    import open_clip

    register()
    return open_clip.get_model_config(name)
