"""``report.html``: a run directory as one self-contained page to look at (issue 9 §1): the
funnel, a histogram of every score column with its thresholds, drops over time, per-stage
throughput, thumbnails of kept and dropped samples, and the data cards.

Written at the end of every ``curate run`` and by ``curate report RUN_DIR``; local or on a
store. Its cost is bounded whatever the run's size: the unit markers (one small JSON per unit),
the start of the first shard tar(s), and a bounded number of ledger files.
"""

from __future__ import annotations

import yaml

from curate import storage
from curate.stats import report_data
from curate.stats.cli import card_summary
from curate.stats.report_html import (
    banner,
    cards_section,
    dropped_section,
    funnel_section,
    kept_section,
    page,
    scores_section,
    throughput_section,
    timeline_section,
)
from curate.stats.samples import dropped_samples, kept_samples

REPORT_NAME = "report.html"


def write_report(run_dir: str, out: str | None = None) -> str:
    """Write the report of ``run_dir`` to ``out`` (default ``RUN_DIR/report.html``); returns where."""
    run_dir = str(run_dir).rstrip("/") or "/"
    out = str(out) if out else storage.join(run_dir, REPORT_NAME)
    storage.write_bytes(out, render_report(run_dir).encode("utf-8"))
    return out


def render_report(run_dir: str) -> str:
    run = report_data.load_run(run_dir)
    funnel, order = run.funnel, run.manifest["stage_order"]
    drops = {(s.stage, reason): n for s in funnel.stages for reason, n in s.dropped.most_common()}
    histograms = report_data.histograms(run.markers, run.thresholds)
    score_columns = {h.column for h in histograms}
    sections = {
        "funnel": funnel_section(funnel),
        "scores": scores_section(histograms),
        "timeline": timeline_section(report_data.timeline(run.markers, order)),
        "throughput": throughput_section(report_data.throughput(run.markers, order)),
        "kept": kept_section(kept_samples(run_dir, run.markers), score_columns),
        "dropped": dropped_section(dropped_samples(run_dir, run.markers, drops), score_columns),
        "cards": cards_section(run.cards, [card_summary(card) for card in run.cards]),
    }
    name = yaml.safe_load(storage.read_bytes(storage.join(run_dir, "pipeline.yaml")))["name"]
    versions = run.manifest.get("versions", {})
    meta = (f"{run_dir} · {funnel.state} · {funnel.units:,} of {funnel.units_total:,} units · "
            f"created {run.manifest.get('created', '?')} · curate {versions.get('curate', '?')}")
    return page(f"curate report: {name}", meta, banner(funnel), sections)
