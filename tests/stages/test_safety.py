"""clip_nsfw and open_nsfw (curate.stages.safety) on tiny inputs: the score columns, the exact
ledger rows (stage, reason, detail) through apply_stage, tag-only defaults, and the one-line
errors (missing weights, wrong embedding width, no clip_image_embedding upstream)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import SHARED
from PIL import Image

from curate.config import load_spec
from curate.engine.blocks import apply_stage
from curate.errors import ConfigError, UserError
from curate.models import open_nsfw
from curate.models.laion_heads import ClipNsfwHead
from curate.models.weights import file_sha256
from curate.schema import DROP_DETAIL, DROP_REASON, DROP_STAGE, IMAGE, UID
from curate.stages.safety import ClipNsfwFilter, ClipNsfwParams, OpenNsfwFilter, OpenNsfwParams

NSFW_HEADS = SHARED / "models" / "laion-clip-nsfw"


def block(columns: dict[str, pa.Array]) -> pa.Table:
    n = len(next(iter(columns.values())))
    return pa.table({UID: [f"{i:032x}" for i in range(n)], **columns, DROP_STAGE: pa.nulls(n, pa.string()),
                     DROP_REASON: pa.nulls(n, pa.string()), DROP_DETAIL: pa.nulls(n, pa.string())})


def ledger(out: pa.Table) -> list[tuple]:
    return list(zip(out.column(DROP_STAGE).to_pylist(), out.column(DROP_REASON).to_pylist(),
                    out.column(DROP_DETAIL).to_pylist(), strict=True))


def embeddings(rows: list[list[float] | None], dim: int) -> pa.Array:
    return pa.array(rows, pa.list_(pa.float32(), dim))


@pytest.fixture
def tiny_head(tmp_path: Path) -> Path:
    """A 3-d head: punsafe = sigmoid(4 * x0 - 2), no categorical column."""
    path = tmp_path / "tiny_nsfw.npz"
    np.savez(path, mean=np.zeros(3, np.float32), variance=np.ones(3, np.float32), W0=np.array([[4.0], [0], [0]], np.float32),
             b0=np.array([-2.0], np.float32), cat_cols=np.zeros(0, np.int64))
    return path


def clip_nsfw(weights: Path, **params) -> ClipNsfwFilter:
    stage = ClipNsfwFilter(ClipNsfwParams(weights=str(weights), **params))
    stage.setup()
    return stage


def test_clip_nsfw_tags_by_default(tiny_head: Path) -> None:
    stage = clip_nsfw(tiny_head)
    assert (stage.kind, stage.reads, stage.writes, stage.has_setup) == ("clip_nsfw", ("clip_image_embedding",),
                                                                         ("punsafe",), True)
    out = apply_stage(stage, block({"clip_image_embedding": embeddings([[1, 0, 0], [0.5, 0.5, 0.5], None, [0, 1, 0]], 3)}))
    assert ledger(out) == [(None, None, None)] * 4
    assert out.schema.field("punsafe").type == pa.float32()
    expected = [1 / (1 + np.exp(-2.0)), 0.5, None, 1 / (1 + np.exp(2.0))]
    assert out.column("punsafe").to_pylist() == [None if e is None else pytest.approx(e, rel=1e-6) for e in expected]


def test_clip_nsfw_drops_at_max_punsafe(tiny_head: Path) -> None:
    stage = clip_nsfw(tiny_head, max_punsafe=0.5)
    out = apply_stage(stage, block({"clip_image_embedding": embeddings([[1, 0, 0], [0.5, 0.5, 0.5], None, [0, 1, 0]], 3)}))
    assert ledger(out) == [("clip_nsfw", "nsfw_clip", "punsafe=0.8808"), ("clip_nsfw", "nsfw_clip", "punsafe=0.5"),
                           ("clip_nsfw", "no_clip_embedding", "clip_image_embedding=null"), (None, None, None)]
    assert stage.content_record() == {"model": "laion_clip_nsfw", "ref": str(tiny_head), "sha256": file_sha256(tiny_head),
                                      "bytes": tiny_head.stat().st_size}


def test_clip_nsfw_wrong_width_is_one_line(tiny_head: Path) -> None:
    stage = clip_nsfw(tiny_head)
    rows = block({"clip_image_embedding": embeddings([[0.5, 0.5, 0.5, 0.5]], 4), "clip_model": ["ViT-B-32/openai"]})
    with pytest.raises(UserError) as err:
        apply_stage(stage, rows)
    assert str(err.value) == (f"clip_nsfw ({tiny_head}): the head takes 3-d embeddings of a 3-d CLIP, but "
                              "clip_image_embedding holds 4-d ones (from ViT-B-32/openai): score images with a 3-d CLIP "
                              "in clip_score, or give this head's weights for the CLIP model used")


@pytest.mark.shared_data
def test_clip_nsfw_real_heads_on_real_embeddings() -> None:
    if not NSFW_HEADS.is_dir():
        pytest.skip(f"needs {NSFW_HEADS}")
    for tag, dim in (("b_32", 512), ("l_14", 768)):
        path = NSFW_HEADS / f"clip_nsfw_vit_{tag}.npz"
        rows = np.load(NSFW_HEADS / f"violence_detection_vit_{tag}.npy").astype(np.float32)
        out = apply_stage(clip_nsfw(path, max_punsafe=0.5), block({"clip_image_embedding": embeddings(rows.tolist(), dim)}))
        assert out.column("punsafe").to_pylist() == ClipNsfwHead(path)(rows).tolist()
        assert ledger(out) == [(None, None, None)] * 2
    b32_rows = block({"clip_image_embedding": embeddings(np.load(NSFW_HEADS / "violence_detection_vit_b_32.npy").tolist(), 512)})
    with pytest.raises(UserError, match=r"the head takes 768-d embeddings of OpenAI CLIP ViT-L/14, but clip_image_embedding "
                                        r"holds 512-d ones: score images with OpenAI CLIP ViT-L/14 in clip_score"):
        apply_stage(clip_nsfw(NSFW_HEADS / "clip_nsfw_vit_l_14.npz"), b32_rows)


def spec_error(stages: list[dict]) -> str:
    with pytest.raises(ConfigError) as err:
        load_spec({"input": {"path": "in.parquet"}, "stages": stages})
    return str(err.value)


def test_clip_nsfw_spec_errors(tmp_path: Path, tiny_head: Path, monkeypatch) -> None:
    missing = tmp_path / "clip_nsfw_vit_b_32.npz"
    assert spec_error([{"stage": "clip_nsfw", "weights": str(missing)}]) == (
        f"<dict>: stages[0].weights: clip_nsfw: weights: {missing} does not exist (give the path of the weights file, or a "
        "hub reference hf-hub:ORG/REPO/FILE fetched with `curate models pull`)")
    monkeypatch.setenv("CURATE_CACHE", str(tmp_path / "cache"))
    url = "https://example.org/clip_nsfw_vit_b_32.npz"
    assert spec_error([{"stage": "clip_nsfw", "weights": url}]) == (
        f"<dict>: stages[0].weights: clip_nsfw: weights: {url} is not in the model cache {tmp_path / 'cache'} and this run "
        f"does not download: run `curate models pull {url}` on a machine with internet (then copy the cache here or set "
        "CURATE_CACHE), or give a local path to the weights")
    assert spec_error([{"stage": "clip_nsfw", "weights": str(tiny_head)}]) == (
        "<dict>: stages[0]: clip_nsfw reads 'clip_image_embedding', which no earlier stage writes (add clip_score before it)")
    assert "max_punsafe" in spec_error([{"stage": "clip_nsfw", "weights": str(tiny_head), "max_punsafe": 1.5}])
    assert "weights" in spec_error([{"stage": "clip_nsfw"}])


# --- open_nsfw ----------------------------------------------------------------------------------


def noise_jpeg(seed: int, size: tuple[int, int] = (320, 240)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def bare_open_nsfw() -> open_nsfw.OpenNsfw:
    return open_nsfw.OpenNsfw(threads=1)


def open_nsfw_stage(**params) -> OpenNsfwFilter:
    stage = OpenNsfwFilter(OpenNsfwParams(**params))
    stage.setup()
    return stage


def test_open_nsfw_scores_and_undecodable_rows(bare_open_nsfw: open_nsfw.OpenNsfw) -> None:
    images = [noise_jpeg(1), b"\xff\xd8\xff not a jpeg", noise_jpeg(2), None, noise_jpeg(3)]
    stage = open_nsfw_stage(batch_size=2)
    assert (stage.kind, stage.reads, stage.writes) == ("open_nsfw", ("image",), ("pnsfw", "open_nsfw_error"))
    out = apply_stage(stage, block({IMAGE: pa.array(images, pa.binary())}))
    expected = bare_open_nsfw(np.stack([open_nsfw.preprocess(images[i]) for i in (0, 2, 4)])).tolist()
    assert out.column("pnsfw").to_pylist() == [expected[0], None, expected[1], None, expected[2]]
    assert ledger(out) == [(None, None, None),
                           ("open_nsfw", "undecodable_image", "UnidentifiedImageError: cannot identify image file"),
                           (None, None, None), ("open_nsfw", "undecodable_image", "no image bytes"), (None, None, None)]
    assert out.column(IMAGE).to_pylist()[1] is None  # the dropped row's bytes are released
    assert stage._model.providers == ["CPUExecutionProvider"]
    assert stage.content_record() == open_nsfw.model_record()


def test_open_nsfw_drops_at_max_pnsfw() -> None:
    images = [noise_jpeg(4), noise_jpeg(5)]
    stage = open_nsfw_stage(max_pnsfw=0.0)  # every decodable image is at least 0
    out = apply_stage(stage, block({IMAGE: pa.array(images, pa.binary())}))
    assert [row[:2] for row in ledger(out)] == [("open_nsfw", "nsfw_image")] * 2
    scores, details = out.column("pnsfw").to_pylist(), out.column(DROP_DETAIL).to_pylist()
    assert [float(d.removeprefix("pnsfw=")) for d in details] == [pytest.approx(p, abs=5e-5) for p in scores]


@pytest.mark.shared_data
def test_open_nsfw_on_coco_mini(shared_data: Path) -> None:
    """Real photos: the one of the first 40 that open_nsfw scores 0.73 goes, the others stay."""
    files = sorted((shared_data / "coco-mini" / "images").glob("*.jpg"))[:40]
    chosen = [files[i] for i in (0, 1, 12, 14)]
    rows = block({IMAGE: pa.array([f.read_bytes() for f in chosen], pa.binary())})
    out = apply_stage(open_nsfw_stage(max_pnsfw=0.5), rows)
    assert ledger(out) == [(None, None, None), (None, None, None), ("open_nsfw", "nsfw_image", "pnsfw=0.7296"),
                           (None, None, None)]
    assert [round(p, 4) for p in out.column("pnsfw").to_pylist()] == [0.0001, 0.0152, 0.7296, 0.1345]


@pytest.mark.shared_data
def test_clip_nsfw_from_laions_release_url(tmp_path: Path, monkeypatch) -> None:
    """The released zip at its URL, in the cache as `curate models pull URL` leaves it: no TensorFlow."""
    if not NSFW_HEADS.is_dir():
        pytest.skip(f"needs {NSFW_HEADS}")
    from curate.models.weights import url_path

    monkeypatch.setenv("CURATE_CACHE", str(tmp_path / "cache"))
    url = "https://raw.githubusercontent.com/LAION-AI/CLIP-based-NSFW-Detector/main/clip_autokeras_nsfw_b32.zip"
    cached = url_path(url)
    cached.parent.mkdir(parents=True)
    cached.write_bytes((NSFW_HEADS / "clip_autokeras_nsfw_b32.zip").read_bytes())
    rows = np.load(NSFW_HEADS / "violence_detection_vit_b_32.npy").astype(np.float32)
    stage = clip_nsfw(url)
    out = apply_stage(stage, block({"clip_image_embedding": embeddings(rows.tolist(), 512)}))
    assert out.column("punsafe").to_pylist() == ClipNsfwHead(NSFW_HEADS / "clip_nsfw_vit_b_32.npz")(rows).tolist()
    assert stage.content_record() == {"model": "laion_clip_nsfw", "ref": url, "sha256": file_sha256(cached),
                                      "bytes": cached.stat().st_size}
