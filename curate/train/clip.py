"""``curate train clip``: open_clip's own trainer (``open_clip_train``) on a run's shards.

The shards and their sample count come from the run directory (``shards/*.tar`` and
``shards/sizes.json``), so ``--train-num-samples`` is never typed by hand. Logs, ``params.txt``
and ``checkpoints/epoch_N.pt`` land in ``--output``. One process on the CPU or one GPU;
``torchrun --nproc_per_node N`` for N GPUs. Arguments after ``--`` go to open_clip as they are.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from curate.errors import UserError
from curate.train.shards import run_shards

DEFAULT_MODEL = "curate-tiny-clip"


@dataclass
class TrainClipArgs:
    shards: str
    output: str | None = None
    model: str = DEFAULT_MODEL
    epochs: int = 1
    batch_size: int = 64
    lr: float | None = None
    warmup: int | None = None
    device: str = "cpu"
    gpus: int = 1
    workers: int | None = None
    seed: int = 0
    extra: list[str] = field(default_factory=list)


def output_dir(args: TrainClipArgs) -> Path:
    """``--output``, default ``<run dir>-clip-<model>`` beside the run directory."""
    if args.output:
        return Path(args.output).expanduser().resolve()
    run = Path(args.shards).expanduser().resolve()
    return run.parent / f"{run.name}-clip-{args.model.replace('/', '-')}"


def open_clip_command(args: TrainClipArgs) -> list[str]:
    """The trainer's command line: ``python -m curate.train.open_clip_main ...`` (under
    ``torch.distributed.run`` for more than one GPU)."""
    from curate.models.clip_configs import model_config

    if model_config(args.model) is None:
        raise UserError(f"--model {args.model}: not an open_clip model config (curate's: curate/models/configs)")
    if args.epochs < 1 or args.batch_size < 1 or args.gpus < 1:
        raise UserError("--epochs, --batch-size and --gpus must be >= 1")
    if args.device not in ("cpu", "cuda"):
        raise UserError(f"--device {args.device}: cpu or cuda")
    if args.gpus > 1 and args.device != "cuda":
        raise UserError(f"--gpus {args.gpus} needs --device cuda")
    shards = run_shards(args.shards)
    if len(shards.files) < args.gpus:
        raise UserError(f"--gpus {args.gpus}: the run has {len(shards.files)} shard(s); each GPU reads whole shards "
                        "(write smaller shards: output.samples_per_shard)")
    # webdataset hands whole shards to loader workers: at most shards / GPUs of them, 2 at most
    # on this 2-core machine's default (more workers only contend with the model for the cores).
    workers = args.workers if args.workers is not None else min(2, len(shards.files) // args.gpus)
    steps = -(-shards.num_samples // (args.batch_size * args.gpus)) * args.epochs
    warmup = args.warmup if args.warmup is not None else max(1, min(10000, steps // 10))
    out = output_dir(args)
    if (out / "out.log").exists() and "--resume" not in args.extra:
        raise UserError(f"--output {out}: already holds a training run (choose another --output, or pass "
                        "`-- --resume latest` to continue it)")
    train = ["--train-data", shards.train_data, "--train-num-samples", str(shards.num_samples),
             "--dataset-type", "webdataset", "--model", args.model, "--epochs", str(args.epochs),
             "--batch-size", str(args.batch_size), "--warmup", str(warmup), "--workers", str(workers),
             "--device", args.device, "--seed", str(args.seed), "--logs", str(out.parent), "--name", out.name,
             "--log-every-n-steps", "1" if steps <= 200 else "50",
             # open_clip's default is amp: fp16 autocast, which a CPU runs slower than fp32
             "--precision", "amp" if args.device == "cuda" else "fp32"]
    if args.lr is not None:
        train += ["--lr", str(args.lr)]
    module = ["-m", "curate.train.open_clip_main"]
    if args.gpus > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.gpus}",
                *module, *train, *args.extra]
    return [sys.executable, *module, *train, *args.extra]


def train_clip(args: TrainClipArgs) -> tuple[int, Path]:
    """Runs the trainer (its output streams through); returns its exit status and the output dir."""
    command = open_clip_command(args)
    out = output_dir(args)
    out.parent.mkdir(parents=True, exist_ok=True)
    status = subprocess.call(command)
    return status, out


def logged_losses(out: Path) -> list[float]:
    """The per-step contrastive losses open_clip logged in ``out/out.log`` (its ``Loss: v (avg)``)."""
    import re

    pattern = re.compile(r"Train Epoch: .* Loss: ([0-9.]+) \(")
    log = out / "out.log"
    if not log.is_file():
        return []
    return [float(m.group(1)) for m in map(pattern.search, log.read_text().splitlines()) if m]
