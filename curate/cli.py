"""The ``curate`` command: run, sample, metaclip; stats/report/show, models, train and submit come from
their packages' ``cli`` modules.

User mistakes (bad YAML, missing column, unreadable input) exit 2 with one line on stderr and
no traceback; bugs raise.
"""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from curate.errors import UserError
from curate.jobs import cli as jobs_cli
from curate.models import cli as models_cli
from curate.stats import cli as stats_cli
from curate.train import cli as train_cli

#: Modules that add commands (``add_parsers``) and run them (``dispatch``: None when not theirs).
_COMMAND_MODULES = (stats_cli, models_cli, train_cli, jobs_cli)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="curate", description="Curate web-scale image-text corpora on Ray.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a pipeline (resumes when the output directory holds the same run)")
    run.add_argument("pipeline", help="pipeline YAML")
    run.add_argument("--output", "-o", help="run directory (default: output.path or runs/<name>)")
    run.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or an embedded Ray)")
    run.add_argument("--overwrite", action="store_true",
                     help="discard an existing curate run in the output directory and start over (never another "
                          "directory, nor one holding the input)")
    run.add_argument("--retry-failed", action="store_true", help="re-attempt only transient download failures")
    run.add_argument("--keep-checkpoints", action="store_true",
                     help="keep the checkpoints of segment boundaries (rows reaching a global stage after a download) "
                          "when the run completes")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a spec value, e.g. --set stages.0.min_chars=10 (repeatable)")

    sample = commands.add_parser("sample", help="write sample corpora")
    kinds = sample.add_subparsers(dest="kind", required=True)
    synth = kinds.add_parser("synth", help="synthetic image-caption corpus with ground-truth noise labels")
    synth.add_argument("--out", required=True)
    synth.add_argument("--n", type=int, default=3000)
    synth.add_argument("--seed", type=int, default=0)

    metaclip = commands.add_parser("metaclip", help="MetaCLIP tools")
    tools = metaclip.add_subparsers(dest="tool", required=True)
    build = tools.add_parser("build-metadata", help="metadata entries: WordNet lemmas, a corpus' frequent unigrams and "
                                                    "high-PMI bigrams, titles (MetaCLIP, Xu et al. 2023 §3.1)")
    build.add_argument("--out", required=True, help="output file: one `entry<TAB>sources` a line")
    wordnet = build.add_mutually_exclusive_group()
    wordnet.add_argument("--wordnet", metavar="DIR", help="WordNet dict directory (default: $WORDNET_DIR or "
                                                          "/usr/share/wordnet, from Debian's wordnet-base)")
    wordnet.add_argument("--no-wordnet", action="store_true", help="leave WordNet out")
    build.add_argument("--corpus", nargs="+", default=[], metavar="FILE",
                       help="text (one document a line; .gz read as gzip) or parquet files (--column)")
    build.add_argument("--column", default="caption", help="text column of parquet corpora (default: caption)")
    build.add_argument("--titles", metavar="FILE", help="titles, one a line")
    build.add_argument("--min-count", type=int, default=100, help="unigrams seen at least this often (MetaCLIP: 100)")
    build.add_argument("--min-pmi", type=float, default=30.0,
                       help="bigrams with at least this log2 PMI (MetaCLIP: 30, on Wikipedia; at most log2 of the "
                            "corpus' tokens)")
    for module in _COMMAND_MODULES:
        module.add_parsers(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console(stderr=True)
    try:
        return _dispatch(args, console)
    except UserError as err:
        print(f"curate: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("curate: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace, console: Console) -> int:
    if args.command == "run":
        from curate.pipeline import run_pipeline

        run_pipeline(args.pipeline, output=args.output, address=args.address, overwrite=args.overwrite,
                     retry_failed=args.retry_failed, overrides=args.overrides, console=console,
                     keep_checkpoints=args.keep_checkpoints)
        return 0
    if args.command == "sample" and args.kind == "synth":
        from curate.sample.synth import write_synth_corpus

        if args.n <= 0:
            raise UserError("--n must be positive")
        path = write_synth_corpus(args.out, args.n, args.seed)
        console.print(f"wrote {args.n} samples: {path}")
        return 0
    if args.command == "metaclip" and args.tool == "build-metadata":
        return _build_metadata(args, console)
    for module in _COMMAND_MODULES:
        handled = module.dispatch(args, console)
        if handled is not None:
            return handled
    raise AssertionError(args)


def _build_metadata(args: argparse.Namespace, console: Console) -> int:
    from rich.progress import Progress

    from curate.metaclip.metadata import build_metadata

    wordnet = None
    if not args.no_wordnet:
        from curate.text.wordnet import WordNet

        wordnet = WordNet.open(args.wordnet).lemma_names()
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        tasks: dict[str, int] = {}

        def report(path: str, done: int, total: int) -> None:
            if path not in tasks:
                tasks[path] = progress.add_task(f"counting {path}", total=total)
            progress.update(tasks[path], completed=done)

        summary = build_metadata(args.out, wordnet, args.corpus, args.column, args.titles, args.min_count,
                                 args.min_pmi, report)
    parts = ", ".join(f"{name} {counts['new']:,} new of {counts['given']:,}" for name, counts in summary["sources"].items())
    console.print(f"wrote {summary['entries']:,} entries to {args.out} ({parts}; corpus tokens "
                  f"{summary['corpus_tokens']:,})", soft_wrap=True, markup=False, highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
