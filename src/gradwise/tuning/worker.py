"""One worker process of `gradwise tune --nproc N`: it joins the study the parent created
(config, space and settings are read from the study itself) and runs trials until the
budget is used, the deadline passes, or its parent is gone.

    python -m gradwise.tuning.worker DIR --storage URL --study NAME --index K [--deadline T]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gradwise.tuning.worker")
    parser.add_argument("out")
    parser.add_argument("--storage", required=True)
    parser.add_argument("--study", required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--deadline", type=float, default=None)
    args = parser.parse_args(argv)

    import optuna
    import torch

    from gradwise.errors import GradwiseError
    from gradwise.tuning.space import parse_space
    from gradwise.tuning.study import (
        Worker,
        load_study,
        open_storage,
        stored_setup,
        worker_seed,
    )

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    parent = os.getppid()
    try:
        storage = open_storage(args.storage)
        plain = optuna.load_study(study_name=args.study, storage=storage)
        base, space_dict, settings = stored_setup(plain)
        seed = worker_seed(settings.sampler_seed, args.index, len(plain.trials))
        study = load_study(storage, args.study, settings, seed)
        worker = Worker(study, base, parse_space(space_dict, "the study"), settings, Path(args.out))
        worker.search(args.deadline, keep_going=lambda: os.getppid() == parent)
    except GradwiseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
