"""Throughput of the CC3M and CC12M caption stages on one core: the stages alone, no Ray.

laion-10k's captions replicated to ``--rows`` (default 100,000), fed in batches of ``--batch``
rows (default 10,000) to ``cc3m_caption`` and ``cc12m_caption`` (``process`` + ``decide``, after
``setup``). Both score per row in Python (tokenising, WordNet and wordfreq lookups have no
vectorised form), so the baseline, timed in the same run, is the floor every such stage pays:
the captions turned into ``str`` (``to_pylist``) and split into lower-cased words
(:func:`curate.text.tokens.words`). Rates are per CPU-second of this process
(``time.process_time``): the machine is shared, and wall time would measure the neighbours.
Also: ``WordNet.open`` (parse of the dict files, once per worker) time and the RSS it adds.

    .venv/bin/python benchmarks/cc_captions.py [--laion PATH] [--rows 100000] [--batch 10000]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--laion", type=Path, default=C.LAION, help="laion-10k parquet (columns URL, TEXT)")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=2, help="timed passes over all rows; the fastest counts")
    parser.add_argument("--cpu", type=int, default=None, help="core to pin to (default: the first allowed)")
    return parser.parse_args()


def _best_cpu(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    C.claim_stdout()
    args = _args()
    C.require(args.laion, "laion-10k parquet")
    cpu = C.pin_to_one_core(args.cpu)

    import pyarrow as pa
    import pyarrow.compute as pc

    from curate.schema import CAPTION
    from curate.stages.cc3m import Cc3mCaptionFilter, Cc3mCaptionParams
    from curate.stages.cc12m import Cc12mCaptionFilter, Cc12mCaptionParams
    from curate.text.tokens import words
    from curate.text.wordnet import WordNet

    captions = C.laion_captions(args.laion, args.rows)
    batches = [pa.table({CAPTION: captions.slice(start, args.batch)}) for start in range(0, args.rows, args.batch)]
    C.log(f"{args.rows:,} captions in {len(batches)} batches of {args.batch:,}, pinned to CPU {cpu}")

    rss_before = _rss_mb()
    start = time.perf_counter()
    WordNet.open()
    open_s = time.perf_counter() - start
    rss_wordnet = _rss_mb() - rss_before

    stages = {"cc3m_caption": Cc3mCaptionFilter(Cc3mCaptionParams()),
              "cc12m_caption": Cc12mCaptionFilter(Cc12mCaptionParams())}
    setup_s = {}
    for name, stage in stages.items():
        start = time.perf_counter()
        stage.setup()
        setup_s[name] = time.perf_counter() - start

    kept = {}

    def run(stage, name):
        def go():
            kept[name] = sum(pc.sum(stage.decide(stage.process(batch)).keep).as_py() or 0 for batch in batches)
        return go

    def baseline():
        for batch in batches:
            for caption in batch.column(CAPTION).to_pylist():
                [w.lower() for w in words(caption or "")]

    for name, stage in stages.items():
        run(stage, name)()  # warm-up: wordfreq's word list and its lookup cache fill on first use
    seconds = {name: _best_cpu(run(stage, name), args.repeats) for name, stage in stages.items()}
    t_base = _best_cpu(baseline, args.repeats)

    rate = lambda s: round(args.rows / s)  # noqa: E731
    result = {
        "benchmark": "cc_captions",
        "rows": args.rows,
        "batch_rows": args.batch,
        "cores": 1,
        **{f"{name}_process_decide": {"cpu_seconds": round(s, 3), "captions_per_cpu_s": rate(s), "kept": kept[name],
                                      "setup_s": round(setup_s[name], 3)} for name, s in seconds.items()},
        "baseline_words_from_arrow": {"cpu_seconds": round(t_base, 3), "captions_per_cpu_s": rate(t_base),
                                      "note": "to_pylist + curate.text.tokens.words + lower, per caption"},
        **{f"ratio_{name}_vs_baseline": round(t_base / s, 3) for name, s in seconds.items()},
        "wordnet_open_s": round(open_s, 3),
        "wordnet_rss_added_mb": round(rss_wordnet, 1),
        "machine": C.machine(),
    }
    C.emit(result)


if __name__ == "__main__":
    main()
