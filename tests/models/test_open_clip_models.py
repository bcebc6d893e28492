"""open_clip models in open_clip's directory layout (``model: local-dir:DIR``): resolved with its
hash, preprocessing from its own ``preprocess_cfg``, loaded with its weights."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from curate.errors import UserError
from curate.models import clip_configs, open_clip_models


def test_a_local_dir_model_loads_with_its_config_and_preprocessing(tmp_path) -> None:
    torch.manual_seed(3)
    model, _, _ = open_clip_models.load(open_clip_models.resolve("curate-micro-clip", "random"))
    folder = tmp_path / "micro"
    folder.mkdir()
    config = {"model_cfg": clip_configs.model_config("curate-micro-clip"),
              "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "interpolation": "bilinear"}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    save_file(model.state_dict(), str(folder / "open_clip_model.safetensors"))
    ref = open_clip_models.resolve(f"local-dir:{folder}", None)
    assert ref.record["sha256"] and ref.model_id.startswith(f"local-dir:{folder}@")
    loaded, preprocess, _ = open_clip_models.load(ref)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values(), strict=True))
    ours, _ = open_clip_models.transforms(ref)
    assert repr(ours) == repr(preprocess)
    assert "Normalize(mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])" in repr(ours)


def test_a_local_dir_without_weights_is_a_one_line_error(tmp_path) -> None:
    (tmp_path / "open_clip_config.json").write_text("{}")
    with pytest.raises(UserError, match=r"must hold open_clip_config\.json and one of open_clip_model\.safetensors"):
        open_clip_models.resolve(f"local-dir:{tmp_path}", None)
