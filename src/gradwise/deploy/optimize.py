"""`gradwise optimize`: pull the chosen levers, write each variant, measure the trade-off.

Levers combine: a distilled student gets the other levers too (distil, then int8). `auto`
makes every candidate this machine supports and recommends the fastest within the budget.
Each variant keeps its own refitted temperature and, when the base run holds a certified
abstention guarantee, its own re-certified one. RUN/artifacts/tradeoff.json keeps the table.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from gradwise.artifacts import write_json
from gradwise.config import DiffusionConfig, OptimizeSettings, Seq2SeqConfig
from gradwise.deploy.levers import LEVERS, calibration_inputs, is_transformer, make_variant
from gradwise.deploy.tradeoff import TradeOff, tradeoff
from gradwise.deploy.variants import artifacts_folder
from gradwise.errors import ConfigError, GradwiseError
from gradwise.logs import LOG
from gradwise.run import Run

log = logging.getLogger(LOG)

TRADEOFF_FILE = "tradeoff.json"


@dataclass(frozen=True)
class Levers:
    """Which levers `optimize` pulls (a part of OptimizeSettings; `plan` reads it)."""

    quantize: Literal["int8"] | None = None
    onnx: bool = False
    openvino: bool = False
    precision: Literal["fp32", "bf16"] = "fp32"
    distill: str | Path | dict[str, Any] | None = None
    auto: bool = False

    @property
    def any(self) -> bool:
        chosen = (self.quantize, self.onnx, self.openvino, self.precision == "bf16")
        return any(chosen) or self.distill is not None or self.auto


def levers_of(settings: OptimizeSettings) -> Levers:
    """The levers part of the settings (what `plan` reads)."""
    return Levers(
        settings.quantize,
        settings.onnx,
        settings.openvino,
        settings.precision,
        settings.distill,
        settings.auto,
    )


def plan(levers: Levers, model: nn.Module) -> list[str]:
    """The variants to make of each source model, in LEVERS order.

    Raises:
        ConfigError: nothing asked for; bf16 on a CPU without native bf16; OpenVINO missing.
    """
    from gradwise.engines.openvino_runtime import has_openvino, require_openvino
    from gradwise.training.loop import cpu_has_native_bf16

    if not levers.any:
        raise ConfigError(
            "optimize needs at least one lever: --quantize int8, --onnx, --openvino, "
            "--precision bf16, --distill STUDENT.yaml, or --auto to try them all."
        )
    bf16_ok = cpu_has_native_bf16()
    if levers.auto:
        return [
            name
            for name in LEVERS
            if (bf16_ok or "bf16" not in name) and (has_openvino() or "openvino" not in name)
        ]
    if levers.precision == "bf16" and not bf16_ok:
        raise ConfigError(bf16_refusal())
    if levers.openvino:
        require_openvino(nncf=levers.quantize == "int8")
    int8, bf16 = levers.quantize == "int8", levers.precision == "bf16"
    names: set[str] = set()
    if int8 and not (levers.onnx or levers.openvino):
        names.add("torch-int8-dynamic")
        if is_transformer(model) or any(isinstance(m, nn.Conv2d) for m in model.modules()):
            names.add("onnx-int8-static")  # calibrated int8 is what pays for convs, attention
    if levers.onnx:
        names.add("onnx-fp32")
        if int8:
            names |= {"onnx-int8-dynamic", "onnx-int8-static"}
    if levers.openvino:
        names.add("openvino-fp32")
        if int8:
            names.add("openvino-int8")
        if bf16:
            names.add("openvino-bf16")
        if int8 and bf16:
            names.add("openvino-int8-bf16")
    if bf16:
        names.add("torch-bf16")
    return [name for name in LEVERS if name in names]


def bf16_refusal() -> str:
    """Why bf16 is refused here, with a measurement: a bf16 matrix multiply against fp32."""
    a = torch.randn(512, 512)
    timings = {}
    for dtype in (torch.float32, torch.bfloat16):
        m = a.to(dtype)
        m @ m
        start = time.perf_counter()
        for _ in range(10):
            m @ m
        timings[dtype] = time.perf_counter() - start
    ratio = timings[torch.bfloat16] / timings[torch.float32]
    return (
        "--precision bf16: this CPU has no native bf16 matrix multiply (no AVX512-BF16 or AMX "
        f"in /proc/cpuinfo), so bf16 is emulated: a 512x512 bf16 matmul just took {ratio:.1f}x "
        "as long as fp32 here. Drop --precision bf16 (int8 is the lever that pays on this CPU: "
        "--quantize int8)."
    )


def optimize(run: Run, settings: OptimizeSettings) -> TradeOff:
    """Make the variants `settings` ask for under RUN/artifacts/, then measure the trade-off;
    RUN/artifacts/tradeoff.json keeps the table and the settings used.

    Raises:
        ConfigError: bad levers, or a model these levers cannot handle.
    """
    levers = levers_of(settings)
    _check_supported(run)
    names = plan(levers, run.model)
    sources = [run]
    if levers.distill is not None:
        from gradwise.deploy.distill import distill

        sources.append(distill(run, levers.distill, settings.temperature, settings.alpha))
    variants: list[Run] = sources[1:]
    failed: dict[str, str] = {}
    for source in sources:
        calibration = calibration_inputs(source, settings.calibration_samples, source.config.seed)
        for name in names:
            try:
                variants.append(make_variant(run, source, name, calibration))
            except GradwiseError:
                raise
            except Exception as exc:  # an engine that cannot take this model: the others can
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:300]
                failed[name] = reason
                log.warning("could not make the %s variant (left out): %s", name, reason)
    if failed and not variants:
        raise ConfigError(
            "no variant could be made: "
            + "; ".join(f"{k}: {v}" for k, v in failed.items())
            + ". Try other levers (--onnx, --openvino, --quantize int8)."
        )
    table = tradeoff(
        run,
        variants,
        settings.budget_pt,
        settings.robust_samples,
        settings.seconds,
        run.config.seed,
    )
    if failed:
        left_out = "; ".join(f"{k} could not be made ({v})" for k, v in failed.items())
        table = dataclasses.replace(table, verdict=f"{table.verdict} Left out: {left_out}.")
    _store_temperatures(run, variants, table)
    _store_guarantees(variants, table)
    result = table.to_dict()
    result["levers"] = {
        "asked": settings.model_dump(mode="json"),
        "made": [r.variant for r in table.rows if r.variant != "fp32"],
        "failed": failed,
    }
    write_json(artifacts_folder(run) / TRADEOFF_FILE, result)
    return table


def _check_supported(run: Run) -> None:
    if run.backend is not None:
        raise ConfigError(
            f"{run.path} is already an optimised variant; optimize the run it came from "
            f"({run.path.parent.parent})."
        )
    if isinstance(run.config.model, DiffusionConfig | Seq2SeqConfig):
        raise ConfigError(
            f"optimize handles classifiers, regressors and language models; {run.path} is a "
            f"{run.config.model.arch} run, whose generation loop needs the torch model."
        )


def _store_temperatures(base: Run, variants: list[Run], table: TradeOff) -> None:
    """When the base run has a fitted temperature, each variant keeps its own refitted one."""
    if base.calibration.temperature is None:
        return
    fitted = {r.path: r.temperature for r in table.rows}
    for variant in variants:
        t = fitted.get(str(variant.path))
        if t is not None:
            variant.set_temperature(t)


def _store_guarantees(variants: list[Run], table: TradeOff) -> None:
    """When the base run holds a certified abstention guarantee, each variant keeps its own,
    re-certified at the same alpha and delta (certified or not: a variant that could not be
    certified then says why when asked to abstain)."""
    for variant in variants:
        guarantee = table.guarantees.get(str(variant.path))
        if guarantee is not None:
            variant.set_selective(guarantee)
