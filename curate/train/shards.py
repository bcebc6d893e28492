"""WebDataset shards for training and evaluation: what a run directory holds (``shards/*.tar``
sized by ``shards/sizes.json``), pairs read back from shards, and pair shards written directly
(trusted data, benchmark pools) in the layout a run writes."""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from curate.errors import UserError
from curate.io.tar_writer import ShardTarWriter

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
_NUMBERED = re.compile(r"(\d+)\.tar")


@dataclass(frozen=True)
class ShardSet:
    """Tar shards and their sample count; ``train_data`` is open_clip's ``--train-data`` for them."""

    files: tuple[Path, ...]
    num_samples: int
    train_data: str


def run_shards(run_dir: str | Path) -> ShardSet:
    """The shards of a local run directory (or a directory of shards) with ``sizes.json``: the
    sample count comes from there, never typed by hand. One-line UserError otherwise."""
    root = Path(run_dir).expanduser()
    if "://" in str(run_dir):
        raise UserError(f"--shards {run_dir}: give a local run directory (copy the shards here, or pass the "
                        "--train-data that `curate run` printed to open_clip directly)")
    shards = root / "shards" if (root / "shards").is_dir() else root
    sizes_path = shards / "sizes.json"
    if not sizes_path.is_file():
        raise UserError(f"--shards {run_dir}: no shards/sizes.json there (give the directory of a finished "
                        "`curate run`, which writes shards/*.tar and shards/sizes.json)")
    try:
        sizes = {name: int(count) for name, count in json.loads(sizes_path.read_text()).items()}
    except (ValueError, TypeError, AttributeError) as err:
        raise UserError(f"{sizes_path}: not a JSON object of shard name -> sample count ({err})") from None
    names = sorted(name for name, count in sizes.items() if count > 0)
    if not names:
        raise UserError(f"--shards {run_dir}: the run kept no samples (shards/sizes.json lists none)")
    missing = [name for name in names if not (shards / name).is_file()]
    if missing:
        raise UserError(f"--shards {run_dir}: {len(missing)} shard(s) listed in sizes.json are missing, "
                        f"e.g. {shards / missing[0]}")
    files = tuple(shards / name for name in names)
    return ShardSet(files, sum(sizes[name] for name in names), _train_data(shards, names))


def _train_data(shards: Path, names: list[str]) -> str:
    """A brace range when the names are one contiguous numbered run (``{00000..00003}.tar``),
    else every file joined by ``::`` (which open_clip and webdataset read as a list)."""
    numbers = [_NUMBERED.fullmatch(name) for name in names]
    if all(numbers) and len({len(m.group(1)) for m in numbers}) == 1:
        values = [int(m.group(1)) for m in numbers]
        if values == list(range(values[0], values[0] + len(values))):
            if len(values) == 1:
                return str((shards / names[0]).resolve())
            first, last = numbers[0].group(1), numbers[-1].group(1)
            return f"{shards.resolve()}/{{{first}..{last}}}.tar"
    return "::".join(str((shards / name).resolve()) for name in names)


def expand_shards(spec: str) -> list[Path]:
    """A run directory, a directory of shards, a tar file, or a brace pattern
    (``dir/{00000..00009}.tar``, ``a.tar::b.tar``) -> the tar files; one-line UserError if none exist."""
    import braceexpand

    path = Path(spec).expanduser()
    if path.is_dir():
        return list(run_shards(path).files)
    files = [Path(f).expanduser() for part in spec.split("::") for f in braceexpand.braceexpand(part)]
    missing = [f for f in files if not f.is_file()]
    if not files or missing:
        raise UserError(f"--shards {spec}: {missing[0] if missing else spec} is not a tar shard, a run directory "
                        "or a brace pattern of shards")
    return files


@dataclass(frozen=True)
class Pair:
    key: str
    image: bytes
    caption: str
    meta: dict


def read_pairs(files: Iterable[Path]) -> Iterator[Pair]:
    """Samples with an image and a caption, in shard order (a sample missing either is skipped,
    as open_clip's trainer skips it)."""
    for file in files:
        members: dict[str, dict[str, bytes]] = {}
        order: list[str] = []
        with tarfile.open(file) as tar:
            for info in tar:
                key, dot, ext = info.name.partition(".")  # webdataset's rule: the key ends at the first dot
                if not info.isfile() or not dot:
                    continue
                if key not in members:
                    members[key] = {}
                    order.append(key)
                members[key][ext.lower()] = tar.extractfile(info).read()
        for key in order:
            sample = members[key]
            image = next((sample[ext] for ext in IMAGE_EXTS if ext in sample), None)
            if image is None or "txt" not in sample:
                continue
            meta = json.loads(sample["json"]) if "json" in sample else {}
            yield Pair(key, image, sample["txt"].decode("utf-8"), meta)


def write_pair_shards(out_dir: Path, pairs: Iterable[Pair], samples_per_shard: int) -> ShardSet:
    """Writes ``out_dir/{00000..}.tar`` (``<key>.jpg``, ``.txt``, ``.json``: a run's layout) and
    ``sizes.json``; returns them as a ShardSet."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sizes: dict[str, int] = {}
    handle, writer = None, None
    for index, pair in enumerate(pairs):
        if index % samples_per_shard == 0:
            if writer is not None:
                writer.close()
                handle.close()
            name = f"{index // samples_per_shard:05d}.tar"
            handle = open(out_dir / name, "wb")  # noqa: SIM115 (closed when the shard is full, below)
            writer = ShardTarWriter(handle)
            sizes[name] = 0
        writer.add(pair.key, {"jpg": pair.image, "txt": pair.caption.encode("utf-8"),
                              "json": json.dumps({"key": pair.key, "caption": pair.caption, **pair.meta}).encode()})
        sizes[name] += 1
    if writer is not None:
        writer.close()
        handle.close()
    (out_dir / "sizes.json").write_text(json.dumps(sizes, indent=1) + "\n")
    return run_shards(out_dir)
