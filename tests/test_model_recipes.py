"""The model recipes (issue 8 §5): offline without weights each stops at spec-check, before Ray
starts, with the one-line missing-weights error; with ``--set`` pointing the CLIP stage at a local
filtering network (and the heads at local weights) laion_filter runs end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import save_file

from curate.cli import main
from curate.models.clip_configs import model_config
from curate.pipeline import run_pipeline
from curate.train.filter_net import FilterNetSpec, ensure_filter_net

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"


@pytest.mark.parametrize(("recipe", "index", "tag"), [
    ("laion_filter", 5, "ViT-B-32:openai"), ("datacomp_clip_score", 1, "ViT-L-14:openai"),
    ("laion_aesthetics", 2, "ViT-L-14:openai")])
def test_offline_the_recipe_stops_at_spec_check(recipe, index, tag, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("CURATE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(PIPELINES / f"{recipe}.yaml"), "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err == (f"curate: error: {PIPELINES / recipe}.yaml: stages[{index}]: pretrained: {tag} is not in the model "
                   f"cache {tmp_path / 'cache'} and this run does not download: run `curate models pull {tag}` on a "
                   "machine with internet (then copy the cache here or set CURATE_CACHE), or give a local path to the "
                   "weights\n")
    assert not (tmp_path / "run").exists() and not (tmp_path / "data" / "synth" / "images").exists()  # stopped first


@pytest.fixture(scope="module")
def filter_net(tmp_path_factory) -> Path:
    """A small filtering network (fewer rows and epochs than the quickstart's: this checks the plumbing)."""
    directory = tmp_path_factory.mktemp("filter_net")
    ensure_filter_net(directory, FilterNetSpec(n=400, epochs=2, holdout=40), progress=lambda line: None)
    return directory


def test_laion_filter_runs_on_a_local_filtering_network(filter_net, ray_session, tmp_path, monkeypatch) -> None:
    width = model_config(json.loads((filter_net / "filter_net.json").read_text())["model"])["embed_dim"]
    head = tmp_path / "nsfw_head.npz"  # the documented layout, at the filtering network's width
    rng = np.random.default_rng(0)
    np.savez(head, mean=np.zeros(width, np.float32), variance=np.ones(width, np.float32),
             W0=rng.normal(size=(width, 1)).astype(np.float32), b0=np.zeros(1, np.float32), cat_cols=np.zeros(0, np.int64))
    from curate.models import watermark

    torch.manual_seed(0)
    save_file(watermark.build_model().state_dict(), str(tmp_path / "watermark.safetensors"))
    monkeypatch.chdir(tmp_path)
    overrides = ["input.synth.n=150", "input.rows_per_unit=150", f"stages.5.filter_net={filter_net}",
                 "stages.5.threshold=calibrated", f"stages.6.weights={head}",
                 f"stages.7.weights={tmp_path / 'watermark.safetensors'}"]
    result = run_pipeline(PIPELINES / "laion_filter.yaml", output=str(tmp_path / "run"), overrides=overrides)

    run = tmp_path / "run"
    funnel = json.loads((run / "stats" / "stats.json").read_text())
    assert [s["stage"] for s in funnel["stages"]] == ["read", "laion_caption", "url_dedup", "language_id", "download",
                                                      "laion_image", "clip_score", "clip_nsfw", "watermark"]
    rejects = [r for p in sorted((run / "rejects").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert result.funnel.rows == 150 and result.funnel.kept + len(rejects) == 150
    clip_drops = [r for r in rejects if r["stage"] == "clip_score"]
    assert clip_drops and {r["reason"] for r in clip_drops} == {"clip_score_too_low"}
    assert not [r for r in rejects if r["stage"] in ("clip_nsfw", "watermark")]  # tags only
    kept = [r for p in sorted((run / "shards").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    threshold = json.loads((filter_net / "filter_net.json").read_text())["threshold"]
    assert kept and all(r["clip_score"] >= threshold and 0 <= r["punsafe"] <= 1 and 0 <= r["pwatermark"] <= 1
                        for r in kept)
    content = json.loads((run / "manifest.json").read_text())["stage_content"]
    assert set(content) >= {"language_id", "clip_score", "clip_nsfw", "watermark"}
    assert content["clip_score"]["threshold"] == threshold
