"""clip_score (curate.stages.clip, clip_parts) in-process: the score equals open_clip's own
computation, the preprocessing equals open_clip's transform, every ledger row's stage, reason and
detail, stored embeddings reused without loading the model, and the offline spec-check errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image

from curate.config import load_spec
from curate.engine.blocks import apply_stage
from curate.errors import ConfigError, UserError
from curate.models import open_clip_models
from curate.schema import DROP_DETAIL, DROP_REASON, DROP_STAGE, ROW, UNIT
from curate.stages.base import released_columns
from curate.stages.clip import ClipScoreFilter, ClipScoreParams
from curate.stages.clip_parts import IMAGE_EMBEDDING, MODEL_COLUMN, TEXT_EMBEDDING

MICRO = "curate-micro-clip"
CAPTIONS = ["a red circle on the left", "two blue squares", "a green star at the top", "hello", "x"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A randomly initialised micro CLIP saved as safetensors (the stage loads it like real weights)."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model, _, _ = open_clip_models.load(open_clip_models.resolve(MICRO, "random"))
    path = tmp_path_factory.mktemp("clip") / "micro.safetensors"
    save_file(model.state_dict(), str(path))
    return path


def _jpegs(count: int) -> list[bytes]:
    rng = np.random.default_rng(1)
    images = []
    for i in range(count):
        out = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (40 + 9 * i, 70 - 5 * i, 3), dtype=np.uint8)).save(out, "JPEG")
        images.append(out.getvalue())
    return images


def _table(images: list[bytes | None], captions: list[str]) -> pa.Table:
    n = len(captions)
    return pa.table({"uid": [f"{i:032x}" for i in range(n)], "caption": captions, "image": pa.array(images, pa.binary()),
                     UNIT: pa.array([0] * n, pa.int32()), ROW: pa.array(range(n), pa.int32()),
                     DROP_STAGE: pa.nulls(n, pa.string()), DROP_REASON: pa.nulls(n, pa.string()),
                     DROP_DETAIL: pa.nulls(n, pa.string())})


def _run(stage: ClipScoreFilter, table: pa.Table) -> tuple[pa.Table, list]:
    parts = stage.expand()
    for part in parts:
        part.released = released_columns([stage])  # as the executor sets it: a drop releases the features
        part.setup()
        table = apply_stage(part, table)
    return table, parts


def _stage(weights: Path, **params) -> ClipScoreFilter:
    stage = ClipScoreFilter(ClipScoreParams(model=MICRO, pretrained=str(weights), **params))
    stage.bind(None)
    return stage


def test_clip_score_equals_open_clips_own_computation(weights) -> None:
    images = _jpegs(5)
    out, _ = _run(_stage(weights), _table(images, CAPTIONS))
    model, preprocess, tokenizer = open_clip_models.load(open_clip_models.resolve(MICRO, str(weights)))
    with torch.no_grad():
        pixels = torch.stack([preprocess(Image.open(io.BytesIO(b))) for b in images])
        image = torch.nn.functional.normalize(model.encode_image(pixels), dim=-1)
        text = torch.nn.functional.normalize(model.encode_text(tokenizer(CAPTIONS)), dim=-1)
    expected = (image * text).sum(-1).numpy()
    np.testing.assert_allclose(np.array(out.column("clip_score").to_pylist()), expected, atol=1e-5, rtol=0)
    stored = np.array(out.column(IMAGE_EMBEDDING).to_pylist(), np.float32)
    np.testing.assert_allclose(stored, image.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(stored, axis=1), 1.0, atol=1e-5)
    assert out.column(DROP_STAGE).null_count == 5
    assert "clip_pixels" not in out.column_names and "clip_tokens" not in out.column_names


def test_preprocessing_equals_open_clips_transform_for_a_tag() -> None:
    """The CPU part builds the transform without the model; a tag's settings (QuickGELU, mean, std,
    interpolation) are applied as create_model_and_transforms applies them."""
    import open_clip

    ref = open_clip_models.ClipModelRef("ViT-B-32", None, open_clip_models._tag_options("ViT-B-32", "openai"))
    ours, _ = open_clip_models.transforms(ref)
    _, _, theirs = open_clip.create_model_and_transforms("ViT-B-32", **ref.options)
    image = Image.open(io.BytesIO(_jpegs(3)[2]))
    assert torch.equal(ours(image), theirs(image))


def test_undecodable_and_missing_images_are_ledger_rows(weights) -> None:
    table = _table([*_jpegs(2), b"not an image", None], CAPTIONS[:4])
    out, _ = _run(_stage(weights), table)
    assert out.column(DROP_STAGE).to_pylist() == [None, None, "clip_score", "clip_score"]
    assert out.column(DROP_REASON).to_pylist() == [None, None, "clip_image_undecodable", "clip_image_missing"]
    assert out.column(DROP_DETAIL).to_pylist()[2:] == [
        "not_an_image: UnidentifiedImageError: cannot identify image file", "no image bytes"]
    assert out.column(IMAGE_EMBEDDING).null_count == 2 and out.column("clip_score").null_count == 2


def test_threshold_drops_low_scores_with_their_score(weights) -> None:
    images = _jpegs(5)
    scores = _run(_stage(weights), _table(images, CAPTIONS))[0].column("clip_score").to_pylist()
    cut = float(np.median(scores))
    out, _ = _run(_stage(weights, threshold=cut), _table(images, CAPTIONS))
    low = [s < cut for s in scores]
    assert out.column(DROP_REASON).to_pylist() == ["clip_score_too_low" if b else None for b in low]
    assert out.column(DROP_DETAIL).to_pylist() == [f"clip_score={round(s, 4)}" if b else None
                                                   for s, b in zip(scores, low, strict=True)]
    assert [v is None for v in out.column(IMAGE_EMBEDDING).to_pylist()] == low  # a drop releases the features


def test_stored_embeddings_of_the_same_model_are_reused_without_loading_it(weights) -> None:
    first, _ = _run(_stage(weights), _table(_jpegs(3), CAPTIONS[:3]))
    again = first.drop_columns(["clip_score"]).drop_columns(["image"]).append_column(
        "image", pa.nulls(3, pa.binary()))  # no image bytes: only a reuse can score these rows
    out, parts = _run(_stage(weights), again)
    assert parts[1]._model is None  # the model was never loaded
    assert out.column("clip_score").to_pylist() == first.column("clip_score").to_pylist()
    assert out.column(DROP_STAGE).null_count == 3


def test_embeddings_of_another_model_are_recomputed(weights, tmp_path) -> None:
    first, _ = _run(_stage(weights), _table(_jpegs(2), CAPTIONS[:2]))
    other = first.set_column(first.schema.get_field_index(MODEL_COLUMN), MODEL_COLUMN, pa.array(["x@00", "x@00"]))
    other = other.set_column(other.schema.get_field_index(TEXT_EMBEDDING), TEXT_EMBEDDING,
                             pa.array([[0.0] * 32] * 2, pa.list_(pa.float32(), 32)))
    out, parts = _run(_stage(weights), other.drop_columns(["clip_score"]))
    assert parts[1]._model is not None
    np.testing.assert_allclose(out.column("clip_score").to_pylist(), first.column("clip_score").to_pylist(), atol=1e-6)
    assert set(out.column(MODEL_COLUMN).to_pylist()) == {parts[1].ref.model_id}


def test_expand_sizes_each_part(weights) -> None:
    stage = _stage(weights, batch_size=16)
    stage.resource_overrides = {"cpus": 2}
    preprocess, embed, score = stage.expand()
    assert (preprocess.resources.batch_size, preprocess.runs_as_tasks) == (16, True)
    assert (embed.resources.cpus, embed.resources.gpus, embed.resources.batch_size) == (2, 0, 16)
    assert embed.device == "cpu" and score is stage
    assert {p.name for p in (preprocess, embed, score)} == {"clip_score"}


def _spec(tmp_path: Path, params: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(f"name: t\ninput: {{path: in.parquet}}\nstages:\n  - stage: download\n  - stage: clip_score\n{params}")
    return path


@pytest.mark.parametrize(("params", "message"), [
    ("    pretrained: openai\n", "stages[1]: pretrained: ViT-B-32:openai is not in the model cache"),
    ("    model: ViT-B-23\n    pretrained: openai\n", "'ViT-B-23' is not an open_clip model name (did you mean ViT-B-32"),
    ("    pretrained: opena\n", "pretrained 'opena' is not a tag of ViT-B-32 (openai, laion400m_e31"),
    ("    pretrained: /nowhere/w.safetensors\n", "/nowhere/w.safetensors does not exist"),
    ("    pretrained: random\n    threshold: calibrated\n", "threshold: calibrated needs a filter_net"),
])
def test_spec_check_errors_name_the_fix(tmp_path, monkeypatch, params, message) -> None:
    monkeypatch.setenv("CURATE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ConfigError) as err:
        load_spec(_spec(tmp_path, params))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_offline_error_names_both_fixes(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CURATE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ConfigError) as err:
        load_spec(_spec(tmp_path, "    pretrained: openai\n"))
    assert f"is not in the model cache {tmp_path / 'cache'} and this run does not download: run `curate models " \
           "pull ViT-B-32:openai` on a machine with internet" in str(err.value)
    assert "or give a local path to the weights" in str(err.value)


def test_a_head_of_another_width_is_refused_before_any_row(weights, tmp_path) -> None:
    """An NSFW head for ViT-B/32 (512-d) after a micro CLIP (32-d) fails on the driver, naming both."""
    import numpy as np

    from curate.stages.clip import check_embedding_widths
    from curate.stages.safety import ClipNsfwFilter, ClipNsfwParams

    head = tmp_path / "clip_nsfw_vit_b_32.npz"
    np.savez(head, mean=np.zeros(512, np.float32), variance=np.ones(512, np.float32),
             W0=np.zeros((512, 1), np.float32), b0=np.zeros(1, np.float32), cat_cols=np.zeros(0, np.int64))
    nsfw = ClipNsfwFilter(ClipNsfwParams(weights=str(head)))
    with pytest.raises(UserError) as err:
        check_embedding_widths([_stage(weights), nsfw])
    assert str(err.value) == ("clip_nsfw: its head takes 512-d embeddings (OpenAI CLIP ViT-B/32), but clip_score makes "
                              "32-d ones (curate-micro-clip): give clip_nsfw the head of that model, or score with OpenAI "
                              "CLIP ViT-B/32 in clip_score")
    check_embedding_widths([nsfw])  # no CLIP stage before it (embeddings from the input): nothing to compare


def test_on_the_cpu_one_actor_computes_on_every_core(weights) -> None:
    """Ray Data kept a single 1-CPU actor busy: the CPU actor takes all but one logical CPU of a
    node (the tasks around it keep one) and a thread per core; YAML cpus set both."""
    import os

    cores = len(os.sched_getaffinity(0))
    _, embed, _ = _stage(weights).expand()
    assert (embed.resources.cpus, embed.threads, embed.device) == (max(1, cores - 1), cores, "cpu")
