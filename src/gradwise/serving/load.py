"""Generated load with `wrk`, a C load generator: many connections from few threads, so the
client is not what limits the measurement (a Python client tops out near 200 requests/s on
a small machine and measures itself). Used by `gradwise serve --tune` and the benchmarks.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gradwise.errors import ConfigError

_MARK = "GRADWISE_WRK "
_SCRIPT = """
wrk.method = "{method}"
wrk.body = [==[{body}]==]
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "{mark}{{\\"requests\\":%d,\\"duration_us\\":%d,\\"connect\\":%d,\\"read\\":%d," ..
    "\\"write\\":%d,\\"status\\":%d,\\"timeout\\":%d,\\"p50_us\\":%d,\\"p95_us\\":%d," ..
    "\\"p99_us\\":%d,\\"mean_us\\":%f,\\"max_us\\":%d}}\\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.mean,
    latency.max))
end
"""


@dataclass(frozen=True)
class LoadResult:
    """What one load run measured.

    Attributes:
        requests: answered requests; errors: connection errors, timeouts and non-2xx answers.
        rps: requests answered per second; p50_ms/p95_ms/p99_ms: latency percentiles.
    """

    requests: int
    errors: int
    duration_s: float
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    connections: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def wrk_path() -> str:
    """The wrk binary.

    Raises:
        ConfigError: wrk is not installed.
    """
    found = shutil.which("wrk")
    if found is None:
        raise ConfigError(
            "wrk (the load generator) is not installed; install it (Debian/Ubuntu: "
            "apt-get install wrk; macOS: brew install wrk)."
        )
    return found


def run_wrk(
    url: str,
    body: bytes | str | None = None,
    connections: int = 64,
    duration_s: float = 10.0,
    threads: int = 2,
    headers: dict[str, str] | None = None,
    timeout_s: float = 10.0,
) -> LoadResult:
    """Load `url` with `connections` keep-alive connections for `duration_s`.

    Args:
        body: a JSON body to POST with every request (None: GET).
        headers: extra request headers (e.g. an API key).
    """
    text = body.decode() if isinstance(body, bytes) else body
    lines = [f'wrk.headers["{k}"] = "{v}"' for k, v in (headers or {}).items()]
    if text is not None:
        lines.append('wrk.headers["Content-Type"] = "application/json"')
    script = _SCRIPT.format(
        method="POST" if text is not None else "GET",
        body=text or "",
        headers="\n".join(lines),
        mark=_MARK,
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "load.lua"
        path.write_text(script)
        cmd = [
            wrk_path(),
            f"-t{max(1, min(threads, connections))}",
            f"-c{connections}",
            f"-d{max(1, round(duration_s))}s",
            f"--timeout={max(1, round(timeout_s))}s",
            "-s",
            str(path),
            url,
        ]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=duration_s + timeout_s + 30
        )
    line = next((x for x in proc.stdout.splitlines() if x.startswith(_MARK)), None)
    if proc.returncode != 0 or line is None:
        raise ConfigError(f"wrk failed: {(proc.stderr or proc.stdout).strip()[:500]}")
    raw = json.loads(line[len(_MARK) :])
    duration = raw["duration_us"] / 1e6
    errors = sum(raw[k] for k in ("connect", "read", "write", "status", "timeout"))
    ok = max(0, raw["requests"] - raw["status"])
    return LoadResult(
        requests=raw["requests"],
        errors=errors,
        duration_s=round(duration, 3),
        rps=round(ok / duration, 1) if duration > 0 else 0.0,
        p50_ms=raw["p50_us"] / 1000,
        p95_ms=raw["p95_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        mean_ms=round(raw["mean_us"] / 1000, 3),
        max_ms=raw["max_us"] / 1000,
        connections=connections,
    )
