"""Windows of served traffic: every N instances, or every fixed stretch of time."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from gradwise.errors import ConfigError

_UNITS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True)
class WindowSpec:
    """Either `size` instances per window, or `seconds` of traffic per window."""

    size: int | None = None
    seconds: float | None = None

    def __str__(self) -> str:
        if self.size is not None:
            return f"{self.size} instances"
        assert self.seconds is not None
        return _duration_text(self.seconds)


def parse_window(text: str | int) -> WindowSpec:
    """`500` (instances) or a duration: `90s`, `15m`, `1h`, `1d`.

    Raises:
        ConfigError: neither a positive count nor a duration.
    """
    value = str(text).strip().lower()
    if value.isdigit():
        if int(value) < 10:
            raise ConfigError(f"--window {text}: a window needs at least 10 instances.")
        return WindowSpec(size=int(value))
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|m|min|h|d)", value)
    if match is None or float(match.group(1)) <= 0:
        raise ConfigError(
            f"--window {text!r} is neither a number of instances (e.g. 1000) nor a duration "
            "(e.g. 30m, 1h, 1d)."
        )
    return WindowSpec(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def window_bounds(
    times: list[float],
    spec: WindowSpec,
    start: int = 0,
    open_min: int | None = None,
    origin: float | None = None,
) -> list[tuple[int, int, bool]]:
    """(start, end, complete) index ranges of the windows of `times` (sorted) from `start`.

    A count window is complete with `size` instances; a time window once an instance
    arrives after its end. The newest, still open window is included (complete=False) only
    when `open_min` is given and it holds at least that many instances.

    Args:
        origin: where time windows start counting (the first instance ever served); None:
            `times[0]` (the monitor passes it once it has forgotten the first instances).
    """
    bounds: list[tuple[int, int, bool]] = []
    if spec.size is not None:
        a = start
        while a + spec.size <= len(times):
            bounds.append((a, a + spec.size, True))
            a += spec.size
        if open_min is not None and len(times) - a >= open_min:
            bounds.append((a, len(times), False))
        return bounds
    assert spec.seconds is not None
    if start >= len(times):
        return bounds
    origin = times[0] if origin is None else origin
    a = start
    while a < len(times):
        slot = math.floor((times[a] - origin) / spec.seconds)
        end_time = origin + (slot + 1) * spec.seconds
        b = a
        while b < len(times) and times[b] < end_time:
            b += 1
        if b == len(times):
            if open_min is not None and b - a >= open_min:
                bounds.append((a, b, False))
            break
        bounds.append((a, b, True))
        a = b
    return bounds


def _duration_text(seconds: float) -> str:
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
