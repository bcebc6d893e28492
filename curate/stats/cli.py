"""``curate stats`` (the funnel, data cards, ``--compare``), ``curate report`` (report.html) and
``curate show`` (ledger or kept rows in the terminal)."""

from __future__ import annotations

import argparse
import importlib
import json

from rich.console import Console

from curate import storage
from curate.errors import UserError


def add_parsers(commands) -> None:
    stats = commands.add_parser("stats", help="the funnel of a run: per stage in, kept, dropped by reason")
    stats.add_argument("run_dir", nargs="?")
    stats.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"),
                       help="two runs side by side: funnels, changed drop reasons, recipe changes")
    stats.add_argument("--json", action="store_true",
                       help="print JSON instead of a table (state: complete | interrupted | running; units done of units_total)")

    report = commands.add_parser("report", help="write the run's report.html (funnel, score histograms, samples)")
    report.add_argument("run_dir")
    report.add_argument("--out", help="output file (default: RUN_DIR/report.html)")

    show = commands.add_parser("show", help="print ledger (dropped) or kept rows: URL, caption, scores, reason, detail")
    show.add_argument("run_dir")
    show.add_argument("--reason", help="only rows dropped for this reason")
    show.add_argument("--stage", help="only rows dropped by this stage")
    show.add_argument("--uid", help="this sample wherever it went: kept (which shard) or dropped (which stage, why); "
                                    "reads every shard and ledger parquet")
    show.add_argument("-n", type=int, default=10, help="at most this many rows (default 10)")
    show.add_argument("--open", metavar="PNG", help="also write a contact sheet of the rows' thumbnails to PNG")
    show.add_argument("--json", action="store_true", help="one JSON object per row instead of text")


def dispatch(args: argparse.Namespace, console: Console) -> int | None:
    if args.command == "stats":
        return _stats(args)
    if args.command == "report":
        from curate.stats.report import write_report

        load_funnel_or_fail(args.run_dir)
        path = write_report(args.run_dir, args.out)
        console.print(f"wrote {path}", soft_wrap=True, markup=False, highlight=False)
        return 0
    if args.command == "show":
        from curate.stats.show import show

        check_run_dir(args.run_dir)  # not the whole funnel: show reads stats.json, or markers only as it needs them
        return show(args)
    return None


def _stats(args: argparse.Namespace) -> int:
    from curate.stats.funnel import render_funnel

    if args.compare:
        return _compare(args)
    if args.run_dir is None:
        raise UserError("stats needs RUN_DIR (or --compare RUN_A RUN_B)")
    funnel = load_funnel_or_fail(args.run_dir)
    if args.json:
        print(json.dumps(funnel.to_json(), indent=2))
    else:
        render_funnel(funnel, Console())
        for line in card_lines(args.run_dir):
            print(line)
    return 0


#: Data cards a stage may leave in stats/ (its ``card`` field) -> the function that renders it.
_CARD_RENDERERS = {"metaclip": "curate.metaclip.card:render_card",
                   "top_fraction": "curate.stages.top_fraction:render_card"}


def data_cards(run_dir: str) -> list[dict]:
    """The data cards stages left in the run's ``stats/`` (JSON objects with a ``card`` field)."""
    cards = []
    stats = storage.join(run_dir, "stats")
    for name in storage.children(stats):
        if not name.endswith(".json") or name == "stats.json":
            continue
        card = json.loads(storage.read_bytes(storage.join(stats, name)))
        if isinstance(card, dict) and "card" in card:
            cards.append(card)
    return cards


def card_summary(card: dict) -> list[str]:
    """The lines summarising a data card of a known kind (none for others)."""
    target = _CARD_RENDERERS.get(card["card"])
    if not target:
        return []
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)(card)


def card_lines(run_dir: str) -> list[str]:
    """The human-readable summary of each data card in the run's stats/."""
    return [line for card in data_cards(run_dir) for line in card_summary(card)]


def _compare(args: argparse.Namespace) -> int:
    from curate.stats.compare import compare, render

    if args.run_dir is not None:
        raise UserError(f"stats --compare takes two runs, not RUN_DIR as well ({args.run_dir})")
    run_a, run_b = args.compare
    comparison = compare(run_a, load_funnel_or_fail(run_a), run_b, load_funnel_or_fail(run_b))
    print(json.dumps(comparison, indent=2) if args.json else "\n".join(render(comparison)))
    return 0


def check_run_dir(run_dir: str) -> None:
    if not storage.exists(storage.join(run_dir, "manifest.json")):
        raise UserError(f"{run_dir}: not a curate run directory (no manifest.json)")


def load_funnel_or_fail(run_dir: str):
    from curate.stats.funnel import load_funnel

    check_run_dir(run_dir)
    return load_funnel(run_dir)
