"""Shared fixtures: tiny, seeded configs that train in a second or two on a CPU."""

from __future__ import annotations

from typing import Any

import pytest
import torch

# Two cores are shared by the test process and any DDP workers it spawns; one thread
# each keeps tiny models from spending their time in thread hand-offs.
torch.set_num_threads(1)


def tiny_config(**sections: Any) -> dict[str, Any]:
    """A digits MLP that trains in well under a second; sections override whole keys."""
    cfg: dict[str, Any] = {
        "name": "tiny",
        "seed": 0,
        "data": {"source": "builtin:digits"},
        "model": {"arch": "mlp", "hidden": [32], "dropout": 0.0},
        "train": {"epochs": 2, "batch_size": 64, "diagnostics": True},
    }
    for key, value in sections.items():
        switches_arch = key == "model" and value.get("arch", "mlp") != "mlp"
        if isinstance(value, dict) and isinstance(cfg.get(key), dict) and not switches_arch:
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


@pytest.fixture
def tiny() -> dict[str, Any]:
    return tiny_config()


@pytest.fixture(autouse=True)
def _keep_threads() -> Any:
    """`--threads` sets GRADWISE_THREADS and torch's thread count for the rest of a CLI
    process; tests run the CLI in-process, so each test gets both back as they were."""
    import os

    before_env, before_n = os.environ.get("GRADWISE_THREADS"), torch.get_num_threads()
    yield
    if before_env is None:
        os.environ.pop("GRADWISE_THREADS", None)
    else:
        os.environ["GRADWISE_THREADS"] = before_env
    torch.set_num_threads(before_n)
