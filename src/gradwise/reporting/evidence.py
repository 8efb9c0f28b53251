"""Everything a report draws on, read from the files the other capabilities wrote.

The report reads JSON and YAML only (no model is loaded, no torch imported), so it draws the
same numbers the files hold: RUN/config.yaml, model.json, metrics.json(l), splits.json,
RUN/audit/<check>.json, RUN/explain/explain.json, RUN/artifacts/{bench,tradeoff}.json and the
variant folders, RUN/monitor/{report,windows}.json, and a tuning study (DIR/tune.json) or a
comparison (DIR/compare.json) the run belongs to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gradwise.auditing import CHECKS, read_audit
from gradwise.auditing.base import CheckResult
from gradwise.errors import ConfigError, DataError, NotTrainedError
from gradwise.tuning.result import TUNE_FILE

COMPARE_FILE = "compare.json"


@dataclass(frozen=True)
class Study:
    """A tuning study or a comparison the run belongs to.

    Attributes:
        path: the study's folder; data: its tune.json or compare.json; found: "given"
            (--tune/--compare) or "parent" (the run lies inside the folder).
    """

    path: Path
    data: dict[str, Any]
    found: str


@dataclass(frozen=True)
class Evidence:
    """One run directory's files, parsed; None or empty where a capability has not run yet.

    Attributes:
        path: the run directory as the user named it (commands in the report use it).
        config: the resolved config (config.yaml) as a dict; given: config.given.yaml's text.
        model: model.json; metrics: metrics.json; history: metrics.jsonl, one dict per epoch.
        splits: splits.json without its row lists: source, sha256, n_rows and rows per split.
        audit: the checks written in RUN/audit, by name.
        variants: names of the optimised variants under RUN/artifacts/.
        windows: the monitor's windows.json.
    """

    path: Path
    config: dict[str, Any]
    given: str | None
    model: dict[str, Any]
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    splits: dict[str, Any] | None
    audit: dict[str, CheckResult]
    explain: dict[str, Any] | None
    bench: dict[str, Any] | None
    tradeoff: dict[str, Any] | None
    variants: tuple[str, ...]
    tune: Study | None
    compare: Study | None
    monitor: dict[str, Any] | None
    windows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def schema(self) -> dict[str, Any]:
        return dict(self.model.get("schema") or {})

    @property
    def task(self) -> str:
        return str(self.schema.get("task") or self.metrics.get("task") or "classification")

    @property
    def name(self) -> str:
        return str(self.config.get("name") or self.path.name)


def read_evidence(
    run_dir: str | Path, tune: str | Path | None = None, compare: str | Path | None = None
) -> Evidence:
    """Read a run directory and what belongs to it.

    Args:
        run_dir: a finished run (model.json, config.yaml and metrics.json present).
        tune: a tuning study's folder (default: the nearest parent holding tune.json).
        compare: a comparison's folder (default: the nearest parent holding compare.json).

    Raises:
        NotTrainedError: the folder is missing or holds no finished run.
        ConfigError: `tune` or `compare` names a folder without its JSON.
        DataError: a file is not valid JSON / YAML.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise NotTrainedError(
            f"run directory {path} not found; train one with gradwise train CONFIG --out {path}."
        )
    for name in ("model.json", "config.yaml", "metrics.json"):
        if not (path / name).is_file():
            raise NotTrainedError(
                f"{path} has no {name}: it is not a finished run. Train it with "
                f"`gradwise train CONFIG --out {path}` (or --resume if it was interrupted)."
            )
    return Evidence(
        path=path,
        config=_yaml(path / "config.yaml"),
        given=_text(path / "config.given.yaml"),
        model=_json(path / "model.json"),
        metrics=_json(path / "metrics.json"),
        history=_jsonl(path / "metrics.jsonl"),
        splits=_splits(path / "splits.json"),
        audit=_audit(path),
        explain=_optional(path / "explain" / "explain.json"),
        bench=_optional(path / "artifacts" / "bench.json"),
        tradeoff=_optional(path / "artifacts" / "tradeoff.json"),
        variants=_variants(path / "artifacts"),
        tune=_study(path, tune, TUNE_FILE, "--tune"),
        compare=_study(path, compare, COMPARE_FILE, "--compare"),
        monitor=_optional(path / "monitor" / "report.json"),
        windows=list(_optional(path / "monitor" / "windows.json") or []),
    )


def _audit(path: Path) -> dict[str, CheckResult]:
    try:
        return read_audit(path)
    except (TypeError, json.JSONDecodeError) as exc:
        raise DataError(
            f"{path}/audit holds a check file that is not an audit result ({exc}); rerun "
            f"gradwise audit {path}."
        ) from None


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path} is not valid JSON (line {exc.lineno}: {exc.msg}); rerun the command "
            "that writes it."
        ) from None


def _optional(path: Path) -> Any:
    return _json(path) if path.is_file() else None


def _yaml(path: Path) -> dict[str, Any]:
    try:
        value = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DataError(f"{path} is not valid YAML ({exc}).") from None
    if not isinstance(value, dict):
        raise DataError(f"{path} holds no config mapping.")
    return value


def _text(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            raise DataError(f"{path} line {i} is not valid JSON.") from None
    return rows


def _splits(path: Path) -> dict[str, Any] | None:
    """splits.json's facts, the row lists replaced by their lengths."""
    if not path.is_file():
        return None
    raw = _json(path)
    out = {k: v for k, v in raw.items() if not isinstance(v, list)}
    out["rows"] = {k: len(v) for k, v in raw.items() if isinstance(v, list)}
    return out


def _variants(folder: Path) -> tuple[str, ...]:
    if not folder.is_dir():
        return ()
    return tuple(sorted(p.name for p in folder.iterdir() if (p / "model.json").is_file()))


def _study(run: Path, given: str | Path | None, file: str, flag: str) -> Study | None:
    """The study named by `given`, else the nearest parent folder of the run holding `file`."""
    if given is not None:
        folder = Path(given)
        if not (folder / file).is_file():
            raise ConfigError(
                f"{flag} {folder}: no {file} there; give the folder that "
                f"{'gradwise tune --out' if file == TUNE_FILE else 'gradwise compare --out'} "
                "wrote."
            )
        return Study(folder, _json(folder / file), "given")
    for parent in run.resolve().parents:
        if (parent / file).is_file():
            return Study(parent, _json(parent / file), "parent")
    return None


def missing_checks(evidence: Evidence) -> list[str]:
    """The audit checks not run yet, in the audit's order."""
    return [c for c in CHECKS if c not in evidence.audit]
