"""Curation pays (DataComp's question, on our data): the same tiny CLIP, trained for the same
number of samples seen, on (a) the uncurated synthetic pool and (b) the subset a quickstart run
kept, evaluated by zero-shot retrieval on a clean held-out set. (b) must win.

(a) is every row of the run's input corpus with a decodable image, caption as given (noise and
all); (b) is the run's kept rows (captions from its shards). Both take their images from the
corpus files through the same squaring to the model's input, so only *which* pairs differ. The
held-out set is the clean rows of another synthetic corpus (``--heldout-seed``). Training is
curate's seeded in-process loop (curate/train/contrastive.py) with the filtering network's
recipe; ``--samples-seen`` defaults to ``--epochs`` passes over (b).

    .venv/bin/python benchmarks/curation_pays.py [--run RUN_DIR] [--epochs 8] [--heldout-n 1000]
Without ``--run`` it runs ``curate run pipelines/quickstart.yaml`` into a temporary directory first.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CURATE, REPO, claim_stdout, emit, log  # noqa: E402
from _runs import kept_rows, run_corpus  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, help="a finished quickstart run (default: run one)")
    parser.add_argument("--model", default="curate-tiny-clip")
    parser.add_argument("--epochs", type=int, default=8, help="passes over the curated set; the pool gets as many samples")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0, help="initialisation and batch order (both arms)")
    parser.add_argument("--heldout-n", type=int, default=1000, help="rows of the held-out corpus (its clean rows are used)")
    parser.add_argument("--heldout-seed", type=int, default=4242)
    args = parser.parse_args()
    claim_stdout()
    tmp = Path(tempfile.mkdtemp(prefix="curation_pays-"))
    try:
        emit(measure(args, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure(args, tmp: Path) -> dict:
    from curate.train.contrastive import embed, load_model, pair_tensors, torch_threads, train_contrastive
    from curate.train.filter_net import trusted_pairs
    from curate.train.metrics import retrieval_recall
    from curate.train.shards import Pair

    run = args.run
    if run is None:
        run = tmp / "quickstart"
        started = time.monotonic()
        subprocess.run([CURATE, "run", "pipelines/quickstart.yaml", "--output", str(run)], cwd=REPO, check=True)
        log(f"quickstart run in {time.monotonic() - started:.1f} s")
    corpus_path = run_corpus(run)
    corpus_dir = corpus_path.parent
    with torch_threads(2):
        model, preprocess, tokenizer = load_model(args.model, seed=args.seed)
        size = model.visual.image_size
        size = size[0] if isinstance(size, (tuple, list)) else int(size)
        pool = pool_pairs(corpus_path, size)
        kept = kept_rows(run, ["url", "caption"]).to_pylist()
        image_of = {p.meta["url"]: p.image for p in pool}
        curated = [Pair(r["url"], image_of[r["url"]], r["caption"], {}) for r in kept]
        heldout = trusted_pairs(tmp / "heldout", args.heldout_n, args.heldout_seed, size)
        held_tensors = pair_tensors(heldout, preprocess, tokenizer)
        steps = args.epochs * (len(curated) // args.batch_size)
        log(f"pool {len(pool)} pairs, curated {len(curated)}, held-out {len(heldout)}; {steps} steps of "
            f"{args.batch_size} each (corpus {corpus_dir})")
        arms = {}
        for name, pairs in (("pool", pool), ("curated", curated)):
            model, _, _ = load_model(args.model, seed=args.seed)
            images, texts = pair_tensors(pairs, preprocess, tokenizer)
            started = time.monotonic()
            losses = train_contrastive(model, images, texts, epochs=1, steps=steps, batch_size=args.batch_size,
                                       lr=args.lr, weight_decay=0.1, warmup_fraction=0.1, seed=args.seed,
                                       progress=lambda line, n=name: log(f"{n}: {line}"))
            recall = retrieval_recall(*embed(model, *held_tensors))
            arms[name] = {"pairs": len(pairs), "epochs": round(steps * args.batch_size / len(pairs), 2),
                          "final_loss": round(losses[-1], 4), "train_seconds": round(time.monotonic() - started, 1),
                          **recall, "mean_recall": round(sum(v for d in recall.values() for v in d.values()) / 4, 4)}
    wins = all(arms["curated"][d][k] > arms["pool"][d][k] for d in ("image_to_text", "text_to_image")
               for k in ("R@1", "R@5"))
    return {"model": args.model, "samples_seen": steps * args.batch_size, "batch_size": args.batch_size,
            "heldout": {"pairs": len(heldout), "seed": args.heldout_seed}, "run": str(run), **arms,
            "target": "curated beats pool on R@1 and R@5 in both directions", "target_met": wins}


def pool_pairs(corpus_path: Path, size: int) -> list:
    """Every corpus row with a decodable image, squared to ``size`` (exact duplicates included:
    they are part of the pool)."""
    from curate.train.filter_net import square_jpeg
    from curate.train.shards import Pair

    pairs, squared = [], {}
    for row in pq.read_table(corpus_path, columns=["url", "caption", "sample_id"]).to_pylist():
        path = corpus_path.parent / row["url"]
        if row["url"] not in squared:
            try:
                squared[row["url"]] = square_jpeg(path, size)
            except Exception:  # noqa: BLE001 (missing or broken: what the pool has; it cannot train)
                squared[row["url"]] = None
        image = squared[row["url"]]
        if image is None:
            continue
        pairs.append(Pair(str(row["sample_id"]), image, row["caption"], {"url": row["url"]}))
    return pairs


if __name__ == "__main__":
    main()
