"""Filtering-network quality: does its clip_score separate clean from mismatched captions?

Trains (or reuses, with ``--filter-net DIR``) the default filtering network, then scores a
synthetic corpus of its own seed directly with open_clip (each image through the model's eval
transform, cosine of the normalised embeddings): ROC-AUC of ``clean`` vs ``mismatched_caption``
rows, and the share of each kept by the network's threshold. With ``--run RUN_DIR`` (a run whose
pipeline has a ``clip_score`` stage with the filtering network), also the in-pipeline precision and
recall of the threshold against the labels: kept rows from the shards' parquet (``noise`` column),
dropped ones from the ledger (stage ``clip_score``), joined to the corpus labels by URL.

    .venv/bin/python benchmarks/filter_net_quality.py [--n 3000] [--seed 99] [--filter-net DIR] [--run RUN_DIR]
Targets: ROC-AUC >= 0.95; in the run, mismatched removed >= 90 %, clean kept >= 90 %.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import claim_stdout, emit, log  # noqa: E402
from _runs import kept_rows, ledger, run_corpus, run_stage_names  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="rows of the scored synthetic corpus")
    parser.add_argument("--seed", type=int, default=99, help="its seed (not the filtering network's)")
    parser.add_argument("--filter-net", type=Path, help="a trained filtering network (default: train one)")
    parser.add_argument("--run", type=Path, help="a finished run with a clip_score stage")
    parser.add_argument("--stage", default="clip_score", help="the run's CLIP stage name in the ledger")
    args = parser.parse_args()
    claim_stdout()
    from curate.train.contrastive import embed, load_model, pair_tensors, torch_threads
    from curate.train.filter_net import ensure_filter_net, load_filter_net
    from curate.train.metrics import roc_auc
    from curate.train.shards import Pair

    tmp = Path(tempfile.mkdtemp(prefix="filter_net_quality-"))
    try:
        started = time.monotonic()
        net = load_filter_net(args.filter_net) if args.filter_net else ensure_filter_net(tmp / "net", progress=log)
        train_seconds = None if args.filter_net else round(time.monotonic() - started, 1)
        from curate.sample.synth import write_synth_corpus

        corpus = tmp / "corpus"
        table = pq.read_table(write_synth_corpus(corpus, args.n, args.seed))
        rows = [r for r in table.to_pylist() if r["noise"] in ("clean", "mismatched_caption")]
        pairs = [Pair(str(r["sample_id"]), (corpus / r["url"]).read_bytes(), r["caption"], {}) for r in rows]
        with torch_threads(2):
            model, preprocess, tokenizer = load_model(net.model, net.weights)
            image_emb, text_emb = embed(model, *pair_tensors(pairs, preprocess, tokenizer))
        scores = np.sum(image_emb * text_emb, axis=1)
        labels = np.array([r["noise"] for r in rows])
        clean, mismatched = scores[labels == "clean"], scores[labels == "mismatched_caption"]
        auc = roc_auc(clean, mismatched)
        direct = {"clean": int(len(clean)), "mismatched_caption": int(len(mismatched)), "roc_auc": round(auc, 4),
                  "clean_kept": round(float(np.mean(clean >= net.threshold)), 4),
                  "mismatched_removed": round(float(np.mean(mismatched < net.threshold)), 4)}
        result = {"filter_net": {"model": net.model, "threshold": round(net.threshold, 4),
                                 "heldout_roc_auc": round(net.roc_auc, 4), "train_seconds": train_seconds},
                  "corpus": {"n": args.n, "seed": args.seed}, "direct": direct,
                  "targets": {"roc_auc": 0.95, "mismatched_removed": 0.9, "clean_kept": 0.9}}
        met = auc >= 0.95
        if args.run:
            result["in_pipeline"] = in_pipeline(args.run, args.stage)
            met = met and result["in_pipeline"]["mismatched_removed"] >= 0.9 and result["in_pipeline"]["clean_kept"] >= 0.9
        result["target_met"] = bool(met)
        emit(result)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def in_pipeline(run_dir: Path, stage: str) -> dict:
    """Precision and recall of the run's threshold filter against the labels, over the rows that
    reached it: kept, dropped by it, or dropped by a later stage."""
    names = run_stage_names(run_dir)
    if stage not in names:
        raise SystemExit(f"{run_dir}: no stage {stage!r} in its pipeline.yaml ({names})")
    later = set(names[names.index(stage) + 1:])
    labels = dict(zip(*pq.read_table(run_corpus(run_dir), columns=["url", "noise"]).to_pydict().values(), strict=True))
    kept = kept_rows(run_dir, ["url", "noise"]).to_pydict()
    dropped = ledger(run_dir).to_pylist()
    by_stage = [labels[r["url"]] for r in dropped if r["stage"] == stage]
    after = [labels[r["url"]] for r in dropped if r["stage"] in later]
    reached = kept["noise"] + by_stage + after

    def count(values: list[str], label: str) -> int:
        return sum(v == label for v in values)

    removed = count(by_stage, "mismatched_caption")
    return {"reached": len(reached), "dropped": len(by_stage),
            "mismatched_reached": count(reached, "mismatched_caption"), "mismatched_removed_rows": removed,
            "mismatched_removed": round(removed / max(1, count(reached, "mismatched_caption")), 4),
            "clean_reached": count(reached, "clean"),
            "clean_kept": round(1 - count(by_stage, "clean") / max(1, count(reached, "clean")), 4),
            "precision": round(removed / max(1, len(by_stage)), 4),
            "dropped_by_label": {label: count(by_stage, label) for label in sorted(set(by_stage))}}


if __name__ == "__main__":
    main()
