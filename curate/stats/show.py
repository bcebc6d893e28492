"""``curate show RUN_DIR [--reason R] [--stage S] [--uid U] [-n N] [--open PNG] [--json]``: kept
rows, or the ledger rows of a stage and/or reason, or one sample wherever it went, with its URL,
caption, scores, reason and detail; ``--open`` also draws them as a contact sheet."""

from __future__ import annotations

import argparse
import itertools
import json

from curate import storage
from curate.engine.rundir import RunDir
from curate.errors import UserError
from curate.imaging.thumbnail import thumbnail_jpeg
from curate.stats.contact_sheet import contact_sheet
from curate.stats.funnel import load_funnel
from curate.stats.show_rows import ShownRow, find_uid, kept_images, kept_rows, ledger_rows


def show(args: argparse.Namespace) -> int:
    """Print the rows the arguments choose (at most ``-n``, except a ``--uid``'s), then a summary
    line; with ``--open``, write their contact sheet."""
    if args.n < 1:
        raise UserError(f"-n must be at least 1 (got {args.n})")
    run = RunDir(args.run_dir)
    sheet = args.open is not None
    if args.uid:
        rows, scanned = find_uid(run, args.uid, thumbnails=sheet)
        rows = [r for r in rows if _matches(r, args.stage, args.reason)]
        if not rows:
            raise UserError(f"uid {args.uid} is not in {args.run_dir}"
                            f"{_filter_words(args.stage, args.reason)} (scanned {scanned} files)")
        summary = f"uid {args.uid}: {len(rows)} row{'s' * (len(rows) != 1)} (scanned all {scanned} shard and ledger files)"
    elif args.stage or args.reason:
        total = _dropped_count(run, args.stage, args.reason)
        if total == 0:
            print(f"{args.stage} dropped no rows")
            return 0
        rows = list(itertools.islice(ledger_rows(run, args.stage, args.reason, thumbnails=sheet), args.n))
        summary = f"{len(rows)} of {total:,} rows dropped{_filter_words(args.stage, args.reason)}"
    else:
        total = _funnel(run)["kept"]
        rows = list(itertools.islice(kept_rows(run), args.n))
        summary = f"{len(rows)} of {total:,} kept rows"
    if args.json:
        for row in rows:
            print(json.dumps(row.to_json()))
    else:
        for row in rows:
            print("\n".join(row_lines(row)))
        print(summary)
    if sheet:
        storage.write_bytes(str(args.open), contact_sheet(rows, _thumbnails(run, rows)))
        if not args.json:
            print(f"wrote {args.open}")
    return 0


def row_lines(row: ShownRow) -> list[str]:
    """How one row prints: its verdict line, then url, caption and scores, indented."""
    if row.kept:
        head = f"kept     {row.uid}  {row.file.removesuffix('.parquet')}.tar"
    else:
        head = f"dropped  {row.uid}  {row.stage}: {row.reason}" + (f" ({row.detail})" if row.detail else "")
    lines = [head, f"  url      {row.url}"]
    if row.caption is not None:
        lines.append(f"  caption  {' '.join(row.caption.split())}")
    if row.scores:
        lines.append("  scores   " + " ".join(f"{k}={_value(v)}" for k, v in row.scores.items()))
    return lines


def _value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _thumbnails(run: RunDir, rows: list[ShownRow]) -> dict[str, bytes]:
    """uid -> JPEG thumbnail: kept rows' from their shard's image, dropped rows' from the ledger."""
    thumbnails = {row.uid: row.thumbnail for row in rows if not row.kept and row.thumbnail}
    for uid, image in kept_images(run, rows).items():
        jpeg = thumbnail_jpeg(image)
        if jpeg is not None:
            thumbnails[uid] = jpeg
    return thumbnails


def _funnel(run: RunDir) -> dict:
    """The funnel as ``curate stats --json`` prints it: ``stats/stats.json`` of a complete run (one
    read), else merged from the unit markers."""
    if run.manifest().get("state") == "complete" and storage.exists(str(run.stats / "stats.json")):
        return json.loads(storage.read_bytes(str(run.stats / "stats.json")))
    return load_funnel(run.root).to_json()


def _dropped_count(run: RunDir, stage: str | None, reason: str | None) -> int:
    """Rows dropped by ``stage`` for ``reason``; an unknown stage or reason is a one-line error
    naming the valid ones."""
    stages = _funnel(run)["stages"]
    names = [s["stage"] for s in stages]
    if stage is not None and stage not in names:
        raise UserError(f"no stage {stage!r} in this run (stages: {', '.join(names)})")
    chosen = [s for s in stages if stage is None or s["stage"] == stage]
    reasons = sorted({r for s in chosen for r in s["reasons"]})
    if reason is not None and reason not in reasons:
        where = f" by {stage}" if stage else ""
        valid = (f"reasons{where}: {', '.join(reasons)}" if reasons
                 else f"{stage} dropped no rows" if stage else "this run dropped no rows")
        raise UserError(f"no row was dropped{where} for reason {reason!r} ({valid})")
    return sum(n for s in chosen for r, n in s["reasons"].items() if reason is None or r == reason)


def _matches(row: ShownRow, stage: str | None, reason: str | None) -> bool:
    return (stage is None or row.stage == stage) and (reason is None or row.reason == reason)


def _filter_words(stage: str | None, reason: str | None) -> str:
    return (f" by {stage}" if stage else "") + (f" for {reason}" if reason else "")
