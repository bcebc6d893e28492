"""Decode + resize + encode images/s on one pinned core: curate.imaging vs img2dataset's Resizer.

Both run in this process on the same bytes, interleaved ``--repeats`` times (fastest kept), with
OpenCV on one thread (img2dataset's Resizer sets that itself). Sets: the coco-mini photos
(333-640 px) and ``--big-count`` of them upscaled to ``--big-side`` px on the long side (PIL
Lanczos, re-encoded JPEG q95, in memory). Settings: 256 px ``border`` (the download
benchmark's) and 224 px ``center_crop``, JPEG q95.

Rates are images per CPU-second of this process (``time.process_time``), which a shared
machine disturbs far less than wall time; wall-clock rates are reported beside them.

Quality: our output pixels (before encoding) against the full-decode reference
(``reduce_margin=None``: same pipeline, JPEG decoded at full size), over the image content
(border padding excluded, identical by construction): mean absolute error over all pixels of the
set, PSNR of the set's mean squared error, and the worst single image. ``vs_img2dataset``
compares our encoded output with img2dataset's, both decoded.

``--memory`` also runs a 9400x9400 RGBA PNG (compressed, 363 KB) through each resizer in a
child process and reports its peak RSS (``ru_maxrss``, read by a small parent of its own);
img2dataset's needs ~7 GB.

    .venv/bin/python benchmarks/resize.py [--images ../shared/data/coco-mini/images] [--memory]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

TARGET = 1.5  # images/s ratio on the 640 px photos, 256 px border (issue 5 section 5)
SETTINGS = (("border", 256), ("center_crop", 224))


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=C.COCO_IMAGES, help="folder of JPEG photos")
    parser.add_argument("--big-count", type=int, default=60, help="photos upscaled for the large set")
    parser.add_argument("--big-side", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cpu", type=int, default=None, help="core to pin to (default: the last one)")
    parser.add_argument("--margins", type=float, nargs="*", default=[], help="also time these reduce_margin values")
    parser.add_argument("--memory", action="store_true", help="also the 9400x9400 RGBA PNG peak-RSS comparison")
    return parser.parse_args()


def img2dataset_resizer():
    """img2dataset's ``Resizer`` without its package ``__init__`` (which imports torch)."""
    spec = importlib.util.find_spec("img2dataset")
    path = Path(next(iter(spec.submodule_search_locations))) / "resizer.py"
    module_spec = importlib.util.spec_from_file_location("_img2dataset_resizer", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.Resizer


def upscaled(body: bytes, side: int) -> bytes:
    from PIL import Image

    with Image.open(io.BytesIO(body)) as image:
        scale = side / max(image.size)
        size = (round(image.width * scale), round(image.height * scale))
        big = image.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    big.save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def rate(fn, bodies: list[bytes]) -> tuple[float, float]:
    """(images per CPU-second, images per wall-second) of one pass."""
    cpu, wall = time.process_time(), time.perf_counter()
    for body in bodies:
        fn(body)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return len(bodies) / cpu, len(bodies) / wall


def content(array, orig_size, output):
    """The output without border padding (the padding is white in both, by construction)."""
    from curate.imaging.resize import plan

    if output.resize_mode != "border":
        return array
    step = plan(orig_size, output.image_size, output.resize_mode, output.resize_only_if_bigger)
    width, height = step.resized or orig_size
    top, left = int((output.image_size - height) / 2.0), int((output.image_size - width) / 2.0)
    return array[top:top + height, left:left + width]


def quality(pairs) -> dict:
    """MAE and PSNR over all pixels of ``(ours, reference)`` pairs, and the worst image."""
    import numpy as np

    total_abs, total_sq, count, worst_mae, worst_psnr = 0.0, 0.0, 0, 0.0, float("inf")
    for ours, reference in pairs:
        diff = np.abs(ours.astype(np.int16) - reference.astype(np.int16)).astype(np.float64)
        total_abs, total_sq, count = total_abs + diff.sum(), total_sq + (diff**2).sum(), count + diff.size
        worst_mae = max(worst_mae, diff.mean())
        worst_psnr = min(worst_psnr, _psnr((diff**2).mean()))
    return {"mae": C.round_sig(total_abs / count), "psnr_db": C.round_sig(_psnr(total_sq / count)),
            "worst_image_mae": C.round_sig(worst_mae), "worst_image_psnr_db": C.round_sig(worst_psnr)}


def _psnr(mse: float) -> float:
    import math

    return 99.0 if mse == 0 else 10 * math.log10(255**2 / mse)


def measure(bodies: list[bytes], mode: str, size: int, args, Resizer) -> dict:  # noqa: N803
    import cv2
    import numpy as np

    from curate.imaging import ImageTransformer
    from curate.stages.base import ImageOutput

    output = ImageOutput(image_size=size, resize_mode=mode)
    variants = {"curate": ImageTransformer(output), "curate_full_decode": ImageTransformer(output, reduce_margin=None)}
    variants.update({f"curate_reduce_margin_{m:g}": ImageTransformer(output, reduce_margin=m) for m in args.margins})
    theirs = Resizer(image_size=size, resize_mode=mode, resize_only_if_bigger=False, encode_format="jpg", encode_quality=95)

    def img2dataset(body: bytes):
        encoded, *_, err = theirs(io.BytesIO(body))
        assert err is None, err

    contenders = {"img2dataset": img2dataset, **variants}
    best = {name: (0.0, 0.0) for name in contenders}
    with C.CpuMeter() as meter:
        for _ in range(args.repeats):
            for name, fn in contenders.items():
                best[name] = max(best[name], rate(fn, bodies))
    result = {f"{name}_images_per_cpu_s": C.round_sig(cpu) for name, (cpu, _) in best.items()}
    result.update({f"{name}_images_per_wall_s": C.round_sig(wall) for name, (_, wall) in best.items()})
    result["speedup_vs_img2dataset"] = C.round_sig(best["curate"][0] / best["img2dataset"][0], 3)
    reference = [variants["curate_full_decode"].pixels(body) for body in bodies]
    for name, transform in variants.items():
        if name != "curate_full_decode":
            pairs = [(content(mine.array, ref.orig_size, output), content(ref.array, ref.orig_size, output))
                     for mine, ref in zip(map(transform.pixels, bodies), reference, strict=True)]
            result[f"{name}_quality_vs_full_decode"] = quality(pairs)
    decode = lambda data: cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # noqa: E731
    result["curate_quality_vs_img2dataset_output"] = quality(
        (decode(variants["curate"](body).data), decode(theirs(io.BytesIO(body))[0])) for body in bodies)
    result.update(meter.summary())
    return result


def rgba_png(width: int, height: int) -> bytes:
    """A uniform half-transparent red RGBA PNG, compressed row by row (never held decoded)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + b"\xff\x00\x00\x80" * width
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


_CHILD = """
import io, sys
body = open(sys.argv[1], "rb").read()
if sys.argv[2] == "img2dataset":
    sys.path.insert(0, sys.argv[3])
    from resize import img2dataset_resizer
    out = img2dataset_resizer()(image_size=256, resize_mode="border", resize_only_if_bigger=False)(io.BytesIO(body))
    status = out[-1] or "ok"
else:
    from curate.imaging import ImageTransformer
    from curate.stages.base import ImageOutput
    result = ImageTransformer(ImageOutput(), max_decoded_bytes=int(sys.argv[3]))(body)
    status = result.reason or "ok"
print(status)
"""
_RUNNER = """
import resource, subprocess, sys
status = subprocess.run(sys.argv[1:], capture_output=True, text=True, check=True).stdout.split()[-1]
print(status, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
"""


def memory(workdir: Path) -> dict:
    path = workdir / "rgba_9400.png"
    path.write_bytes(rgba_png(9400, 9400))
    out = {"png_bytes": path.stat().st_size}
    here = str(Path(__file__).resolve().parent)
    for name, extra in (("img2dataset", here), ("curate_default_budget", "268435456"), ("curate_budget_700MB", "700000000")):
        # a small runner starts the child: a child forked from this (large) process would report
        # our RSS as its own peak, since Linux keeps ru_maxrss across exec
        done = subprocess.run([C.PYTHON, "-c", _RUNNER, C.PYTHON, "-c", _CHILD, str(path), name.split("_")[0], extra],
                              capture_output=True, text=True, cwd=C.REPO, check=True)
        status, peak = done.stdout.split()[-2:]
        out[name] = {"status": status, "peak_rss_mb": round(int(peak) / 1e6)}
    return out


def main() -> None:
    C.claim_stdout()
    args = _args()
    import tempfile

    import cv2

    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    cv2.setNumThreads(1)
    Resizer = img2dataset_resizer()  # noqa: N806
    files = sorted(C.require(args.images, "photo folder").glob("*.jpg"))
    photos = [f.read_bytes() for f in files]
    C.log(f"{len(photos)} photos; upscaling {args.big_count} to {args.big_side} px")
    big = [upscaled(body, args.big_side) for body in photos[: args.big_count]]
    result = {"benchmark": "resize", "machine": C.machine(), "pinned_cpu": cpu, "target_speedup_640": TARGET}
    for label, bodies in ((f"photos_{len(photos)}_coco_333_640px", photos), (f"photos_{len(big)}_{args.big_side}px", big)):
        for mode, size in SETTINGS:
            C.log(label, mode, size)
            result[f"{label}/{mode}_{size}"] = measure(bodies, mode, size, args, Resizer)
    headline = result[f"photos_{len(photos)}_coco_333_640px/border_256"]["speedup_vs_img2dataset"]
    result["target_met"] = headline >= TARGET
    if args.memory:
        with tempfile.TemporaryDirectory() as workdir:
            result["rgba_9400x9400_png_peak_rss"] = memory(Path(workdir))
    C.emit(result)


if __name__ == "__main__":
    main()
