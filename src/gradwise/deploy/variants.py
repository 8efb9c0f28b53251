"""Optimised variants as run directories: RUN/artifacts/<variant>/.

A variant folder holds what any run holds, so `gradwise.load`, `evaluate`, `audit`,
`bench`, `predict` and the server take it as they take the run it came from:

    config.yaml     the source run's config (same data, same splits)
    splits.json     the source run's split rows
    model.json      the same schema, plus `backend`: the engine and its settings
    metrics.json    val/test metrics measured through the variant itself,
                    plus `variant`: what it is, where from, parity with its source
    model file      model.onnx | model.xml + model.bin | model.safetensors

Backends (model.json `backend.name`; absent means plain torch): `onnxruntime`, `openvino`,
`torch-int8` (fp32 weights, quantized dynamically at load) and `torch-bf16` (bf16 weights);
`gradwise.engines` runs them (`Run.load` calls `engines.loader.load_variant_model`).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gradwise.artifacts import atomic_write_bytes, read_json, write_json
from gradwise.data.dataset import SPLITS, SPLITS_FILE
from gradwise.engines.loader import MODEL_FILES
from gradwise.errors import NotTrainedError
from gradwise.run import FORMAT_VERSION, Run

ARTIFACTS = "artifacts"


def artifacts_folder(run: Run) -> Path:
    return run.path / ARTIFACTS


def variant_folders(run: Run) -> list[Path]:
    """Every variant under RUN/artifacts/, in name order."""
    folder = artifacts_folder(run)
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if (p / "model.json").is_file() and not _decides_by_group(p)
    )


def _decides_by_group(folder: Path) -> bool:
    """A fairness variant (the fairness check's group thresholds over the base model's own
    probabilities) is no engine to bench or optimise: its decisions, not its cost, differ."""
    calibration = read_json(folder / "model.json").get("calibration") or {}
    return bool(calibration.get("group_thresholds"))


def write_variant(
    base: Run,
    source: Run,
    name: str,
    backend: dict[str, Any],
    write_model: Callable[[Path], None],
    info: dict[str, Any],
) -> Run:
    """Write RUN/artifacts/<name>/ for a variant of `source` (the base run, or a student
    distilled from it) and measure it; a variant of the same name is replaced.

    Args:
        write_model: writes the engine's model file(s) into the folder it is given.
        info: what the variant is (lever, settings, parity), stored in metrics.json.

    Returns:
        The variant, loaded back from its folder.
    """
    folder = artifacts_folder(base) / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    try:
        write_model(folder)
        for file in ("config.yaml", SPLITS_FILE):
            if (source.path / file).is_file():
                atomic_write_bytes(folder / file, (source.path / file).read_bytes())
        meta = read_json(source.path / "model.json")
        meta["format"] = FORMAT_VERSION  # the weights below come from the loaded source model
        meta["backend"] = backend
        meta["calibration"] = {"temperature": None, "conformal": None}  # refitted per variant
        write_json(folder / "model.json", meta)
        variant = Run.load(folder)
        data = source.dataset()
        summary = {k: v for k, v in source.metrics.items() if k not in SPLITS}
        # val and test: what a variant is judged on (`gradwise evaluate` measures train too)
        summary.update({s: variant.evaluate(s, data) for s in ("val", "test")})
        summary["variant"] = {"name": name, "source": str(source.path), **info}
        write_json(folder / "metrics.json", summary)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # no half-made variant for bench or serve
        raise
    return variant


def size_on_disk(run: Run) -> int:
    """Bytes of the model file(s) a run needs to predict (weights, graph), not its evidence."""
    backend = run.backend["name"] if run.backend else "torch"
    files = MODEL_FILES.get(backend, ["model.safetensors"])
    total = sum((run.path / f).stat().st_size for f in files if (run.path / f).is_file())
    if not total:
        raise NotTrainedError(f"{run.path} holds no model file.")
    return total


def variant_name(run: Run) -> str:
    """The variant's name as its metrics.json states it; `fp32` for a plain run."""
    path = run.path / "metrics.json"
    stated = read_json(path).get("variant") if path.is_file() else None
    return str(stated["name"]) if isinstance(stated, dict) else "fp32"
