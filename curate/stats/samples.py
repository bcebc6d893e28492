"""A few samples to look at, read with a bound: kept ones from the first shard tars (image,
caption, and the fields of the ``.json`` member), dropped ones per (stage, reason) from the
ledger (``rejects/*.parquet``: its ``thumbnail``, ``caption`` and ``scores``, a JSON object of
the row's other columns when dropped, where the run recorded them; older ledgers lack them).
A 1B-row run has ~100k ledger files: only those of units whose marker counts a reason still
short of samples are read, and at most ``max_files`` of them. The engine keeps ledger thumbnails
in the first 64 units and every 1024th (curate.engine.blocks), which the unit order reads first.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate import storage
from curate.imaging.thumbnail import thumbnail_jpeg

#: Shard ``.json`` fields shown apart from the scores.
SAMPLE_FIELDS = ("uid", "url", "caption")


@dataclass
class Sample:
    uid: str
    caption: str | None
    url: str | None = None
    thumbnail: bytes | None = None  # JPEG, at most 128 px a side
    scores: dict = field(default_factory=dict)
    detail: str | None = None


@dataclass
class DroppedSamples:
    """The samples read for one (stage, reason): pictures where the rows had images, else text."""

    stage: str
    reason: str
    count: int  # rows the run dropped for it
    pictures: list[Sample] = field(default_factory=list)
    texts: list[Sample] = field(default_factory=list)

    def satisfied(self, pictures: int, texts: int) -> bool:
        # A reason whose rows had images shows pictures (the ledger keeps 2 per unit part, so
        # more files are read for them); one whose first rows had none (caption filters,
        # download errors) never will: its text rows are enough.
        return len(self.pictures) >= pictures or (not self.pictures and len(self.texts) >= texts)


def kept_samples(run_dir: str, markers: list[dict], count: int = 24) -> list[Sample]:
    """The first ``count`` samples of the committed shards, in shard order."""
    tars = sorted(name for marker in markers for name in marker.get("files", {})
                  if name.startswith("shards/") and name.endswith(".tar"))
    samples: list[Sample] = []
    for name in tars:
        samples += _tar_samples(storage.join(run_dir, name), count - len(samples))
        if len(samples) >= count:
            break
    return samples


def _tar_samples(uri: str, count: int) -> list[Sample]:
    """Up to ``count`` samples from the start of one shard tar, streamed (the rest is never read)."""
    members: dict[str, dict[str, bytes]] = {}
    with storage.open_input(uri) as handle, tarfile.open(fileobj=handle, mode="r|") as tar:
        for member in tar:
            key, _, extension = member.name.partition(".")
            if key not in members and len(members) == count:
                break  # a sample's members are adjacent: the previous one is whole
            data = tar.extractfile(member)
            members.setdefault(key, {})[extension] = data.read() if data else b""
    samples = []
    for key, parts in members.items():
        record = json.loads(parts.pop("json", b"{}") or b"{}")
        text = parts.pop("txt", None)
        image = next(iter(parts.values()), None)  # the one member left is the image, whatever its format
        samples.append(Sample(uid=record.get("uid", key), url=record.get("url"),
                              caption=record.get("caption", text.decode("utf-8", "replace") if text else None),
                              thumbnail=thumbnail_jpeg(image),
                              scores={k: v for k, v in record.items() if k not in SAMPLE_FIELDS}))
    return samples


def dropped_samples(run_dir: str, markers: list[dict], drops: dict[tuple[str, str], int], pictures: int = 6,
                    texts: int = 4, max_files: int = 48) -> list[DroppedSamples]:
    """Per (stage, reason) in ``drops`` (its row count), up to ``pictures`` samples with a
    thumbnail, else up to ``texts`` without; ledger files read in unit order, only those of
    units that dropped rows for a reason still short, at most ``max_files``."""
    found = {key: DroppedSamples(key[0], key[1], n) for key, n in drops.items()}
    read = 0
    for marker in markers:
        short = {(stage, reason) for stage, reasons in marker["drops"].items() for reason in reasons
                 if (stage, reason) in found and not found[(stage, reason)].satisfied(pictures, texts)}
        if not short:
            continue
        for name in sorted(n for n in marker.get("files", {}) if n.startswith("rejects/")):
            if read == max_files:
                return list(found.values())
            read += 1
            _take_from(storage.join(run_dir, name), [found[key] for key in sorted(short)], pictures, texts)
    return list(found.values())


def _take_from(uri: str, wanted: list[DroppedSamples], pictures: int, texts: int) -> None:
    """Samples from one ledger file, read a batch at a time until every wanted reason has its
    samples (a 1M-row unit's ledger can hold a million rows)."""
    with storage.open_input(uri) as handle:
        for batch in pq.ParquetFile(handle).iter_batches(batch_size=8192):
            table = pa.Table.from_batches([batch])
            for entry in wanted:
                rows = table.filter(pc.and_(pc.equal(table.column("stage"), entry.stage),
                                            pc.equal(table.column("reason"), entry.reason)))
                if "thumbnail" in table.column_names:
                    with_picture = pc.is_valid(rows.column("thumbnail"))
                    entry.pictures += _samples(rows.filter(with_picture), pictures - len(entry.pictures))
                    rows = rows.filter(pc.invert(with_picture))
                if not entry.pictures:
                    entry.texts += _samples(rows, texts - len(entry.texts))
            if all(entry.satisfied(pictures, texts) for entry in wanted):
                return


def _samples(rows: pa.Table, count: int) -> list[Sample]:
    if count <= 0:
        return []
    return [Sample(uid=row["uid"], caption=row.get("caption"), url=row.get("url"), thumbnail=row.get("thumbnail"),
                   detail=row.get("detail"), scores=json.loads(row["scores"]) if row.get("scores") else {})
            for row in rows.slice(0, count).to_pylist()]
