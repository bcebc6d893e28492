"""``curate models pull NAME...`` (the only command that downloads weights) and ``curate models
list`` (what the cache holds, with sizes and sha256, the hash the manifest records)."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from curate.errors import UserError


def add_parsers(commands) -> None:
    models = commands.add_parser("models", help="the model cache: pull weights on a machine with internet, list them")
    tools = models.add_subparsers(dest="tool", required=True)
    pull = tools.add_parser("pull", help="fetch weights into the cache ($CURATE_CACHE, default ~/.cache/curate)")
    pull.add_argument("names", nargs="+", metavar="NAME",
                      help="MODEL:TAG (an open_clip pretrained tag, e.g. ViT-B-32:openai), hf-hub:ORG/REPO (an "
                           "open_clip hub model), hf-hub:ORG/REPO/FILE or an https URL (one weights file)")
    listing = tools.add_parser("list", help="cached files with sizes and sha256")
    listing.add_argument("--json", action="store_true", help="one JSON object per file")


def dispatch(args: argparse.Namespace, console: Console) -> int | None:
    if args.command != "models":
        return None
    from curate.models.weights import cache_dir, cached_files, file_sha256

    if args.tool == "pull":
        from curate.models.open_clip_models import pull

        for name in args.names:
            try:
                paths = pull(name)
            except UserError:
                raise
            except Exception as err:  # noqa: BLE001 (a network or hub failure is the user's to fix: one line)
                raise UserError(f"models pull {name}: {type(err).__name__}: {str(err).splitlines()[0][:300]}") from None
            for path in paths:
                console.print(f"{name}: {path} ({path.stat().st_size:,} bytes, sha256 {file_sha256(path)[:16]})",
                              soft_wrap=True, markup=False, highlight=False)
        return 0
    rows = [(ref, path, path.stat().st_size, file_sha256(path)) for ref, path in cached_files()]
    if args.json:
        for ref, path, size, digest in rows:
            print(json.dumps({"ref": ref, "path": str(path), "bytes": size, "sha256": digest}))
        return 0
    table = Table(title=f"model cache {cache_dir()}")
    for column in ("reference", "bytes", "sha256"):
        table.add_column(column, justify="right" if column == "bytes" else "left", overflow="fold")
    for ref, _, size, digest in rows:
        table.add_row(ref, f"{size:,}", digest)
    Console().print(table)
    if not rows:
        print("the cache is empty: `curate models pull NAME` fills it on a machine with internet")
    return 0
