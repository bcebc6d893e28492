"""Filtering networks: trained once per spec and cached, deterministic, loadable by open_clip,
calibrated on held-out pairs; a directory without one is a one-line error."""

from __future__ import annotations

import json

import pytest

from curate.errors import UserError
from curate.sample.synth import noise_counts
from curate.train.filter_net import FilterNetSpec, ensure_filter_net, load_filter_net

SMALL = {"n": 300, "seed": 3, "epochs": 1, "batch_size": 32, "holdout": 20}


def test_ensure_trains_once_per_spec_and_is_deterministic(tmp_path):
    lines: list[str] = []
    net = ensure_filter_net(tmp_path / "a", FilterNetSpec(**SMALL), progress=lines.append)
    assert lines and lines[-1].startswith("held-out ROC-AUC ")
    manifest = json.loads((tmp_path / "a" / "filter_net.json").read_text())
    assert manifest["model"] == net.model == "curate-tiny-clip"
    assert manifest["weights"] == "model.safetensors" and net.weights == tmp_path / "a" / "model.safetensors"
    assert manifest["threshold"] == net.threshold and manifest["roc_auc"] == net.roc_auc
    assert manifest["spec_fingerprint"] == FilterNetSpec(**SMALL).fingerprint()
    assert manifest["samples"] + manifest["heldout"] == noise_counts(300)["clean"]  # the clean rows only
    assert (tmp_path / "a" / "trusted" / "train" / "sizes.json").is_file()
    assert json.loads((tmp_path / "a" / "trusted" / "heldout" / "sizes.json").read_text()) == {"00000.tar": 20}

    stamp = (tmp_path / "a" / "filter_net.json").stat().st_mtime_ns
    again: list[str] = []
    assert ensure_filter_net(tmp_path / "a", FilterNetSpec(**SMALL), progress=again.append) == net
    assert again == [] and (tmp_path / "a" / "filter_net.json").stat().st_mtime_ns == stamp  # cached: no training

    twin = ensure_filter_net(tmp_path / "b", FilterNetSpec(**SMALL), progress=lambda line: None)
    assert twin.weights.read_bytes() == net.weights.read_bytes()  # seeded: the same network
    assert (twin.threshold, twin.roc_auc) == (net.threshold, net.roc_auc)

    retrained: list[str] = []
    ensure_filter_net(tmp_path / "a", FilterNetSpec(**{**SMALL, "epochs": 2}), progress=retrained.append)
    assert any(line.startswith("epoch 2/2") for line in retrained)  # another spec trains again


def test_open_clip_loads_the_saved_weights(tmp_path):
    import open_clip
    import torch

    from curate.models.clip_configs import register

    net = ensure_filter_net(tmp_path, FilterNetSpec(**SMALL), progress=lambda line: None)
    register()
    model = open_clip.create_model(net.model, pretrained=str(net.weights))
    from safetensors.torch import load_file

    saved = load_file(str(net.weights))
    assert all(torch.equal(value, saved[key]) for key, value in model.state_dict().items())


def test_unknown_spec_keys_are_refused():
    with pytest.raises(ValueError, match="epoch"):
        FilterNetSpec(epoch=3)


def test_a_directory_without_a_network_is_one_line(tmp_path):
    with pytest.raises(UserError) as err:
        load_filter_net(tmp_path)
    assert str(err.value) == (f"{tmp_path}: no readable filter_net.json: not a filtering network (train one with "
                              "the quickstart's clip_score stage, or give the directory that holds it)")
    (tmp_path / "filter_net.json").write_text('{"model": "curate-tiny-clip", "weights": "model.safetensors", '
                                              '"threshold": 0.5, "roc_auc": 0.9}')
    with pytest.raises(UserError, match=r"model.safetensors is missing: the filtering network is incomplete"):
        load_filter_net(tmp_path)
