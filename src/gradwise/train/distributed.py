"""The worker `gradwise train --nproc N` starts in each process under torch.distributed.run.

Every rank builds the same data and model from the same seed; DDP averages gradients, each
rank takes its share of every global batch, and rank 0 writes the run directory.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import torch
import torch.distributed as dist

from gradwise.config import parse_overrides
from gradwise.errors import GradwiseError
from gradwise.train.loop import Parallel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gradwise.train.distributed")
    parser.add_argument("config")
    parser.add_argument("--out", required=True)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if rank == 0 and not args.quiet:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.gradwise_console = True  # type: ignore[attr-defined]
        logging.getLogger("gradwise").addHandler(handler)
    from gradwise.api import train

    try:
        # The launching command already checked --out; rank 0 starts it afresh.
        train(
            args.config,
            args.out,
            resume=args.resume,
            overwrite=not args.resume,
            quiet=True,
            parallel=Parallel(rank, world),
            **parse_overrides(args.overrides),
        )
    except GradwiseError as exc:
        if rank == 0:
            print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
