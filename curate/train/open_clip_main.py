"""``python -m curate.train.open_clip_main ARGS``: open_clip's trainer knowing curate's model
configs. Registers them, then runs ``open_clip_train.main.main(ARGS)``; torchrun starts this
module in each process, so every rank knows names like ``curate-tiny-clip``."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from open_clip_train.main import main as open_clip_main

    from curate.models.clip_configs import register

    register()
    status = open_clip_main(argv)
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
