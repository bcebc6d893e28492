"""End to end through Ray: ``run_pipeline`` on a dict spec against the loopback server, then
the outputs read back the way trainers read them (webdataset, open_clip's own loader)."""

from __future__ import annotations

import io
import json
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from run_observations import histograms_of_rows, recorded_histograms

from curate.pipeline import run_pipeline
from curate.schema import compute_uids

IMAGE_SIZE = 64
SCORE_COLUMNS = {"caption_chars", "caption_words", "dup_of", "orig_bytes", "download_status", "download_error", "aspect_ratio"}

# (path on the loopback server, caption, (stage, reason) of the expected drop or None when kept)
ROWS: list[tuple[str, str, tuple[str, str] | None]] = [
    ("/good/e0.jpg", "a photo of a red circle", None),
    ("/404", "a photo of a missing image", ("download", "http_404")),
    ("/slow", "a photo that takes forever", ("download", "timeout")),
    ("/redirect", "a photo behind a redirect", None),
    ("/html", "a web page that is not an image", ("download", "not_an_image")),
    ("/truncated.jpg", "a photo cut in half", ("download", "truncated_image")),
    ("/good/e1.jpg", "cat", ("laion_caption", "caption_too_short")),
    ("/good/e2.jpg", "two words", ("datacomp_caption", "caption_too_few_words")),
    ("/good/e0.jpg", "the same photo again", ("url_dedup", "duplicate_url")),
    ("/small.jpg", "a photo that is too small", ("datacomp_image", "image_too_small")),
    ("/wide.jpg", "a photo that is far too wide", ("datacomp_image", "aspect_ratio_too_large")),
    ("/flat.jpg", "a flat blue square photo", ("laion_image", "image_bytes_too_small")),
    ("/good/e3.jpg", "another good photo here", None),
    ("/good/e3.jpg#again", "the same url with a fragment", ("url_dedup", "duplicate_url")),
    ("/good/e4.jpg", "yet another good photo", None),
    ("/good/e5.jpg", "the last good photo of all", None),
]
STAGES = ["read", "laion_caption", "datacomp_caption", "url_dedup", "download", "datacomp_image", "laion_image"]


def ledger(run: Path) -> list[dict]:
    paths = sorted((run / "rejects").glob("*.parquet"))
    return pa.concat_tables([pq.read_table(p) for p in paths]).to_pylist() if paths else []


def shard_metadata(run: Path) -> list[dict]:
    return pa.concat_tables([pq.read_table(p) for p in sorted((run / "shards").glob("*.parquet"))]).to_pylist()


def expected_funnel(drops: list[tuple[str, str]], rows: int) -> list[dict]:
    counts = Counter(drops)
    funnel, alive = [], rows
    for stage in STAGES:
        reasons = {reason: n for (s, reason), n in counts.items() if s == stage}
        dropped = sum(reasons.values())
        funnel.append({"stage": stage, "in": alive, "kept": alive - dropped, "dropped": dropped, "reasons": reasons})
        alive -= dropped
    return funnel


def datacomp_uids(uids: list[str]) -> list[tuple[int, int]]:
    return sorted((int(u[:16], 16), int(u[16:], 16)) for u in uids)


@pytest.fixture(scope="module")
def e2e_run(tmp_path_factory, http_server, ray_session):
    root = tmp_path_factory.mktemp("e2e")
    urls = [http_server.url(path) for path, _, _ in ROWS]
    captions = [caption for _, caption, _ in ROWS]
    pq.write_table(pa.table({"url": urls, "caption": captions}), root / "in.parquet")
    spec = {
        "name": "e2e",
        "input": {"path": str(root / "in.parquet"), "rows_per_unit": 5},
        "stages": [
            {"stage": "laion_caption"},
            {"stage": "datacomp_caption"},
            {"stage": "url_dedup"},
            {"stage": "download", "timeout": 2, "threads": 8, "allow_private": ["127.0.0.0/8"]},
            {"stage": "datacomp_image"},
            {"stage": "laion_image"},
        ],
        "output": {"samples_per_shard": 2, "image_size": IMAGE_SIZE, "resize_mode": "center_crop"},
    }
    result = run_pipeline(spec, output=str(root / "run"))
    uids = compute_uids(pa.array(urls), pa.array(captions), str(root / "in.parquet"), 0).to_pylist()
    return SimpleNamespace(result=result, run=root / "run", urls=urls, captions=captions, uids=uids)


def test_funnel_is_exact(e2e_run, capsys) -> None:
    result = e2e_run.result
    drops = [expected for _, _, expected in ROWS if expected is not None]
    kept = sum(1 for *_, expected in ROWS if expected is None)
    funnel = result.funnel.to_json()
    assert (funnel["rows"], funnel["kept"], funnel["units"]) == (len(ROWS), kept, 4)
    assert funnel["stages"] == expected_funnel(drops, len(ROWS))
    assert result.units_run == 4 and not result.resumed
    # `curate stats --json` reads the same funnel back from the run directory
    from curate.cli import main

    capsys.readouterr()
    assert main(["stats", str(e2e_run.run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == funnel


def test_every_uid_is_kept_or_in_exactly_one_ledger_row(e2e_run) -> None:
    rows = ledger(e2e_run.run)
    kept = [r["uid"] for r in shard_metadata(e2e_run.run)]
    dropped = [r["uid"] for r in rows]
    assert len(dropped) == len(set(dropped)) and len(kept) == len(set(kept))
    assert not set(kept) & set(dropped)
    assert sorted(kept + dropped) == sorted(e2e_run.uids)
    assert len(kept) + len(dropped) == len(ROWS)
    # each row is where it was expected, with its reason
    by_uid = {r["uid"]: r for r in rows}
    for index, (uid, (_, _, expected)) in enumerate(zip(e2e_run.uids, ROWS, strict=True)):
        if expected is None:
            assert uid in kept, ROWS[index]
            continue
        entry = by_uid[uid]
        assert (entry["stage"], entry["reason"]) == expected, ROWS[index]
        assert (entry["url"], entry["row"], entry["unit"]) == (e2e_run.urls[index], index, index // 5)
        assert entry["detail"], ROWS[index]
    # duplicates name their survivor (the first occurrence) in the detail
    assert by_uid[e2e_run.uids[8]]["detail"] == e2e_run.uids[0]
    assert by_uid[e2e_run.uids[13]]["detail"] == e2e_run.uids[12]
    assert by_uid[e2e_run.uids[6]]["detail"] == "chars=3"


def test_uids_npy_is_datacomp_layout(e2e_run) -> None:
    loaded = np.load(e2e_run.run / "uids.npy")
    assert loaded.dtype == np.dtype("u8,u8")
    kept = [uid for uid, (*_, expected) in zip(e2e_run.uids, ROWS, strict=True) if expected is None]
    assert [tuple(int(x) for x in pair) for pair in loaded.tolist()] == datacomp_uids(kept)


def test_shards_read_back_with_webdataset(e2e_run) -> None:
    import webdataset as wds

    tars = sorted(str(p) for p in (e2e_run.run / "shards").glob("*.tar"))
    assert tars
    dataset = wds.WebDataset(tars, shardshuffle=False).decode("pil")
    samples = list(dataset)
    kept = {uid: index for index, (uid, (*_, expected)) in enumerate(zip(e2e_run.uids, ROWS, strict=True)) if expected is None}
    assert sorted(s["__key__"] for s in samples) == sorted(kept)
    for sample in samples:
        index = kept[sample["__key__"]]
        assert sample["jpg"].size == (IMAGE_SIZE, IMAGE_SIZE)
        assert sample["txt"] == e2e_run.captions[index]
        meta = sample["json"]
        assert {"uid", "url", "caption", "width", "height", "orig_width", "orig_height"} | SCORE_COLUMNS <= set(meta)
        assert (meta["uid"], meta["url"], meta["caption"]) == (sample["__key__"], e2e_run.urls[index], e2e_run.captions[index])
        assert (meta["width"], meta["height"]) == (IMAGE_SIZE, IMAGE_SIZE)
        assert (meta["orig_width"], meta["orig_height"]) == (400, 300)
        assert meta["download_status"] is None and meta["dup_of"] is None
        assert meta["caption_chars"] == len(e2e_run.captions[index])
        assert meta["aspect_ratio"] == pytest.approx(4 / 3, rel=1e-6)
        assert not any(key.startswith("_") for key in meta)  # bookkeeping stays out of the shards
    # every shard holds at most samples_per_shard samples, and its parquet matches its tar
    for tar in tars:
        in_tar = [s["__key__"] for s in wds.WebDataset(tar, shardshuffle=False)]
        assert 1 <= len(in_tar) <= 2
        assert pq.read_table(tar.removesuffix(".tar") + ".parquet").column("uid").to_pylist() == in_tar


def open_clip_batch(run: Path, kept: int):
    """One training batch from open_clip's own webdataset loader (open_clip_train.data)."""
    import open_clip
    from open_clip_train.data import get_wds_dataset
    from torchvision import transforms

    tars = sorted(str(p) for p in (run / "shards").glob("*.tar"))
    args = SimpleNamespace(  # the fields open_clip_train.params gives get_wds_dataset
        train_data="::".join(tars), val_data=None, train_num_samples=kept, val_num_samples=None,
        dataset_type="webdataset", dataset_resampled=False, train_data_upsampling_factors=None,
        batch_size=2, workers=0, world_size=1, seed=0, distributed=False,
    )
    preprocess = transforms.Compose([transforms.Resize(32), transforms.CenterCrop(32), transforms.ToTensor()])
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    data = get_wds_dataset(args, preprocess, is_train=True, epoch=0, tokenizer=tokenizer)
    assert data.dataloader.num_samples >= kept
    return next(iter(data.dataloader))


def test_shards_load_with_open_clip_trainer(e2e_run) -> None:
    """webdataset is pinned to 0.2.86, the newest open_clip_train accepts: from 0.2.96 on every
    shard ends with an EOF marker that its loader rejects (KeyError 'fname', open_clip#935)."""
    import torch

    images, texts = open_clip_batch(e2e_run.run, e2e_run.result.funnel.kept)
    assert images.shape == (2, 3, 32, 32) and images.dtype == torch.float32
    assert texts.shape == (2, 77) and texts.dtype == torch.long


def test_synth_corpus_labels(synth_corpus: Path, ray_session, tmp_path: Path) -> None:
    """Ground truth: every label that a stage is meant to catch is caught by it, and only it."""
    spec = {
        "name": "synth",
        "input": {
            "path": str(synth_corpus / "samples.parquet"), "serve": str(synth_corpus), "synth": {"n": 300, "seed": 7},
            "keep_columns": ["noise"], "rows_per_unit": 100,
        },
        "stages": [
            {"stage": "laion_caption"},
            {"stage": "url_dedup"},
            {"stage": "download", "timeout": 10, "threads": 16},
            {"stage": "datacomp_image"},
            {"stage": "laion_image"},
        ],
        "output": {"samples_per_shard": 100, "image_size": 32, "resize_mode": "center_crop", "encode_quality": 80},
    }
    run = tmp_path / "run"
    result = run_pipeline(spec, output=str(run))
    labels = pq.read_table(synth_corpus / "samples.parquet", columns=["noise"]).column("noise").to_pylist()
    rows = ledger(run)
    kept = shard_metadata(run)
    assert len(rows) + len(kept) == len(labels) == result.funnel.rows == 300
    assert sorted(r["row"] for r in rows) == sorted(set(r["row"] for r in rows))  # one ledger row per input row
    # labels travel with the kept samples
    assert all(k["noise"] in {"clean", "mismatched_caption", "boilerplate_caption", "boilerplate_suffix", "blocklisted_caption",
                              "short_caption", "non_english_caption", "near_duplicate"} for k in kept), \
        Counter(k["noise"] for k in kept)
    predicted = {  # label -> which ledger rows a stage should produce for it
        "missing_image": lambda r: (r["stage"], r["reason"]) == ("download", "http_404"),
        "exact_duplicate": lambda r: (r["stage"], r["reason"]) == ("url_dedup", "duplicate_url"),
        "broken_image": lambda r: r["stage"] == "download" and r["reason"] != "http_404",
        "tiny_image": lambda r: (r["stage"], r["reason"]) == ("datacomp_image", "image_too_small"),
        "extreme_aspect": lambda r: (r["stage"], r["reason"]) == ("datacomp_image", "aspect_ratio_too_large"),
    }
    for label, rule in predicted.items():
        hits = [labels[r["row"]] for r in rows if rule(r)]
        truth = labels.count(label)
        assert truth > 0
        precision = hits.count(label) / len(hits) if hits else 0.0
        recall = hits.count(label) / truth
        assert (precision, recall) == (1.0, 1.0), (label, Counter(hits), truth)
    assert all(r["reason"] in {"truncated_image", "not_an_image", "undecodable"}
               for r in rows if r["stage"] == "download" and r["reason"] != "http_404")


def test_unit_histograms_are_those_of_every_rows_final_scores(e2e_run) -> None:
    """The report's histograms come from the unit markers; they count each row's value once,
    kept or dropped, and only the numeric score columns (not hashes, not strings)."""
    recorded = recorded_histograms(e2e_run.run)
    assert set(recorded) == {"caption_chars", "caption_words", "width", "height", "orig_width", "orig_height",
                             "orig_bytes", "aspect_ratio"}
    assert recorded == histograms_of_rows(e2e_run.run, recorded)
    # caption_chars is scored before anything drops a row: every input row has one
    assert sum(recorded["caption_chars"]["counts"]) == len(ROWS)


def test_unit_markers_charge_seconds_to_the_stages_rows_reached(e2e_run) -> None:
    markers = [json.loads(p.read_text()) for p in sorted((e2e_run.run / "stats" / "units").glob("*.json"))]
    for marker in markers:
        assert set(marker["seconds"]) <= set(STAGES[1:]) and all(s > 0 for s in marker["seconds"].values())
    # every unit had live rows at the caption stages; download ran in every unit
    assert all({"laion_caption", "download"} <= set(m["seconds"]) for m in markers)
    times = [m["committed_at"] for m in markers]
    assert all(abs(t - time.time()) < 3600 for t in times)


def test_ledger_rows_keep_caption_scores_and_a_few_thumbnails(e2e_run) -> None:
    rows = {row["uid"]: row for row in ledger(e2e_run.run)}
    pictured = set()
    for uid, caption, (path, _, expected) in zip(e2e_run.uids, e2e_run.captions, ROWS, strict=True):
        if expected is None:
            continue
        row = rows[uid]
        scores = json.loads(row["scores"])
        assert row["caption"] == caption and scores["caption_chars"] == len(caption)
        if row["thumbnail"] is not None:
            pictured.add(path)
            assert max(Image.open(io.BytesIO(row["thumbnail"])).size) <= 128
    # rows dropped after download had an image (one per reason here); earlier drops and download errors did not
    assert pictured == {"/small.jpg", "/wide.jpg", "/flat.jpg"}
    assert json.loads((e2e_run.run / "stats" / "thresholds.json").read_text()) == [
        {"stage": "laion_caption", "column": "caption_chars", "value": 5, "keep": "above"},
        {"stage": "datacomp_caption", "column": "caption_chars", "value": 6, "keep": "above"},
        {"stage": "datacomp_caption", "column": "caption_words", "value": 3, "keep": "above"},
        {"stage": "datacomp_image", "column": "aspect_ratio", "value": 3.0, "keep": "below"},
        {"stage": "laion_image", "column": "orig_bytes", "value": 5000, "keep": "above"}]
