"""concept_balance (LLaVA's CC3M concept balancing): phrase extraction and the reduce at CC3M size.

1. **observe**: captions/s of the stage's ``observe`` (noun-phrase chunking, phrase hashes, uid
   halves) on real captions (laion-10k alt-text and COCO val2017 human captions), one process,
   after ``setup``: a first pass (words met for the first time are classified) and a second pass
   over the same captions (every word cached, as in a worker's later batches); baseline in the
   same run: the chunker's tokenising regex alone. CPU seconds are reported beside wall time:
   on a shared machine they are the steadier figure.
2. **reduce**: the stage's ``reduce`` (one call over every summary row: the stage's key is empty)
   on a synthetic summary of ``--captions`` captions (default 3,000,000, CC3M's size), each with
   1 + Poisson(``--mean-extra``) distinct phrases drawn from a Zipf(``--zipf``) law over
   ``--vocabulary`` phrases, run in a child process: wall time and its peak RSS (sampled every
   50 ms, with the RSS before the reduce, i.e. the summary itself). Baseline in the same run:
   LLaVA's procedure as written (a Python loop over phrases and their captions, dicts and sets)
   on the first ``--naive-captions`` captions, against ``reduce`` on the same captions (the kept
   sets are checked equal).

    .venv/bin/python benchmarks/concept_balance.py [--captions 3000000] [--laion PATH] [--coco PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

COCO = C.SHARED_DATA / "coco-captions-val2017" / "captions_val2017.json"


def _args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--laion", type=Path, default=C.LAION, help="laion-10k parquet (column TEXT)")
    parser.add_argument("--coco", type=Path, default=COCO, help="COCO captions_val2017.json")
    parser.add_argument("--captions", type=int, default=3_000_000, help="captions of the synthetic reduce")
    parser.add_argument("--vocabulary", type=int, default=1_500_000, help="distinct phrases of the synthetic pool")
    parser.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent of phrase frequencies")
    parser.add_argument("--mean-extra", type=float, default=2.0, help="phrases per caption: 1 + Poisson(this)")
    parser.add_argument("--naive-captions", type=int, default=200_000, help="captions of the naive baseline")
    parser.add_argument("--per-phrase", type=int, default=100)
    parser.add_argument("--min-count", type=int, default=3)
    parser.add_argument("--child", choices=["reduce"], help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _stage(args):
    from curate.stages.concept_balance import ConceptBalanceFilter, ConceptBalanceParams

    return ConceptBalanceFilter(ConceptBalanceParams(min_count=args.min_count, per_phrase=args.per_phrase))


def observe_throughput(args) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curate.schema import ROW, UNIT
    from curate.text.phrases import _TOKEN

    stage = _stage(args)
    start = time.perf_counter()
    stage.setup()
    setup_s = time.perf_counter() - start
    out = {"setup_s": round(setup_s, 2)}
    coco = json.loads(C.require(args.coco, "COCO captions").read_text())["annotations"]
    sources = {"laion_10k": pq.read_table(C.require(args.laion, "laion-10k parquet"), columns=["TEXT"]).column(0).to_pylist(),
               "coco_val2017": [a["caption"] for a in coco]}
    for name, captions in sources.items():
        n = len(captions)
        table = pa.table({"uid": [f"{i:032x}" for i in range(n)], "caption": pa.array(captions, pa.string()),
                          UNIT: pa.array([0] * n, pa.int32()), ROW: pa.array(range(n), pa.int32())})
        start, cpu = time.perf_counter(), time.process_time()
        summary = stage.observe(table)
        observe_s, observe_cpu = time.perf_counter() - start, time.process_time() - cpu
        cpu = time.process_time()
        stage.observe(table)  # again, every word's class cached (a worker's later batches)
        warm_cpu = time.process_time() - cpu
        cpu = time.process_time()
        for caption in captions:
            _TOKEN.findall((caption or "").lower())
        tokens_cpu = time.process_time() - cpu
        out[name] = {"captions": n, "phrases_per_caption": round(summary.num_rows / n, 2),
                     "observe_captions_per_s": round(n / observe_s), "observe_captions_per_cpu_s": round(n / observe_cpu),
                     "observe_warm_captions_per_cpu_s": round(n / warm_cpu),
                     "baseline_tokenise_captions_per_cpu_s": round(n / tokens_cpu),
                     "ratio_to_baseline_cpu": C.round_sig(tokens_cpu / observe_cpu, 3)}
    return out


def synthetic_summary(args, captions: int):
    """(summary table, per-caption phrase id lists as offsets) of a Zipf-distributed pool."""
    import numpy as np
    import pyarrow as pa

    from curate.schema import ROW, UNIT

    rng = np.random.default_rng(0)
    per_caption = 1 + rng.poisson(args.mean_extra, captions)
    weights = 1.0 / np.arange(1, args.vocabulary + 1) ** args.zipf
    cdf = np.cumsum(weights) / weights.sum()
    phrase = np.searchsorted(cdf, rng.random(int(per_caption.sum())))
    caption = np.repeat(np.arange(captions), per_caption)
    pairs = np.unique(caption.astype(np.int64) << 32 | phrase)  # a caption's phrases are distinct
    caption, phrase = (pairs >> 32).astype(np.int64), (pairs & 0xFFFFFFFF).astype(np.uint64)
    hashes = _phrase_hash(phrase)
    uid = np.random.default_rng(1).integers(0, 2**63, (captions, 2), dtype=np.int64).astype(np.uint64)
    rows_per_unit = 10_000
    table = pa.table({"phrase_hash": pa.array(hashes), UNIT: pa.array((caption // rows_per_unit).astype(np.int32)),
                      ROW: pa.array((caption % rows_per_unit).astype(np.int32)),
                      "uid_hi": pa.array(uid[caption, 0]), "uid_lo": pa.array(uid[caption, 1])})
    return table, caption, phrase, uid


def _phrase_hash(phrase):
    """A distinct 64-bit stand-in for the hash of synthetic phrase id ``phrase`` (odd multiplier: a bijection)."""
    import numpy as np

    return (phrase * np.uint64(0x9E3779B97F4A7C15)) ^ np.uint64(0x5851F42D4C957F2D)


def naive(caption, phrase, uid, min_count: int, per_phrase: int, seed: int) -> set[int]:
    """LLaVA's procedure as written, over Python objects: the kept caption indexes."""

    from curate.stages.concept_balance import _draws

    hashes = _phrase_hash(phrase)
    draws = _draws(uid[caption, 0], uid[caption, 1], hashes, seed).tolist()
    carriers: dict[int, list[tuple[int, int, int, int]]] = {}
    for c, p, d in zip(caption.tolist(), phrase.tolist(), draws, strict=True):
        carriers.setdefault(p, []).append((d, int(uid[c, 0]), int(uid[c, 1]), c))
    counts = Counter({p: len(v) for p, v in carriers.items()})
    key = {int(p): int(h) for p, h in zip(phrase.tolist(), hashes.tolist(), strict=True)}
    taken: set[int] = set()
    for p in sorted((p for p, n in counts.items() if n >= min_count), key=lambda p: (counts[p], key[p])):
        rows = carriers[p]
        fresh = sorted(r for r in rows if r[3] not in taken)
        for _, _, _, c in fresh[: max(0, per_phrase - (len(rows) - len(fresh)))]:
            taken.add(c)
    return taken


def reduce_child(args) -> None:
    """In a fresh process: build the summary, then time ``reduce`` and sample its peak RSS."""
    import numpy as np
    import psutil

    from curate.schema import ROW, UNIT

    stage = _stage(args)
    table, caption, phrase, uid = synthetic_summary(args, args.captions)
    proc = psutil.Process()
    before = proc.memory_info().rss
    peak = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start, cpu = time.perf_counter(), time.process_time()
    verdicts = stage.reduce(table)
    reduce_s, reduce_cpu = time.perf_counter() - start, time.process_time() - cpu
    stop.set()
    sampler.join()
    selected = verdicts.column("concept_selected").to_numpy(zero_copy_only=False)
    counts = np.bincount(phrase.astype(np.int64))
    result = {"captions": args.captions, "pairs": table.num_rows, "summary_mb": round(table.nbytes / 2**20, 1),
              "frequent_phrases": int((counts >= args.min_count).sum()),
              "phrases_walked_one_by_one": int((counts > args.per_phrase).sum()),
              "verdicts": verdicts.num_rows, "kept": int(selected.sum()), "reduce_s": round(reduce_s, 2),
              "reduce_cpu_s": round(reduce_cpu, 2),
              "rss_before_reduce_mb": round(before / 2**20), "peak_rss_during_reduce_mb": round(peak[0] / 2**20)}

    # The naive baseline and ``reduce`` on the first captions only (same kept set).
    small = caption < args.naive_captions
    sub = table.filter(small)
    cpu = time.process_time()
    sub_verdicts = stage.reduce(sub)
    sub_reduce_s = time.process_time() - cpu
    cpu = time.process_time()
    expected = naive(caption[small], phrase[small], uid, args.min_count, args.per_phrase, 0)
    naive_s = time.process_time() - cpu
    kept_rows = sub_verdicts.filter(sub_verdicts.column("concept_selected"))
    got = set((kept_rows.column(UNIT).to_numpy().astype(np.int64) * 10_000 + kept_rows.column(ROW).to_numpy()).tolist())
    result["baseline"] = {"captions": args.naive_captions, "naive_python_cpu_s": round(naive_s, 2),
                          "reduce_cpu_s": round(sub_reduce_s, 3), "ratio_to_baseline": C.round_sig(naive_s / sub_reduce_s, 3),
                          "kept": len(got), "same_kept_set": got == expected}
    print(json.dumps(result), flush=True)


def main() -> None:
    args = _args()
    if args.child == "reduce":
        reduce_child(args)
        return
    C.claim_stdout()
    out = {"benchmark": "concept_balance", "machine": C.machine()}
    C.log("observe throughput on real captions")
    with C.CpuMeter() as meter:
        out["observe"] = observe_throughput(args)
    out["observe"].update(meter.summary())
    C.log(f"reduce on {args.captions:,} synthetic captions (child process)")
    child = subprocess.run([C.PYTHON, __file__, "--child", "reduce", *sys.argv[1:]], capture_output=True, text=True,
                           check=False)
    sys.stderr.write(child.stderr)
    if child.returncode != 0:
        sys.exit(f"reduce child failed ({child.returncode})")
    out["reduce"] = json.loads(child.stdout.strip().splitlines()[-1])
    out["reduce"]["settings"] = {"vocabulary": args.vocabulary, "zipf": args.zipf, "mean_extra_phrases": args.mean_extra,
                                 "min_count": args.min_count, "per_phrase": args.per_phrase}
    C.emit(out)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
