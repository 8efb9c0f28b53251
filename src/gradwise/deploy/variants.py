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
`torch-int8` (fp32 weights, quantized dynamically at load, see quantize.py) and
`torch-bf16` (bf16 weights).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from gradwise.artifacts import atomic_write_bytes, read_json, write_json
from gradwise.config import ModelConfig
from gradwise.data.dataset import SPLITS, SPLITS_FILE
from gradwise.errors import DataError, NotTrainedError
from gradwise.models import InputSpec, build_model
from gradwise.run import FORMAT_VERSION, Run
from gradwise.training.checkpoint import load_weights

ARTIFACTS = "artifacts"
BACKENDS = ("onnxruntime", "openvino", "torch-int8", "torch-bf16")
MODEL_FILES = {
    "onnxruntime": ["model.onnx"],
    "openvino": ["model.xml", "model.bin"],
    "torch-int8": ["model.safetensors"],
    "torch-bf16": ["model.safetensors"],
}


def load_variant_model(
    path: Path, backend: dict[str, Any], model_cfg: ModelConfig, spec: InputSpec
) -> nn.Module:
    """The nn.Module-compatible model of a variant folder (Run.load calls this).

    Raises:
        NotTrainedError: the engine's file is missing.
        DataError: model.json names an engine this gradwise does not know.
    """
    name = backend.get("name")
    if name not in BACKENDS:
        raise DataError(
            f"{path / 'model.json'} names backend {name!r}; this gradwise knows torch, "
            f"{', '.join(BACKENDS)}. Upgrade gradwise, or make the variant again with "
            "gradwise optimize."
        )
    for file in MODEL_FILES[name]:
        if not (path / file).is_file():
            raise NotTrainedError(
                f"{path} has no {file}: the {name} variant is incomplete. Make it again with "
                "gradwise optimize on the run it came from."
            )
    match name:
        case "onnxruntime":
            from gradwise.deploy.onnx import OnnxModule

            return OnnxModule(path / "model.onnx")
        case "openvino":
            from gradwise.deploy.openvino import OpenVINOModule

            return OpenVINOModule(path / "model.xml", backend.get("precision", "f32"))
        case "torch-int8":
            from gradwise.deploy.quantize import torch_dynamic_int8

            model = build_model(model_cfg, spec, pretrained=False)
            load_weights(path / "model.safetensors", model)
            return torch_dynamic_int8(model, backend.get("layers"))
        case _:  # torch-bf16
            import torch

            from gradwise.deploy.quantize import Bf16Module

            model = build_model(model_cfg, spec, pretrained=False).to(torch.bfloat16)
            load_weights(path / "model.safetensors", model)
            return Bf16Module(model)


def artifacts_folder(run: Run) -> Path:
    return run.path / ARTIFACTS


def variant_folders(run: Run) -> list[Path]:
    """Every variant under RUN/artifacts/, in name order."""
    folder = artifacts_folder(run)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if (p / "model.json").is_file())


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
