"""Peak memory of the 9400x9400 RGBA PNG of issue 5 section 4 (363 KB on the wire): img2dataset's
float64 matting took a worker to 6.7 GB. Each case runs in a fresh child process whose peak RSS
(``ru_maxrss``) is the figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from imaging_samples import png_rows

REPO = Path(__file__).resolve().parents[2]
SIDE = 9400
DECODED = SIDE * SIDE * (4 + 3)  # PIL's RGBA pixels + the 8-bit RGB array: 618,520,000 bytes
#: What the child holds besides the decode: the interpreter with numpy, PIL and OpenCV
#: imported (~110 MB measured), the body, strip temporaries (4 MiB of pixels, a few copies)
#: and the output. 250 MB leaves room for allocator slack; a float64 temporary of the whole
#: image would alone be 2,120 MB.
ALLOWANCE = 250_000_000

_CHILD = """
import io, json, sys
import numpy as np
from PIL import Image
from curate.imaging import ImageTransformer
from curate.stages.base import ImageOutput
result = ImageTransformer(ImageOutput(image_format="png"), max_decoded_bytes=int(sys.argv[2]))(open(sys.argv[1], "rb").read())
corner = np.asarray(Image.open(io.BytesIO(result.data)))[128, 128].tolist() if result.data else None
print(json.dumps([result.reason, result.width, result.orig_width, corner]))
"""


@pytest.fixture(scope="module")
def rgba_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rgba") / "rgba_9400.png"
    path.write_bytes(png_rows(SIDE, SIDE, color_type=6, bit_depth=8, row=b"\xff\x00\x00\x80" * SIDE))  # red, alpha 128
    return path


def run_child(path: Path, budget: int) -> tuple[list, int]:
    """(what the child printed, its peak RSS in bytes), from a runner process of its own, whose
    ``RUSAGE_CHILDREN`` therefore sees only this child."""
    runner = ("import json, resource, subprocess, sys; out = subprocess.run(sys.argv[1:], capture_output=True, "
              "text=True, check=True).stdout; print(json.dumps([json.loads(out), "
              "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024]))")
    done = subprocess.run([sys.executable, "-c", runner, sys.executable, "-c", _CHILD, str(path), str(budget)],
                          capture_output=True, text=True, cwd=REPO, check=True, timeout=300)
    out, peak = json.loads(done.stdout)
    print(f"peak RSS {peak / 1e6:.0f} MB for {out}")
    return out, peak


@pytest.mark.slow
def test_rgba_9400_is_matted_in_bounded_memory(rgba_png) -> None:
    out, peak = run_child(rgba_png, budget=DECODED)
    # red at alpha 128 on white: (255*128 + 255*127 + 127) // 255 = 255, (0 + 255*127 + 127) // 255 = 127
    assert out == [None, 256, 9400, [255, 127, 127]]
    assert peak < DECODED + ALLOWANCE, peak


@pytest.mark.slow
def test_rgba_9400_is_refused_by_the_default_budget_without_decoding(rgba_png) -> None:
    out, peak = run_child(rgba_png, budget=268_435_456)
    assert out == ["decompression_bomb", None, None, None]
    assert peak < ALLOWANCE, peak
