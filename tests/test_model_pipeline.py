"""A real pipeline with a CLIP model through Ray: download -> clip_score -> top_fraction on the
synthetic corpus, then a rerun over its shards that reads the stored embeddings back."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import save_file

from curate.models import open_clip_models
from curate.pipeline import run_pipeline


@pytest.fixture(scope="module")
def micro_weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model, _, _ = open_clip_models.load(open_clip_models.resolve("curate-micro-clip", "random"))
    path = tmp_path_factory.mktemp("weights") / "micro.safetensors"
    save_file(model.state_dict(), str(path))
    return path


def _shards(run: Path) -> list[tuple[dict, np.ndarray, np.ndarray]]:
    out = []
    for parquet in sorted((run / "shards").glob("*.parquet")):
        stem = parquet.with_suffix("")
        out.append((pq.read_table(parquet).to_pydict(), np.load(f"{stem}.clip_image_embedding.npy"),
                    np.load(f"{stem}.clip_text_embedding.npy")))
    return out


def test_clip_then_top_fraction_then_a_rerun_that_reuses_the_embeddings(synth_corpus, micro_weights, ray_session,
                                                                        tmp_path) -> None:
    spec = {"name": "clip_run",
            "input": {"path": str(synth_corpus / "samples.parquet"), "serve": str(synth_corpus), "rows_per_unit": 100,
                      "keep_columns": ["noise"]},
            "stages": [{"stage": "download", "timeout": 5},
                       {"stage": "clip_score", "model": "curate-micro-clip", "pretrained": str(micro_weights),
                        "batch_size": 32},
                       {"stage": "top_fraction", "fraction": 0.5}],
            "output": {"samples_per_shard": 60, "image_size": 64}}
    first = run_pipeline(spec, output=str(tmp_path / "first"))
    funnel = {s["stage"]: s for s in json.loads((tmp_path / "first" / "stats" / "stats.json").read_text())["stages"]}
    scored = funnel["clip_score"]["kept"]
    assert funnel["clip_score"]["dropped"] == 0 and first.funnel.kept == funnel["top_fraction"]["kept"]
    card = json.loads((tmp_path / "first" / "stats" / "top_fraction.json").read_text())
    assert card["rows_scored"] == scored and card["rows_kept"] == first.funnel.kept >= scored / 2

    digest = hashlib.sha256(micro_weights.read_bytes()).hexdigest()
    manifest = json.loads((tmp_path / "first" / "manifest.json").read_text())
    assert manifest["stage_content"]["clip_score"]["sha256"] == digest
    shards = _shards(tmp_path / "first")
    kept_scores, original, from_float16 = [], {}, {}
    for meta, image, text in shards:
        original.update(zip(meta["uid"], meta["clip_score"], strict=True))
        from_float16.update(zip(meta["uid"], np.einsum("ij,ij->i", image.astype(np.float32), text.astype(np.float32)),
                                strict=True))
        assert image.dtype == np.float16 and image.shape == (len(meta["uid"]), 32) == text.shape
        assert set(meta["clip_model"]) == {f"curate-micro-clip@{digest[:16]}"}
        np.testing.assert_allclose((image.astype(np.float32) * text).sum(1), meta["clip_score"], atol=3e-3)
        assert "clip_pixels" not in meta and "clip_tokens" not in meta and "_top_fraction_bin" not in meta
        kept_scores += meta["clip_score"]
    assert min(kept_scores) >= card["threshold"] and len(kept_scores) == first.funnel.kept

    rerun = {"name": "rethreshold",
             "input": {"path": str(tmp_path / "first" / "shards" / "*.tar"), "uid_column": "uid",
                       "keep_columns": ["clip_model"],
                       "features": ["clip_image_embedding", "clip_text_embedding"]},
             "stages": [{"stage": "clip_score", "name": "rescore", "model": "curate-micro-clip",
                         "pretrained": str(micro_weights), "threshold": float(np.median(kept_scores))}]}
    second = run_pipeline(rerun, output=str(tmp_path / "second"))
    assert second.funnel.rows == first.funnel.kept
    rows = [r for path in sorted((tmp_path / "second" / "shards").glob("*.parquet")) for r in pq.read_table(path).to_pylist()]
    assert all(r["clip_model"] == f"curate-micro-clip@{digest[:16]}" for r in rows)
    rescored = {r["uid"]: r["clip_score"] for r in rows}
    # The scores come from the float16 embeddings read back, not from the model run again (whose
    # float32 scores are the first run's): the model was not called.
    np.testing.assert_allclose([rescored[u] for u in rescored], [from_float16[u] for u in rescored], atol=1e-6)
    assert max(abs(rescored[u] - original[u]) for u in rescored) > 1e-5
    assert all(score >= np.median(kept_scores) for score in rescored.values())
