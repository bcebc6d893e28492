"""Issue 5 §4: a 1 MB gzipped ``.tar`` holding a 1 GiB member took a process to 5.4 GB and wrote
the member into a shard as a ``.jpg``. A member over ``input.max_member_bytes`` is now never read:
measured in a child process (its peak RSS, ``ru_maxrss``), planning and reading such a tar adds
nothing to the peak of reading a tiny one."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

MEMBER = 256 << 20  # 256 MiB of zeros: ~0.3 MB gzipped; the old reader held it twice (bytes + Arrow)

CHILD = """
import json, resource, sys
from curate.config import InputSpec
from curate.io.readers import plan_units, read_unit

def read(path):
    spec = InputSpec(path=path, rows_per_unit=10)
    return [r for u in plan_units(spec) for r in read_unit(u, spec).to_pylist()]

read(sys.argv[2])  # warm-up on a tiny tar of the same shape: first use of pyarrow kernels, tarfile, gzip
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rows = read(sys.argv[1])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"growth_kb": after - before, "rows": [[r["_drop_reason"], r["_drop_detail"], r["image"] is not None]
                                                       for r in rows]}))
"""


class _Zeros(io.RawIOBase):
    def __init__(self, size: int):
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count


def write_gzipped_tar(path: Path, big: int) -> Path:
    """Samples a (small), b (a ``big``-byte jpg), c (small); gzip-compressed, named ``.tar``."""
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for name, size, stream in [("a.txt", 5, io.BytesIO(b"small")), ("b.jpg", big, io.BufferedReader(_Zeros(big), 1 << 20)),
                                   ("b.txt", 3, io.BytesIO(b"big")), ("c.jpg", 3, io.BytesIO(b"\xff\xd8x"))]:
            info = tarfile.TarInfo(name)
            info.size = size
            tar.addfile(info, stream)
    return path


def test_oversized_member_in_a_gzipped_tar_is_skipped_not_read(tmp_path: Path) -> None:
    big = write_gzipped_tar(tmp_path / "big.tar", MEMBER)
    small = write_gzipped_tar(tmp_path / "small.tar", 1000)
    assert big.stat().st_size < 2 << 20
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, "-c", CHILD, str(big), str(small)], env=env, capture_output=True, text=True,
                         check=True, timeout=300)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["rows"] == [
        [None, None, False],  # a: no image member
        ["too_large", f"b.jpg: {MEMBER} bytes, over input.max_member_bytes=20000000", False],
        [None, None, True],
    ]
    # Before: +780 MB on this input. The bound leaves room for allocator noise, far below the member.
    assert result["growth_kb"] < 32 * 1024, result
