"""caption_blocklist throughput on one core, and the matchers it was chosen over.

laion-10k's captions replicated to ``--rows`` (default 100,000) in batches of ``--batch``,
against the LDNOOBW lists of ``--lists`` (default ../shared/data/blocklists), twice: the
English list alone, and all lists. Per list set:

* ``stage``: CaptionBlocklistFilter ``process`` + ``decide`` (pyahocorasick, boundaries per hit);
* ``re2_one_regex``: the alternative, one RE2 regex through ``pyarrow.compute.extract_regex``
  over the whole batch (the same boundary classes, substring entries in a group of their own);
  its matched rows are checked equal to the stage's;
* ``c4_python_re``: C4's own code shape (tensorflow/datasets ``c4_utils``): one Python ``re``
  pattern ``(?:\\W|^)(e1|e2|...)(?:\\W|$)``, ``search`` per lower-cased caption (every entry
  with boundaries; C4's exact rule for the English list).

Rates are captions per CPU-second (the machines are shared), the fastest of ``--repeats``
interleaved rounds. Pinned to one CPU, Arrow on one thread.

    .venv/bin/python benchmarks/blocklist.py [--laion PATH] [--lists DIR] [--rows 100000] [--batch 10000]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--laion", type=Path, default=C.LAION, help="laion-10k parquet (columns URL, TEXT)")
    parser.add_argument("--lists", type=Path, default=C.SHARED_DATA / "blocklists", help="LDNOOBW lists directory")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cpu", type=int, default=None)
    return parser.parse_args()


def _rounds(fns: dict, repeats: int) -> dict[str, float]:
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            cpu = time.process_time()
            fn()
            best[name] = min(best[name], time.process_time() - cpu)
    return best


def _re2_pattern(entries: dict[str, list[str]]) -> str:
    from curate.stages.blocklist import SUBSTRING_LANGUAGES

    def escape(entry: str) -> str:
        return "".join("\\" + c if c.isascii() and not c.isalnum() and c != " " else c for c in entry)

    boundary, substring = set(), set()
    for name, words in entries.items():
        for word in words:
            (substring if name.split("-")[0] in SUBSTRING_LANGUAGES and not word.isascii() else boundary).add(word)
    nonword = r"[^\p{L}\p{M}\p{N}_]"
    parts = []
    if boundary:
        alternation = "|".join(escape(w) for w in sorted(boundary, key=len, reverse=True))
        parts.append(f"(?:^|{nonword})(?P<b>{alternation})(?:$|{nonword})")
    if substring:
        parts.append(f"(?P<s>{'|'.join(escape(w) for w in sorted(substring, key=len, reverse=True))})")
    return "|".join(parts)


def main() -> None:
    C.claim_stdout()
    args = _args()
    C.require(args.laion, "laion-10k parquet")
    C.require(args.lists, "blocklists directory")
    C.pin_to_one_core(args.cpu)

    import pyarrow as pa
    import pyarrow.compute as pc

    from curate.schema import CAPTION
    from curate.stages.blocklist import CaptionBlocklistFilter, CaptionBlocklistParams

    captions = C.laion_captions(args.laion, args.rows)
    batches = [pa.table({CAPTION: captions.slice(start, args.batch)}) for start in range(0, args.rows, args.batch)]
    lowered = [pc.binary_join(pc.utf8_split_whitespace(pc.utf8_lower(pc.fill_null(b.column(CAPTION).combine_chunks(), ""))), " ")
               for b in batches]
    n = args.rows
    result = {"benchmark": "blocklist", "rows": n, "batch_rows": args.batch, "cores": 1}

    for label, languages in (("en", ["en"]), ("all_lists", None)):
        params = CaptionBlocklistParams(lists=str(args.lists), languages=languages)
        stage = CaptionBlocklistFilter(params)
        stage.setup()
        pattern = _re2_pattern(params.entries)
        c4 = re.compile(r"(?:\W|^)({})(?:\W|$)".format("|".join(re.escape(w) for ws in params.entries.values() for w in ws)))
        texts = [t for b in lowered for t in b.to_pylist()]
        masks: dict[str, list] = {"stage": [], "re2": []}

        def run_stage(masks=masks, stage=stage):
            masks["stage"] = [stage.decide(stage.process(b)).keep for b in batches]

        def run_re2(masks=masks, pattern=pattern):
            masks["re2"] = [pc.is_null(pc.extract_regex(b, pattern)) for b in lowered]

        def run_c4(c4=c4, texts=texts):
            return [c4.search(t) is None for t in texts]

        C.log(f"{label}: {sum(len(v) for v in params.entries.values())} entries")
        times = _rounds({"stage": run_stage, "re2_one_regex": run_re2, "c4_python_re": run_c4},
                        1 if label == "all_lists" else args.repeats)  # all lists: RE2 is slow, one round
        stage_keep = pa.concat_arrays(masks["stage"])
        re2_keep = pa.concat_arrays(masks["re2"])
        result[label] = {
            "entries": sum(len(v) for v in params.entries.values()),
            "lists": len(params.entries),
            **{f"{name}_captions_per_cpu_s": round(n / seconds) for name, seconds in times.items()},
            "stage_dropped": n - pc.sum(stage_keep).as_py(),
            "re2_same_rows_as_stage": pc.all(pc.equal(stage_keep, re2_keep)).as_py(),
            "ratio_stage_vs_re2": round(times["re2_one_regex"] / times["stage"], 3),
            "ratio_stage_vs_c4_python_re": round(times["c4_python_re"] / times["stage"], 3),
        }
    result["machine"] = C.machine()
    C.emit(result)


if __name__ == "__main__":
    main()
