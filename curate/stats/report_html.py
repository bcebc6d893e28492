"""The report's HTML: one self-contained page (inline CSS and SVG, thumbnails as ``data:`` URIs,
no script, no external URL), sections built from :mod:`curate.stats.report_data` and
:mod:`curate.stats.samples`. Every text from the run (captions, URLs, details) is escaped; sample
URLs are shown as text, never as links, so nothing on the page leaves the file.
"""

from __future__ import annotations

import base64
import datetime
import json
from html import escape

from curate.stats import svg_charts as charts
from curate.stats.funnel import Funnel, incomplete_line
from curate.stats.report_data import Histogram, Throughput, Timeline
from curate.stats.samples import DroppedSamples, Sample

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 0 20px 40px; color: #222; }
h1 { margin: 18px 0 4px; } h2 { margin-top: 34px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { margin: 18px 0 6px; font-size: 15px; }
nav a { margin-right: 14px; } .meta { color: #555; }
.banner { background: #fff3cd; border: 1px solid #e0c36a; padding: 10px 14px; margin: 14px 0; border-radius: 4px; }
figure.chart-box { margin: 10px 0 20px; } figure.chart-box figcaption { font-weight: 600; margin-bottom: 4px; }
svg.chart { width: 100%; max-width: 760px; height: auto; display: block; }
table { border-collapse: collapse; margin: 6px 0 14px; max-width: 100%; }
td, th { border: 1px solid #ddd; padding: 3px 8px; vertical-align: top; overflow-wrap: anywhere; }
th { background: #f4f4f4; text-align: left; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 12px; }
.sample { font-size: 12px; overflow-wrap: anywhere; } .sample img { width: 128px; height: 128px; object-fit: contain;
  background: #eee; display: block; } .sample .caption { margin: 3px 0; } .sample .scores, .detail { color: #666; }
.noimage { width: 128px; height: 128px; background: #eee; color: #888; display: flex; align-items: center;
  justify-content: center; }
.empty { color: #777; font-style: italic; }
.chip { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
"""

SECTIONS = (("funnel", "Funnel"), ("scores", "Score histograms"), ("timeline", "Drops over time"),
            ("throughput", "Throughput"), ("kept", "Kept samples"), ("dropped", "Dropped samples"),
            ("cards", "Data cards"))


def page(title: str, meta: str, banner: str | None, sections: dict[str, str]) -> str:
    nav = " ".join(f'<a href="#{key}">{escape(name)}</a>' for key, name in SECTIONS)
    body = "".join(f'<section id="{key}"><h2>{escape(name)}</h2>{sections[key]}</section>' for key, name in SECTIONS)
    banner_html = f'<div class="banner" role="status">{escape(banner)}</div>' if banner else ""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1><p class=\"meta\">{escape(meta)}</p>"
            f"{banner_html}<nav>{nav}</nav>{body}</body></html>")


def banner(funnel: Funnel) -> str | None:
    return incomplete_line(funnel) if funnel.state != "complete" else None


def _figure(caption: str, svg: str) -> str:
    return f'<figure class="chart-box"><figcaption>{escape(caption)}</figcaption>{svg}</figure>'


def _empty(text: str) -> str:
    return f'<p class="empty">{escape(text)}</p>'


def funnel_section(funnel: Funnel) -> str:
    reasons = sorted({(s.stage, r) for s in funnel.stages for r in s.dropped})
    colours = {key: charts.color(i) for i, key in enumerate(reasons)}
    rows = [(s.stage, [("kept", s.kept, charts.KEPT_COLOR)]
             + [(reason, n, colours[(s.stage, reason)]) for reason, n in s.dropped.most_common()]) for s in funnel.stages]
    table = ["<table><tr><th>stage</th><th>in</th><th>kept</th><th>dropped</th><th>reasons</th></tr>"]
    for s in funnel.stages:
        why = ", ".join(f'<span class="chip" style="background:{colours[(s.stage, r)]}"></span>{escape(r)} {n:,}'
                        for r, n in s.dropped.most_common())
        table.append(f"<tr><td>{escape(s.stage)}</td><td class=n>{s.rows_in:,}</td><td class=n>{s.kept:,}</td>"
                     f"<td class=n>{sum(s.dropped.values()):,}</td><td>{why}</td></tr>")
    table.append("</table>")
    chart = charts.stacked_bars(rows, "rows per stage: kept (green) and dropped by reason")
    return _figure(f"{funnel.kept:,} of {funnel.rows:,} rows kept", chart) + "".join(table)


def scores_section(histograms: list[Histogram]) -> str:
    if not histograms:
        return _empty("no score histograms recorded in the unit markers")
    parts = []
    for h in histograms:
        markers = [charts.Marker(t.value, t.label, t.drops) for t in h.thresholds]
        scale = ", log x" if h.log_x else ""
        parts.append(_figure(f"{h.column} ({h.rows:,} rows{scale})",
                             charts.histogram(h.lows, h.highs, h.counts, f"histogram of {h.column}", markers, h.log_x)))
    return "".join(parts)


def timeline_section(line: Timeline | None) -> str:
    if line is None:
        return _empty("no commit times recorded in the unit markers")
    span = line.seconds[-1] if line.seconds else 0.0
    unit, scale = ("hours", 3600.0) if span >= 10 * 3600 else ("minutes", 60.0) if span >= 600 else ("seconds", 1.0)
    times = [t / scale for t in line.seconds]
    start = datetime.datetime.fromtimestamp(line.start, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    x_label = f"{unit} since the first unit committed ({start})"
    # Two charts: on one scale the kept rows flatten every stage's drops onto the axis.
    kept = charts.step_lines([("kept", times, line.kept, charts.KEPT_COLOR)], "cumulative kept rows over time", x_label)
    dropped = [(f"dropped by {stage}", times, values, charts.color(i)) for i, (stage, values) in enumerate(line.dropped.items())]
    return _figure("rows kept, cumulative, as units committed", kept) + (_figure(
        "rows dropped per stage, cumulative, as units committed",
        charts.step_lines(dropped, "cumulative dropped rows per stage over time", x_label)) if dropped else "")


def throughput_section(rates: list[Throughput]) -> str:
    if not rates:
        return _empty("no stage timings recorded in the unit markers")
    chart = charts.bars([(t.stage, t.rows_per_second) for t in rates], "rows per worker-second per stage", "rows/s")
    table = ["<table><tr><th>stage</th><th>rows in</th><th>worker-seconds</th><th>rows per worker-second</th></tr>"]
    table += [f"<tr><td>{escape(t.stage)}</td><td class=n>{t.rows_in:,}</td><td class=n>{t.worker_seconds:,.1f}</td>"
              f"<td class=n>{t.rows_per_second:,.1f}</td></tr>" for t in rates]
    return _figure("rows in per worker-second", chart) + "".join(table) + "</table>"


def _image(sample: Sample) -> str:
    if sample.thumbnail is None:
        return '<div class="noimage">no image</div>'
    data = base64.b64encode(sample.thumbnail).decode()
    return f'<img src="data:image/jpeg;base64,{data}" alt="{escape(sample.caption or sample.uid)}">'


def _scores(scores: dict) -> str:
    return ", ".join(f"{escape(k)}={_value(v)}" for k, v in scores.items() if v is not None)


def _value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(str(value) if not isinstance(value, dict | list) else json.dumps(value))


def _tile(sample: Sample, shown: set[str] | None = None) -> str:
    """A thumbnail with its caption, detail and scores (``shown``: only these fields under the
    picture, all of them in the tooltip)."""
    detail = f'<div class="detail">{escape(sample.detail)}</div>' if sample.detail else ""
    scores = _only(sample.scores, shown)
    tip = escape(" ".join([sample.uid, sample.url or "", json.dumps(sample.scores, default=str)]))
    return (f'<div class="sample" title="{tip}">{_image(sample)}'
            f'<div class="caption">{escape(sample.caption or "")}</div>{detail}'
            f'<div class="scores">{_scores(scores)}</div></div>')


def _only(scores: dict, shown: set[str] | None) -> dict:
    return {k: v for k, v in scores.items() if shown is None or k in shown}


def kept_section(samples: list[Sample], score_columns: set[str]) -> str:
    """``score_columns``: the fields shown under each picture (the run's histogram columns; all
    fields for a run that recorded none)."""
    if not samples:
        return _empty("no kept samples")
    shown = score_columns or None
    return f"<p>the first {len(samples)} samples of the first shard(s)</p><div class=\"grid\">" + "".join(
        _tile(s, shown) for s in samples) + "</div>"


def dropped_section(groups: list[DroppedSamples], score_columns: set[str]) -> str:
    """``score_columns``: as for :func:`kept_section` (the detail says why the row went)."""
    if not groups:
        return _empty("no rows dropped")
    shown = score_columns or None
    parts = []
    for group in groups:
        parts.append(f"<h3>{escape(group.stage)}: {escape(group.reason)} ({group.count:,} rows)</h3>")
        if group.pictures:
            parts.append('<div class="grid">' + "".join(_tile(s, shown) for s in group.pictures) + "</div>")
        elif group.texts:
            parts.append("<table><tr><th>uid</th><th>url</th><th>caption</th><th>detail</th><th>scores</th></tr>")
            parts += [f"<tr><td>{escape(s.uid)}</td><td>{escape(s.url or '')}</td><td>{escape(s.caption or '')}</td>"
                      f"<td>{escape(s.detail or '')}</td><td>{_scores(_only(s.scores, shown))}</td></tr>" for s in group.texts]
            parts.append("</table>")
        else:
            parts.append(_empty("no sample read (its units' ledgers were past the files read for the report)"))
    return "".join(parts)


def cards_section(cards: list[dict], summaries: list[list[str]]) -> str:
    if not cards:
        return _empty("no data cards in stats/")
    parts = []
    for card, lines in zip(cards, summaries, strict=True):
        name = f"{card.get('stage', card['card'])} ({card['card']})"
        summary = "".join(f"<p>{escape(line)}</p>" for line in lines)
        fields = value_html({k: v for k, v in card.items() if k != "card"})
        if lines:  # a card `curate stats` summarises keeps its fields one click away
            fields = f"<details><summary>all fields</summary>{fields}</details>"
        parts.append(f"<h3>{escape(name)}</h3>{summary}{fields}")
    return "".join(parts)


def value_html(value) -> str:
    """Any JSON value as HTML: objects as key/value tables, lists of objects as tables with a
    column per key, other lists inline."""
    if isinstance(value, dict):
        rows = "".join(f"<tr><th>{escape(str(k))}</th><td>{value_html(v)}</td></tr>" for k, v in value.items())
        return f"<table>{rows}</table>" if rows else "{}"
    if isinstance(value, list):
        if value and all(isinstance(item, dict) for item in value):
            keys = list(dict.fromkeys(k for item in value for k in item))
            head = "".join(f"<th>{escape(str(k))}</th>" for k in keys)
            body = "".join("<tr>" + "".join(f"<td>{value_html(item.get(k))}</td>" for k in keys) + "</tr>" for item in value)
            return f"<table><tr>{head}</tr>{body}</table>"
        return ", ".join(value_html(item) for item in value) or "[]"
    if value is None:
        return "—"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return _value(value)
