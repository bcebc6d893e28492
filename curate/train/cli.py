"""``curate train clip`` and ``curate eval clip``: the argparse subcommands and their dispatch
(wired into :mod:`curate.cli`)."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table


def add_parsers(commands) -> None:
    """Adds ``train`` and ``eval`` to the ``curate`` subparsers object."""
    train = commands.add_parser("train", help="train a model on a run's shards")
    trainers = train.add_subparsers(dest="trainer", required=True)
    clip = trainers.add_parser(
        "clip", help="open_clip's trainer (open_clip_train) on a run's shards; sample count from shards/sizes.json",
        description="Arguments after `--` go to open_clip_train as they are, e.g. `-- --save-frequency 5`.")
    clip.add_argument("--shards", required=True, metavar="RUN_DIR", help="a finished run (its shards/ and sizes.json)")
    clip.add_argument("--model", default="curate-tiny-clip", help="open_clip model config (default: curate-tiny-clip)")
    clip.add_argument("--epochs", type=int, default=1)
    clip.add_argument("--batch-size", type=int, default=64, help="per GPU (or per process on the CPU)")
    clip.add_argument("--lr", type=float, help="peak learning rate (default: open_clip's for the model)")
    clip.add_argument("--warmup", type=int, help="warmup steps (default: a tenth of the steps, at most 10000)")
    clip.add_argument("--output", help="logs and checkpoints (default: <RUN_DIR>-clip-<model> beside the run)")
    clip.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    clip.add_argument("--gpus", type=int, default=1, help="GPUs on this node; > 1 runs torchrun --nproc_per_node")
    clip.add_argument("--workers", type=int, help="data loader workers per process (default: min(2, shards/GPUs))")
    clip.add_argument("--seed", type=int, default=0)
    clip.add_argument("extra", nargs="*", metavar="-- OPEN_CLIP_ARGS", help="passed to open_clip_train as they are")

    evaluate = commands.add_parser("eval", help="evaluate a model on held-out shards")
    evaluators = evaluate.add_subparsers(dest="evaluator", required=True)
    eclip = evaluators.add_parser("clip", help="zero-shot retrieval R@1/R@5 (and classification with --label-column); "
                                               "JSON on stdout, a table on stderr")
    eclip.add_argument("--shards", required=True, metavar="RUN_DIR_OR_TARS",
                       help="a run directory, a tar, or a brace pattern (dir/{00000..00009}.tar)")
    eclip.add_argument("--model", help="open_clip model config")
    eclip.add_argument("--pretrained", help="weights: a state dict, an open_clip_train checkpoint, or hf-hub:/URL "
                                            "fetched by `curate models pull`")
    eclip.add_argument("--filter-net", metavar="DIR", help="a filtering network directory (model and weights from it)")
    eclip.add_argument("--label-column", help="a field of the samples' .json holding a class label")
    eclip.add_argument("--template", default="a photo of {}", help="class prompt; {} is the label")
    eclip.add_argument("--batch-size", type=int, default=256)


def dispatch(args: argparse.Namespace, console: Console) -> int | None:
    """Runs ``train clip`` / ``eval clip``; None for any other command."""
    if args.command == "train" and args.trainer == "clip":
        from curate.train.clip import TrainClipArgs, train_clip

        status, out = train_clip(TrainClipArgs(
            shards=args.shards, output=args.output, model=args.model, epochs=args.epochs, batch_size=args.batch_size,
            lr=args.lr, warmup=args.warmup, device=args.device, gpus=args.gpus, workers=args.workers, seed=args.seed,
            extra=list(args.extra)))
        if status == 0:
            console.print(f"checkpoints: {out / 'checkpoints'}; log: {out / 'out.log'}")
        return status
    if args.command == "eval" and args.evaluator == "clip":
        from curate.train.eval import EvalClipArgs, evaluate_clip, table_rows

        result = evaluate_clip(EvalClipArgs(
            shards=args.shards, model=args.model, pretrained=args.pretrained, filter_net=args.filter_net,
            label_column=args.label_column, template=args.template, batch_size=args.batch_size))
        table = Table(title=f"{result['model']} on {result['samples']} samples")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for row in table_rows(result):
            table.add_row(*row)
        console.print(table)
        print(json.dumps(result, indent=2))
        return 0
    return None
