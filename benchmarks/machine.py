"""The CPU a benchmark ran on, printed with its numbers: the model and the flags that decide
matrix speed (vector width, bf16, AMX). Imported by the scripts beside it."""

from __future__ import annotations

from pathlib import Path

WANTED = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile", "fma")


def cpu_flags() -> str:
    """`<model>; flags: <the wanted flags this CPU has>` (from /proc/cpuinfo)."""
    model, flags = "unknown CPU", set[str]()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        if line.startswith("model name") and model == "unknown CPU":
            model = line.split(":", 1)[1].strip()
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
    found = " ".join(f for f in WANTED if f in flags) or "none of " + ", ".join(WANTED)
    return f"{model}; flags: {found}"
