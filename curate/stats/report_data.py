"""What the report shows, computed from a run directory's small files only: the manifest, one
marker per unit (``stats/units/*.json``: counters, ``committed_at``, ``seconds``, ``histograms``),
``stats/thresholds.json`` and the data cards. Nothing here is named after a stage: the stages are
the manifest's ``stage_order``, the score columns are the markers' histogram keys.

Markers written before these fields existed (older runs) lack them: the sections they feed are
then empty, never an error.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from curate import storage
from curate.stats.funnel import Funnel, build_funnel

#: Points per line of the drops-over-time chart: a 1B-row run has 100k units, and a line of 100k
#: points would make the SVG megabytes for no visible gain at 760 px.
MAX_TIMELINE_POINTS = 400
#: Bars of a histogram as drawn (the markers' bins are much finer).
DISPLAY_BINS = 40
#: Most bars of an integer score (a bar per integer up to this range, then 2, 3, ... integers).
MAX_INTEGER_BARS = 60


@dataclass
class Threshold:
    """A threshold line on a score's histogram: from ``stats/thresholds.json`` or a data card."""

    column: str
    value: float
    label: str
    drops: str | None  # "below" | "above": the side the stage drops, None where unknown


@dataclass
class Histogram:
    """One score column's histogram as drawn: bin edges, counts, and whether x is log-scaled."""

    column: str
    lows: list[float]
    highs: list[float]
    counts: list[int]
    log_x: bool
    rows: int
    thresholds: list[Threshold] = field(default_factory=list)


@dataclass
class RunData:
    run_dir: str
    manifest: dict
    funnel: Funnel
    markers: list[dict]  # one per done unit, by unit index
    thresholds: list[Threshold]
    cards: list[dict]


def load_run(run_dir: str) -> RunData:
    """Read everything the report's charts need (the samples are read by curate.stats.samples)."""
    from curate.engine.lock import live_holder
    from curate.stats.cli import data_cards

    manifest = json.loads(storage.read_bytes(storage.join(run_dir, "manifest.json")))
    markers = read_markers(run_dir)
    funnel = build_funnel(markers, manifest["stage_order"])
    funnel.units_total = manifest["units"]
    if manifest.get("state") != "complete":
        funnel.holder = live_holder(run_dir)
        funnel.state = "running" if funnel.holder else "interrupted"
    cards = data_cards(run_dir)
    return RunData(run_dir, manifest, funnel, markers, read_thresholds(run_dir) + card_thresholds(cards), cards)


def read_markers(run_dir: str) -> list[dict]:
    """Every unit marker, by unit; on a store fetched 16 at a time (one GET each)."""
    folder = storage.join(run_dir, "stats", "units")
    uris = [uri for uri in storage.list_files(folder) if uri.endswith(".json")]
    if storage.is_local(run_dir):
        markers = [json.loads(storage.read_bytes(uri)) for uri in uris]
    else:
        with ThreadPoolExecutor(16) as pool:
            markers = [json.loads(data) for data in pool.map(storage.read_bytes, uris)]
    return sorted(markers, key=lambda marker: marker["unit"])


def read_thresholds(run_dir: str) -> list[Threshold]:
    uri = storage.join(run_dir, "stats", "thresholds.json")
    if not storage.exists(uri):
        return []
    return [Threshold(entry["column"], float(entry["value"]),
                      f"{entry['stage']}: keeps {entry['keep']} {entry['value']:.4g}",
                      "below" if entry["keep"] == "above" else "above")
            for entry in json.loads(storage.read_bytes(uri))]


def card_thresholds(cards: list[dict]) -> list[Threshold]:
    """A data card that gives a ``threshold`` for a ``column`` (top_fraction's) is drawn too."""
    lines = []
    for card in cards:
        value = card.get("threshold")
        if isinstance(card.get("column"), str) and isinstance(value, int | float):
            keep = card.get("keep")
            drops = {"above": "below", "below": "above"}.get(keep) if isinstance(keep, str) else None
            lines.append(Threshold(card["column"], float(value),
                                   f"{card.get('stage', card['card'])}: {card['card']} threshold {value:.4g}", drops))
    return lines


# -- histograms -------------------------------------------------------------------------------


def histograms(markers: list[dict], thresholds: list[Threshold]) -> list[Histogram]:
    """Every score column of the markers, re-binned for display, with its thresholds; those with
    a threshold first, then by name."""
    from curate.stats.histogram import bin_edges, merge

    result = []
    merged = merge(marker.get("histograms") or {} for marker in markers)
    for column, (keys, counts) in sorted(merged.items()):
        lows, highs = (np.asarray(edges, np.float64) for edges in bin_edges(keys))
        display = display_bins(lows, highs, counts)
        display.column = column
        display.thresholds = [t for t in thresholds if t.column == column]
        result.append(display)
    return sorted(result, key=lambda h: not h.thresholds)  # the scores a stage cuts on first


def display_bins(lows: np.ndarray, highs: np.ndarray, counts: np.ndarray) -> Histogram:
    """Fine bins ``[low, high)`` -> bars: for an integer score (word counts, pixel sizes) bars
    one or more whole integers wide, at most ``MAX_INTEGER_BARS``; else ``DISPLAY_BINS`` equal
    bars in x, or in log10 x for a positive score spanning three decades or more (byte sizes)."""
    keep = (counts > 0) & np.isfinite(lows) & np.isfinite(highs)
    lows, highs, counts = lows[keep], highs[keep], counts[keep]
    rows = int(counts.sum())
    if not rows:
        return Histogram("", [], [], [], False, 0)
    low, high = float(lows.min()), float(highs.max())
    if _integers(lows, highs):
        values = np.ceil(lows)  # the smallest integer of each fine bin: its only one up to 64
        first, span = float(values.min()), float(values.max() - values.min() + 1)
        width = float(math.ceil(span / MAX_INTEGER_BARS))
        bars = math.ceil(span / width)
        edges = first - 0.5 + width * np.arange(bars + 1)
        summed = np.bincount(((values - first) // width).astype(np.int64), counts, minlength=bars)
        return Histogram("", edges[:-1].tolist(), edges[1:].tolist(), summed.astype(np.int64).tolist(), False, rows)
    log_x = low > 0 and high / low >= 1000
    if log_x:
        lows, highs, low, high = np.log10(lows), np.log10(highs), math.log10(low), math.log10(high)
    edges = np.linspace(low, high if high > low else low + 1, DISPLAY_BINS + 1)
    # Each fine bin's rows are spread over the bars it overlaps, in proportion: assigning whole
    # fine bins to one bar gave a comb (bars of 13 and 26 rows for a flat 0.1-0.4 score), as the
    # fine bins are 1/64 octave wide and the bars are not a multiple of them.
    below = np.clip((edges[:, None] - lows[None, :]) / (highs - lows)[None, :], 0, 1) @ counts
    summed = np.diff(below.round()).astype(np.int64)  # rounding the running sum keeps the total exact
    if log_x:
        edges = 10.0 ** edges
    return Histogram("", edges[:-1].tolist(), edges[1:].tolist(), summed.tolist(), log_x, rows)


def _integers(lows: np.ndarray, highs: np.ndarray) -> bool:
    """Whether the values look like integers: every fine bin at most 1 wide holds one (and there
    is such a bin: the wider bins, above 64, cannot tell)."""
    narrow = highs - lows <= 1
    return bool(narrow.any() and np.all(np.ceil(lows[narrow]) < highs[narrow]))


# -- over time and throughput -------------------------------------------------------------------


@dataclass
class Timeline:
    """Cumulative kept rows and rows dropped per stage, against seconds since the first commit."""

    start: float  # unix seconds of the first commit
    seconds: list[float]
    kept: list[int]
    dropped: dict[str, list[int]]  # stage -> cumulative rows it dropped, in stage order


def timeline(markers: list[dict], stage_order: list[str]) -> Timeline | None:
    """None where no marker has ``committed_at`` (a run made before it was recorded)."""
    timed = sorted((m for m in markers if m.get("committed_at") is not None), key=lambda m: m["committed_at"])
    if not timed:
        return None
    times = np.array([m["committed_at"] for m in timed], np.float64)
    kept = np.cumsum([m["kept"] for m in timed])
    dropped = {stage: np.cumsum([sum(m["drops"].get(stage, {}).values()) for m in timed]) for stage in stage_order}
    # Evenly spaced units and always the last: the line ends on the run's totals.
    pick = np.unique(np.linspace(0, len(timed) - 1, min(len(timed), MAX_TIMELINE_POINTS)).round().astype(int))
    return Timeline(float(times[0]), (times[pick] - times[0]).tolist(), kept[pick].tolist(),
                    {stage: values[pick].tolist() for stage, values in dropped.items() if values[-1] > 0})


@dataclass
class Throughput:
    stage: str
    rows_in: int
    worker_seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows_in / self.worker_seconds if self.worker_seconds > 0 else 0.0


def throughput(markers: list[dict], stage_order: list[str]) -> list[Throughput]:
    """Per stage: the rows that entered it in the units that timed it, over its worker-seconds."""
    totals = {stage: Throughput(stage, 0, 0.0) for stage in stage_order}
    for marker in markers:
        seconds = marker.get("seconds") or {}
        alive = marker["rows"]
        for stage in stage_order:
            if stage in seconds:
                totals[stage].rows_in += alive
                totals[stage].worker_seconds += float(seconds[stage])
            alive -= sum(marker["drops"].get(stage, {}).values())
    return [t for t in totals.values() if t.worker_seconds > 0]
