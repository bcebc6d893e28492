"""``clip_score`` inside a pipeline against the bare model forward (issue 8: at least 0.85x).

Bare: the open_clip model (same name, random weights: speed does not depend on them), batches of
``--batch-size`` pre-decoded, pre-processed image tensors and tokenized captions, ``encode_image``
+ ``encode_text`` + normalise, on ``--device`` with torch using every core the pipeline gets.

Pipeline: ``run_pipeline`` over a parquet of the real coco-mini photos (JPEG bytes in an
``image`` column, replicated to ``--n`` rows, each with one of its human captions) through
``clip_score`` alone: decode, open_clip preprocessing, tokenizing, the model, the score, the
shards and their float16 embedding files. Fixed costs (Ray's start-up, worker imports, model
loading) are taken out by running it at ``--n`` and at ``--n-small`` rows and dividing the
extra rows by the extra time: the steady rate. Both forms alternate for ``--rounds`` rounds.

    .venv/bin/python benchmarks/clip_stage.py [--model ViT-B-32] [--n 960] [--n-small 160] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--images", type=Path, default=C.COCO_IMAGES)
    parser.add_argument("--n", type=int, default=960, help="rows of the large run")
    parser.add_argument("--n-small", type=int, default=160, help="rows of the small run (fixed costs)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--rounds", type=int, default=2)
    return parser.parse_args()


def _samples(images: Path, n: int) -> tuple[list[bytes], list[str]]:
    captions = {}
    for line in (images.parent / "captions.jsonl").read_text().splitlines():
        record = json.loads(line)
        captions[Path(record["file"]).name] = record["captions"]
    files = sorted(images.glob("*.jpg"))
    data = [f.read_bytes() for f in files]
    rows = []
    for i in range(n):
        texts = captions[files[i % len(files)].name]
        rows.append((data[i % len(files)], texts[(i // len(files)) % len(texts)]))
    return [r[0] for r in rows], [r[1] for r in rows]


def bare_rate(model_name: str, images: list[bytes], captions: list[str], batch: int, device: str) -> float:
    """Samples/s of encode_image + encode_text on pre-decoded tensors."""
    import torch
    from PIL import Image

    from curate.models import open_clip_models

    model, preprocess, tokenizer = open_clip_models.load(open_clip_models.resolve(model_name, "random"), device)
    pixels = torch.stack([preprocess(Image.open(io.BytesIO(b))) for b in images])
    tokens = tokenizer(captions)
    autocast = torch.autocast("cuda", dtype=torch.float16) if device == "cuda" else torch.autocast("cpu", enabled=False)
    with torch.inference_mode(), autocast:
        model.encode_image(pixels[:batch].to(device))  # warm-up
        model.encode_text(tokens[:batch].to(device))
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for at in range(0, len(images) - len(images) % batch, batch):
            image = torch.nn.functional.normalize(model.encode_image(pixels[at:at + batch].to(device)).float(), dim=-1)
            text = torch.nn.functional.normalize(model.encode_text(tokens[at:at + batch].to(device)).float(), dim=-1)
            (image * text).sum(-1).cpu()
        if device == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    return (len(images) - len(images) % batch) / elapsed


def pipeline_seconds(model_name: str, images: list[bytes], captions: list[str], batch: int, device: str,
                     workdir: Path) -> float:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from rich.console import Console

    from curate.pipeline import run_pipeline

    n = len(images)
    source = workdir / f"in-{n}.parquet"
    pq.write_table(pa.table({"url": [f"coco/{i}" for i in range(n)], "caption": captions,
                             "image": pa.array(images, pa.binary())}), source)
    # One unit per model batch: a block goes to one actor whole, so units of 160 rows left one of
    # the two CPU actors idle while the other finished the last block (0.48x the bare forward).
    spec = {"name": "clip_bench", "input": {"path": str(source), "keep_columns": ["image"], "rows_per_unit": batch},
            "stages": [{"stage": "clip_score", "model": model_name, "pretrained": "random", "batch_size": batch,
                        "device": device}],
            "output": {"samples_per_shard": 1000}}
    start = time.perf_counter()
    result = run_pipeline(spec, output=str(workdir / f"run-{n}"), overwrite=True, console=Console(stderr=True, quiet=True))
    elapsed = time.perf_counter() - start
    if result.funnel.kept != n:
        raise SystemExit(f"the pipeline kept {result.funnel.kept} of {n}")
    return elapsed


def main() -> None:
    C.claim_stdout()
    args = _args()
    C.require(args.images, "coco-mini images")
    import os

    import torch

    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(cores)
    images, captions = _samples(args.images, args.n)
    bare, steady, runs = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for round_index in range(args.rounds):
            bare.append(bare_rate(args.model, images[: min(len(images), 8 * args.batch_size)],
                                  captions[: min(len(images), 8 * args.batch_size)], args.batch_size, args.device))
            small = pipeline_seconds(args.model, images[: args.n_small], captions[: args.n_small], args.batch_size,
                                     args.device, Path(tmp))
            large = pipeline_seconds(args.model, images, captions, args.batch_size, args.device, Path(tmp))
            steady.append((args.n - args.n_small) / (large - small))
            runs.append({"round": round_index, "bare_samples_per_s": round(bare[-1], 2),
                         "pipeline_small_s": round(small, 1), "pipeline_large_s": round(large, 1),
                         "pipeline_steady_samples_per_s": round(steady[-1], 2)})
            C.log(runs[-1])
    bare_median, steady_median = statistics.median(bare), statistics.median(steady)
    C.emit({"benchmark": "clip_stage", "model": args.model, "device": args.device, "cores": cores,
            "batch_size": args.batch_size, "rows": [args.n_small, args.n], "runs": runs,
            "bare_forward_samples_per_s": round(bare_median, 2),
            "pipeline_samples_per_s": round(steady_median, 2),
            "ratio_pipeline_to_bare": round(steady_median / bare_median, 3), "target_ratio": 0.85})


if __name__ == "__main__":
    main()
