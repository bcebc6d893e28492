"""Caption-rule throughput on one core: the stages alone, no Ray.

laion-10k's captions replicated to ``--rows`` (default 1,000,000), fed in batches of
``--batch`` rows (default 100,000) to

* ``datacomp_caption`` (DataCompCaptionFilter): ``process`` + ``decide``;
* ``laion_caption`` (LaionCaptionFilter): ``process`` + ``decide``;
* both through the engine's ``apply_stage`` (live/dropped split + drop marking), the path a
  pipeline runs (needs the bookkeeping columns, added here as in ``read_unit``);

against a plain-Python loop over the same captions implementing the same rules
(LAION: ``len(c) >= 5``; DataComp: ``len(c.split()) > 2 and len(c) > 5``), timed in the same
run, both over ready-made Python strings and fed from the Arrow batches (``to_pylist``,
as a stage receives them). The keep masks are checked equal to the loop's. Pinned to one CPU
(``sched_setaffinity``) and Arrow's thread pool set to 1. Target: DataComp process+decide
>= 1,000,000 captions/s.

    .venv/bin/python benchmarks/caption_rules.py [--laion PATH] [--rows 1000000] [--batch 100000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

TARGET = 1_000_000


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--laion", type=Path, default=C.LAION, help="laion-10k parquet (columns URL, TEXT)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over all rows; the fastest counts")
    parser.add_argument("--cpu", type=int, default=None, help="core to pin to (default: the first allowed)")
    return parser.parse_args()


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    C.claim_stdout()
    args = _args()
    C.require(args.laion, "laion-10k parquet")
    cpu = C.pin_to_one_core(args.cpu)

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from curate.engine.blocks import apply_stage
    from curate.schema import CAPTION, DROP_DETAIL, DROP_REASON, DROP_STAGE, ROW, UNIT
    from curate.stages.text import DataCompCaptionFilter, DataCompCaptionParams, LaionCaptionFilter, LaionCaptionParams

    source = pq.read_table(args.laion, columns=["TEXT"]).column("TEXT").combine_chunks()
    reps = -(-args.rows // len(source))
    captions = pa.concat_arrays([source] * reps)[: args.rows]
    batches = [pa.table({CAPTION: captions.slice(start, args.batch)}) for start in range(0, args.rows, args.batch)]
    n = args.rows
    nulls = captions.null_count
    C.log(f"{n:,} captions ({nulls} null) in {len(batches)} batches of {args.batch:,}, pinned to CPU {cpu}")

    datacomp = DataCompCaptionFilter(DataCompCaptionParams())
    laion = LaionCaptionFilter(LaionCaptionParams())

    def stage_only(stage):
        masks = []

        def run():
            masks.clear()
            for batch in batches:
                masks.append(stage.decide(stage.process(batch)).keep)
        return run, masks

    # The engine path: bookkeeping columns as read_unit adds them (uid/url omitted: not read by the rules).
    def with_bookkeeping(batch):
        rows = batch.num_rows
        nulls_str = pa.nulls(rows, pa.string())
        return batch.append_column(UNIT, pa.array([0] * rows, pa.int32())).append_column(
            ROW, pa.array(range(rows), pa.int32())).append_column(DROP_STAGE, nulls_str).append_column(
            DROP_REASON, nulls_str).append_column(DROP_DETAIL, nulls_str)

    engine_batches = [with_bookkeeping(b) for b in batches]

    def engine_both():
        for batch in engine_batches:
            apply_stage(datacomp, apply_stage(laion, batch))

    # The loop over Python str objects already built (the loop alone) ...
    py_captions = captions.to_pylist()

    def py_datacomp():
        return [(len(c.split()) > 2 and len(c) > 5) if c is not None else False for c in py_captions]

    def py_laion():
        return [len(c) >= 5 if c is not None else False for c in py_captions]

    # ... and the same loop fed the way a stage is fed: Arrow batches, turned into str objects.
    def py_datacomp_arrow():
        return [[(len(c.split()) > 2 and len(c) > 5) if c is not None else False for c in b.column(CAPTION).to_pylist()]
                for b in batches]

    def py_laion_arrow():
        return [[len(c) >= 5 if c is not None else False for c in b.column(CAPTION).to_pylist()] for b in batches]

    run_dc, dc_masks = stage_only(datacomp)
    run_la, la_masks = stage_only(laion)
    run_dc()  # warm-up (first-call allocations)
    t_dc = _best(run_dc, args.repeats)
    t_la = _best(run_la, args.repeats)
    t_engine = _best(engine_both, args.repeats)
    t_py_dc = _best(py_datacomp, args.repeats)
    t_py_la = _best(py_laion, args.repeats)
    t_pya_dc = _best(py_datacomp_arrow, args.repeats)
    t_pya_la = _best(py_laion_arrow, args.repeats)

    # Same answers as the loop?
    same_dc = pc.all(pc.equal(pa.concat_arrays([m for m in dc_masks]), pa.array(py_datacomp()))).as_py()
    same_la = pc.all(pc.equal(pa.concat_arrays([m for m in la_masks]), pa.array(py_laion()))).as_py()
    kept_dc = sum(pc.sum(m).as_py() or 0 for m in dc_masks)

    # Where datacomp's time goes, one batch.
    sample = batches[0]
    t_process = _best(lambda: datacomp.process(sample), args.repeats) * len(batches)
    scored = datacomp.process(sample)
    t_decide = _best(lambda: datacomp.decide(scored), args.repeats) * len(batches)
    filled = pc.fill_null(sample.column(CAPTION), "")
    t_split = _best(lambda: pc.list_value_length(pc.utf8_split_whitespace(pc.utf8_trim_whitespace(filled))),
                    args.repeats) * len(batches)
    t_laion_process = _best(lambda: laion.process(sample), args.repeats) * len(batches)

    rate = lambda seconds: round(n / seconds)  # noqa: E731
    result = {
        "benchmark": "caption_rules",
        "rows": n,
        "batch_rows": args.batch,
        "cores": 1,
        "datacomp_caption_process_decide": {"seconds": round(t_dc, 3), "captions_per_s": rate(t_dc), "kept": kept_dc},
        "laion_caption_process_decide": {"seconds": round(t_la, 3), "captions_per_s": rate(t_la)},
        "engine_apply_stage_laion_then_datacomp": {"seconds": round(t_engine, 3), "captions_per_s": rate(t_engine)},
        "baseline_python_loop_datacomp": {"seconds": round(t_py_dc, 3), "captions_per_s": rate(t_py_dc),
                                          "note": "loop over an already built list of str"},
        "baseline_python_loop_laion": {"seconds": round(t_py_la, 3), "captions_per_s": rate(t_py_la),
                                       "note": "loop over an already built list of str"},
        "baseline_python_loop_from_arrow_datacomp": {"seconds": round(t_pya_dc, 3), "captions_per_s": rate(t_pya_dc),
                                                     "note": "same loop, str objects made from each Arrow batch (to_pylist)"},
        "baseline_python_loop_from_arrow_laion": {"seconds": round(t_pya_la, 3), "captions_per_s": rate(t_pya_la),
                                                  "note": "same loop, str objects made from each Arrow batch (to_pylist)"},
        "ratio_datacomp_vs_python_loop": round(t_py_dc / t_dc, 2),
        "ratio_laion_vs_python_loop": round(t_py_la / t_la, 2),
        "ratio_datacomp_vs_python_loop_from_arrow": round(t_pya_dc / t_dc, 2),
        "ratio_laion_vs_python_loop_from_arrow": round(t_pya_la / t_la, 2),
        "breakdown_s": {"datacomp_process": round(t_process, 3), "datacomp_decide": round(t_decide, 3),
                        "laion_process": round(t_laion_process, 3),
                        "word_count_trim_split_len (in both process calls)": round(t_split, 3)},
        "masks_equal_python_loop": bool(same_dc and same_la),
        "target": f"datacomp_caption process+decide >= {TARGET:,} captions/s on one core",
        "target_met": rate(t_dc) >= TARGET and rate(t_la) >= TARGET,
        "machine": C.machine(),
    }
    C.emit(result)


if __name__ == "__main__":
    main()
