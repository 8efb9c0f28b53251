"""Distil a trained classifier into a smaller student: RUN/artifacts/distilled/.

The student trains through `pipeline.train_run` on the teacher's data and splits, with the
`training.distillation.Distillation` objective; its folder is a complete run (and a variant
of the base, named `distilled`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gradwise.artifacts import read_json, write_json
from gradwise.config import Config, load_config
from gradwise.deploy.variants import artifacts_folder
from gradwise.errors import ConfigError
from gradwise.run import Run

STUDENT_KEYS = {"name", "seed", "model", "train", "data"}


def student_config(teacher: Run, student: str | Path | dict[str, Any]) -> Config:
    """The student's config: its own `model` (and `train`, `seed`, if given) on the
    teacher's data.

    Raises:
        ConfigError: the file has no model section, has other sections, or names other data.
    """
    where = str(student) if not isinstance(student, dict) else "the student config"
    raw = student if isinstance(student, dict) else _read_yaml(Path(student))
    unknown = set(raw) - STUDENT_KEYS
    if "model" not in raw or unknown:
        raise ConfigError(
            f"{where} must give the student's model: section (and optionally train:, seed:, "
            f"name:); found {', '.join(sorted(raw)) or 'nothing'}. The student trains on the "
            "teacher's data."
        )
    merged = teacher.config.model_dump(mode="json")
    merged["name"] = raw.get("name", f"{teacher.config.name}-distilled")
    for key in ("seed", "model", "train"):
        if key in raw:
            merged[key] = raw[key]
    if "data" in raw:
        theirs = load_config({**merged, "data": raw["data"]}).data
        if theirs != teacher.config.data:
            raise ConfigError(
                f"{where} names other data than the teacher ({theirs.source} vs "
                f"{teacher.config.data.source}); a student learns on the teacher's data and "
                "splits. Drop its data: section."
            )
    return load_config(merged)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"--distill {path}: file not found; give the student's config YAML.")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping with a model: section.")
    return raw


def distill(
    teacher: Run,
    student: str | Path | dict[str, Any],
    temperature: float = 4.0,
    alpha: float = 0.7,
    out: Path | None = None,
) -> Run:
    """Train the student on the teacher's soft targets; writes RUN/artifacts/distilled/.

    Args:
        temperature: softmax temperature of the soft targets (> 0).
        alpha: weight of the soft term (0..1); the rest goes to the hard labels.
        out: where the student's run goes (default: the teacher's artifacts/distilled).

    Raises:
        ConfigError: the teacher is not a classifier, or bad settings.
    """
    from gradwise.pipeline import train_run
    from gradwise.training.distillation import Distillation
    from gradwise.training.objectives import Objective, Supervised

    if teacher.schema.task != "classification" or teacher.backend is not None:
        raise ConfigError(
            f"--distill needs a classifier trained in torch as the teacher; {teacher.path} is "
            f"{teacher.schema.task}" + (" (an optimised variant)" if teacher.backend else "") + "."
        )
    if not temperature > 0 or not 0 <= alpha <= 1:
        raise ConfigError(
            f"distillation temperature must be above 0 and alpha in [0, 1]; got "
            f"{temperature} and {alpha}."
        )
    cfg = student_config(teacher, student)

    def wrap(objective: Objective) -> Objective:
        if not isinstance(objective, Supervised):
            raise ConfigError(f"--distill supports supervised students; {cfg.model.arch} is not.")
        return Distillation(objective, teacher.model, temperature, alpha)

    folder = out or artifacts_folder(teacher) / "distilled"
    run = train_run(cfg, folder, overwrite=True, wrap_objective=wrap)
    summary = read_json(folder / "metrics.json")
    summary["variant"] = {
        "name": "distilled",
        "lever": "knowledge distillation",
        "source": str(teacher.path),
        "temperature": temperature,
        "alpha": alpha,
        "teacher_params": sum(p.numel() for p in teacher.model.parameters()),
        "student_params": sum(p.numel() for p in run.model.parameters()),
    }
    write_json(folder / "metrics.json", summary)
    return run
