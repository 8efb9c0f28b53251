"""Each lever makes one variant of a source run and writes it under RUN/artifacts/<name>/.

Variant names: `torch-int8-dynamic`, `torch-bf16`, `onnx-fp32`, `onnx-int8-dynamic`,
`onnx-int8-static`, `openvino-fp32`, `openvino-bf16`, `openvino-int8`, `openvino-int8-bf16`;
levers applied to a distilled student carry its prefix (`distilled-onnx-int8-static`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gradwise.deploy.variants import write_variant
from gradwise.models.blocks import TransformerBlock
from gradwise.run import Run
from gradwise.training.checkpoint import save_tensors, save_weights

LEVERS = (
    "torch-int8-dynamic",
    "torch-bf16",
    "onnx-fp32",
    "onnx-int8-dynamic",
    "onnx-int8-static",
    "openvino-fp32",
    "openvino-bf16",
    "openvino-int8",
    "openvino-int8-bf16",
)
LABELS = {
    "fp32": "eager fp32",
    "distilled": "distilled student",
    "torch-int8-dynamic": "torch dynamic int8",
    "torch-bf16": "torch bf16",
    "onnx-fp32": "ONNX Runtime fp32",
    "onnx-int8-dynamic": "ONNX Runtime dynamic int8",
    "onnx-int8-static": "ONNX Runtime static int8",
    "openvino-fp32": "OpenVINO fp32",
    "openvino-bf16": "OpenVINO bf16",
    "openvino-int8": "OpenVINO int8",
    "openvino-int8-bf16": "OpenVINO int8 (bf16 elsewhere)",
}
PARITY_SAMPLES = 512


def label(name: str) -> str:
    """A variant's name as a person reads it: `distilled-openvino-int8` -> `distilled
    student + OpenVINO int8`."""
    if name.startswith("distilled-"):
        return f"{LABELS['distilled']} + {LABELS.get(name.removeprefix('distilled-'), name)}"
    return LABELS.get(name, name)


def calibration_inputs(run: Run, n: int, seed: int) -> Tensor:
    """`n` training inputs drawn without replacement (seeded): what static int8 calibrates
    its activation ranges on."""
    x = run.split("train").x
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
    return x[idx.sort().values]


def is_transformer(model: nn.Module) -> bool:
    return any(isinstance(m, TransformerBlock) for m in model.modules())


def make_variant(base: Run, source: Run, lever: str, calibration: Tensor) -> Run:
    """Make variant `lever` of `source` (a plain torch run) under base/artifacts/.

    Args:
        calibration: training inputs for static int8 (NNCF, ONNX Runtime static).
    """
    prefix = "distilled-" if source.path != base.path else ""
    name = prefix + lever
    probe = source.split("val").x[:PARITY_SAMPLES]
    info: dict[str, Any] = {"lever": label(name), "flops_per_sample": flops_per_sample(source)}
    with tempfile.TemporaryDirectory() as folder:
        onnx_path = Path(folder) / "model.onnx"
        if lever.startswith(("onnx", "openvino")):
            from gradwise.deploy.onnx import example_inputs, export_onnx

            example = example_inputs(source.split("train").x, source.schema.kind)
            export_onnx(source.model, example, onnx_path, with_features=_has_features(source))
        backend, write = _backend(lever, source, onnx_path, calibration)
        info.update({k: v for k, v in backend.items() if k != "name"})
        variant = write_variant(base, source, name, backend, write, info)
    _add_parity(variant, source, probe)
    return variant


def _has_features(run: Run) -> bool:
    """Supervised models export `features` beside `logits` (head(features(x)) holds)."""
    return run.schema.task in ("classification", "regression")


def _backend(
    lever: str, source: Run, onnx_path: Path, calibration: Tensor
) -> tuple[dict[str, Any], Callable[[Path], None]]:
    """The model.json backend entry of a lever and the function that writes its files."""
    settings: dict[str, Any] = {}

    def copy_onnx(folder: Path) -> None:
        from gradwise.artifacts import atomic_write_bytes

        atomic_write_bytes(folder / "model.onnx", onnx_path.read_bytes())

    match lever:
        case "torch-int8-dynamic":
            from gradwise.engines.torch_int8 import dynamic_int8_scheme

            scheme = dynamic_int8_scheme(source.model)
            return {"name": "torch-int8", **scheme}, lambda f: save_weights(
                f / "model.safetensors", source.model
            )
        case "torch-bf16":
            state = {k: v.to(torch.bfloat16) for k, v in source.model.state_dict().items()}
            return {"name": "torch-bf16", "weights": "bf16"}, lambda f: save_tensors(
                f / "model.safetensors", state
            )
        case "onnx-fp32":
            return _onnx_entry(), copy_onnx
        case "onnx-int8-dynamic" | "onnx-int8-static":
            from gradwise.deploy.onnx import Int8Mode, quantize_onnx

            mode: Int8Mode = "dynamic" if lever.endswith("dynamic") else "static"

            def write_int8(folder: Path) -> None:
                settings.update(quantize_onnx(onnx_path, folder / "model.onnx", mode, calibration))

            onnx_entry = _onnx_entry()
            onnx_entry["quantization"] = settings  # filled in when written, before model.json
            return onnx_entry, write_int8
    # openvino-*
    from gradwise.deploy.openvino import save_openvino

    hint = "bf16" if lever.endswith("bf16") else "f32"
    int8 = "int8" in lever

    def write_ov(folder: Path) -> None:
        settings.update(
            save_openvino(
                onnx_path,
                folder / "model.xml",
                calibration if int8 else None,
                is_transformer(source.model),
            )
        )

    entry: dict[str, Any] = {"name": "openvino", "precision": hint, "settings": settings}
    return entry, write_ov


def _onnx_entry() -> dict[str, Any]:
    import onnxruntime

    from gradwise.deploy.onnx import OPSET

    return {
        "name": "onnxruntime",
        "opset": OPSET,
        "exporter": "torch.onnx.export (TorchScript tracer)",
        "onnxruntime": onnxruntime.__version__,
    }


def _add_parity(variant: Run, source: Run, probe: Tensor) -> None:
    """Max |logits difference| and argmax agreement with the source on validation inputs,
    stored in the variant's metrics.json."""
    from gradwise.artifacts import read_json, write_json

    with torch.no_grad():
        a, b = source.logits(probe), variant.logits(probe)
    parity: dict[str, Any] = {
        "samples": len(probe),
        "max_abs_diff": float((a - b).abs().max()),
    }
    if source.schema.task == "classification" and a.shape[1] > 1:
        parity["argmax_agreement"] = float((a.argmax(1) == b.argmax(1)).float().mean())
    path = variant.path / "metrics.json"
    summary = read_json(path)
    summary["variant"]["parity"] = parity
    write_json(path, summary)


def flops_per_sample(run: Run) -> int | None:
    """Floating-point operations of one forward pass on one sample, counted by
    torch.utils.flop_counter (matmuls and convolutions, 2 per multiply-add); None when the
    model is not a plain torch one."""
    from torch.utils.flop_counter import FlopCounterMode

    if run.backend is not None:
        from gradwise.artifacts import read_json

        stated = read_json(run.path / "metrics.json").get("variant", {})
        value = stated.get("flops_per_sample")
        return int(value) if value is not None else None
    x = run.split("val").x[:1]
    counter = FlopCounterMode(display=False)
    recurrent: dict[str, int] = {}  # recurrent module -> its matmuls, counted by hand
    root = type(run.model).__name__
    hooks = [
        m.register_forward_hook(
            lambda m, args, out, key=f"{root}.{name}": recurrent.update(
                {key: _rnn_flops(m, args[0])}
            )
        )
        for name, m in run.model.named_modules()
        if isinstance(m, torch.nn.RNNBase)
    ]
    try:
        with counter, torch.no_grad():
            run.model(x)
    finally:
        for hook in hooks:
            hook.remove()
    counted = counter.get_flop_counts()
    # the fused LSTM kernel is invisible to the counter; a GRU run step by step is not
    unseen = [n for key, n in recurrent.items() if not sum(counted.get(key, {}).values())]
    return int(counter.get_total_flops()) + sum(unseen)


def _rnn_flops(rnn: torch.nn.RNNBase, x: Any) -> int:
    """The matmuls of an LSTM, GRU or RNN layer stack over its input's steps (2 per
    multiply-add, as the counter): flop_counter does not see inside the fused recurrent op."""
    if not isinstance(x, torch.Tensor):  # a PackedSequence: its rows are the steps
        steps = int(x.data.shape[0])
    else:
        steps = int(x.shape[1] if rnn.batch_first and x.dim() == 3 else x.shape[0])
    gates = {"LSTM": 4, "GRU": 3}.get(rnn.mode, 1)
    directions = 2 if rnn.bidirectional else 1
    total = 0
    for layer in range(rnn.num_layers):
        n_in = rnn.input_size if layer == 0 else rnn.hidden_size * directions
        total += directions * 2 * gates * rnn.hidden_size * (n_in + rnn.hidden_size)
    return steps * total
