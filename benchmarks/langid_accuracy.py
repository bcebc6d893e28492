"""Accuracy of fastText language ID on labelled short texts, per language and overall.

``../shared/data/langid/{sentences,single-words}/<code>.txt`` (lingua-py's test data from the
Leipzig corpora: 30 languages, 1,000 lines each, file names ISO 639-1) through the
``language_id`` stage's ``process`` (so exactly what a run tags): a line is correct when
``lang`` equals its file's code. Three of the 30 (``lg`` Ganda, ``sn`` Shona, ``tn`` Tswana)
are not among lid.176's labels and can never be right: the overall figure is given over all 30
and over the languages the model knows.

    .venv/bin/python benchmarks/langid_accuracy.py [--data ../shared/data/langid] [--model PATH]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=C.SHARED_DATA / "langid", help="folder with sentences/ and single-words/")
    parser.add_argument("--model", default=None, help="fastText LID model path (default: the bundled lid.176.ftz)")
    return parser.parse_args()


def _score(stage, folder: Path, labels: frozenset[str]) -> dict:
    import pyarrow as pa

    per_language, confusions = {}, Counter()
    correct_all = lines_all = correct_known = lines_known = 0
    for path in sorted(folder.glob("*.txt")):
        code = path.stem
        texts = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        tagged = stage.process(pa.table({"caption": pa.array(texts, pa.string())})).column("lang").to_pylist()
        correct = sum(1 for got in tagged if got == code)
        confusions.update(f"{code}->{got}" for got in tagged if got != code)
        per_language[code] = {"lines": len(texts), "accuracy": round(correct / len(texts), 4),
                              **({} if code in labels else {"note": "not a label of the model"})}
        correct_all, lines_all = correct_all + correct, lines_all + len(texts)
        if code in labels:
            correct_known, lines_known = correct_known + correct, lines_known + len(texts)
    return {
        "languages": len(per_language),
        "lines": lines_all,
        "accuracy_all": round(correct_all / lines_all, 4),
        "accuracy_known_languages": round(correct_known / lines_known, 4),
        "known_languages": sum(1 for code in per_language if code in labels),
        "per_language": per_language,
        "worst_confusions": dict(confusions.most_common(8)),
    }


def main() -> None:
    C.claim_stdout()
    args = _args()
    C.require(args.data / "sentences", "langid sentences folder")

    from curate.models import fasttext_lid
    from curate.stages.language import LanguageIdFilter, LanguageIdParams

    stage = LanguageIdFilter(LanguageIdParams(model=args.model))
    stage.setup()
    labels = fasttext_lid.model_labels(args.model)
    result = {"benchmark": "langid_accuracy", "model": fasttext_lid.model_record(args.model)}
    for kind in ("sentences", "single-words"):
        C.log(kind)
        result[kind.replace("-", "_")] = _score(stage, args.data / kind, labels)
    result["machine"] = C.machine()
    C.emit(result)


if __name__ == "__main__":
    main()
