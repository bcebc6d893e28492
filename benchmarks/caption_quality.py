"""Caption stages against ground truth: precision and recall per stage on the synthetic corpus.

The corpus (``curate.sample.synth``) labels every row's noise kind and caption language. Each
per-row caption stage runs alone (``setup`` + ``process`` + ``decide``, no Ray) over every row,
so no earlier stage hides what it would have dropped, and is scored against the labels it is
meant to catch:

* ``language_id`` (kept: en): ``non_english_caption`` (boilerplate and one-word fillers have no
  language: their drop rate is printed, not counted either way);
* ``caption_blocklist`` (the corpus's own list, ``blocklists/en``): ``blocklisted_caption``;
* ``cc3m_caption``: ``boilerplate_caption``, ``short_caption`` and ``non_english_caption`` (its
  vocabulary and part-of-speech rules are English); ``boilerplate_suffix`` rows must be *kept* with
  the boilerplate cropped (crop accuracy: cropped caption == true caption);
* ``cc12m_caption``: as the next, and ``non_english_caption`` (its determiner and noun rule is English);
* ``align_caption``, ``datacomp_caption``: ``short_caption`` and
  ``boilerplate_caption`` (word-count rules; most boilerplate is one or two words).

Precision and recall count only rows whose label is a caption label (the targets, ``clean`` and
the other caption kinds); image-noise rows carry clean captions and count as clean. Also
printed per stage: the drop rate of every label.

    .venv/bin/python benchmarks/caption_quality.py [--n 3000] [--seed 0] [--out data/synth-quality]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from curate.sample.synth import BLOCKLIST_DIR, write_synth_corpus  # noqa: E402
from curate.stages.registry import stage_class  # noqa: E402

#: stage kind -> (params, labels it is meant to drop)
STAGES: dict[str, tuple[dict, set[str]]] = {
    "language_id": ({"languages": ["en"]}, {"non_english_caption"}),
    "caption_blocklist": ({}, {"blocklisted_caption"}),  # lists: set in main (the corpus's own)
    "cc3m_caption": ({}, {"boilerplate_caption", "short_caption", "non_english_caption"}),
    "cc12m_caption": ({}, {"short_caption", "boilerplate_caption", "non_english_caption"}),
    "align_caption": ({}, {"short_caption", "boilerplate_caption"}),
    "datacomp_caption": ({}, {"short_caption", "boilerplate_caption"}),
}
#: Labels without a language: language ID is scored on neither side for them.
NO_LANGUAGE = {"boilerplate_caption", "short_caption"}


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=C.REPO / "data" / "synth-quality")
    return parser.parse_args()


def score(kind: str, params: dict, targets: set[str], table: pa.Table) -> dict:
    cls = stage_class(kind)
    stage = cls(cls.Params(**params))
    stage.setup()
    start = time.perf_counter()
    scored = stage.process(table)
    decision = stage.decide(scored)
    seconds = time.perf_counter() - start
    stage.teardown()
    dropped = pc.invert(pc.fill_null(decision.keep, False)).to_pylist()
    labels = table.column("noise").to_pylist()
    counted = [not (kind == "language_id" and label in NO_LANGUAGE) for label in labels]
    target = [label in targets for label in labels]
    hits = sum(d and t for d, t in zip(dropped, target, strict=True))
    dropped_counted = sum(d and c for d, c in zip(dropped, counted, strict=True))
    per_label = Counter(label for label, d in zip(labels, dropped, strict=True) if d)
    totals = Counter(labels)
    result = {
        "targets": sorted(targets),
        "precision": round(hits / max(1, dropped_counted), 4),
        "recall": round(hits / max(1, sum(target)), 4),
        "dropped": sum(dropped),
        "drop_rate_by_label": {label: round(per_label[label] / totals[label], 4) for label in sorted(totals)},
        "reasons": dict(Counter(r for r in decision.reason.to_pylist() if r is not None).most_common()),
        "captions_per_s": round(table.num_rows / seconds),
    }
    if kind == "cc3m_caption":
        suffixed = pc.equal(table.column("noise"), "boilerplate_suffix")
        kept = pc.and_(suffixed, pc.fill_null(decision.keep, False))
        cropped = pc.equal(scored.column("caption"), table.column("true_caption"))
        result["boilerplate_suffix_kept"] = round(pc.sum(kept).as_py() / max(1, pc.sum(suffixed).as_py()), 4)
        result["boilerplate_suffix_crop_accuracy"] = round(
            pc.sum(pc.and_(kept, cropped)).as_py() / max(1, pc.sum(suffixed).as_py()), 4)
    return result


def main() -> None:
    C.claim_stdout()
    args = _args()
    parquet = write_synth_corpus(args.out, args.n, args.seed)
    table = pq.read_table(parquet)
    STAGES["caption_blocklist"][0]["lists"] = str(args.out / BLOCKLIST_DIR)
    results = {}
    for kind, (params, targets) in STAGES.items():
        C.log(kind)
        results[kind] = score(kind, params, targets, table)
    C.emit({"benchmark": "caption_quality", "n": args.n, "seed": args.seed,
            "labels": dict(Counter(table.column("noise").to_pylist())), "stages": results})


if __name__ == "__main__":
    main()
