"""The public surface: what `gradwise` exports (pinned, as httpx pins its `__all__`), verbs
with named, typed parameters, and types a user's mypy --strict can rely on (py.typed)."""

from __future__ import annotations

import importlib.util
import inspect
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import gradwise

ROOT = Path(__file__).resolve().parents[1]
USER_SCRIPT = Path(__file__).parent / "typing" / "user_script.py"

EXPECTED_ALL = [
    "AuditSettings",
    "BenchSettings",
    "Config",
    "ConfigError",
    "DataError",
    "ExplainSettings",
    "GradwiseError",
    "MonitorSettings",
    "NotTrainedError",
    "OptimizeSettings",
    "ReportSettings",
    "Run",
    "ServeSettings",
    "TrainingDiverged",
    "TuneSettings",
    "audit",
    "bench",
    "compare",
    "evaluate_file",
    "explain",
    "explain_file",
    "load",
    "lr_find",
    "monitor",
    "optimize",
    "predict_file",
    "report",
    "serve",
    "train",
    "tune",
]
VERBS = [name for name in EXPECTED_ALL if name.islower()]
FIRST_PARAMETERS = {"run", "config", "config_a", "path"}


def test_all_is_exactly_the_public_surface_and_sorted():
    assert gradwise.__all__ == EXPECTED_ALL
    assert gradwise.__all__ == sorted(gradwise.__all__)


def test_every_exported_name_resolves():
    for name in gradwise.__all__:
        assert getattr(gradwise, name) is not None
    # a package below the api is no front door (checked in a fresh interpreter: other tests
    # import gradwise.auditing, which binds it on the package)
    code = "import gradwise\ntry:\n    gradwise.auditing\nexcept AttributeError as e:\n    print(e)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert "no attribute 'auditing'" in out.stdout, out.stderr


def test_import_gradwise_loads_no_torch_until_a_verb_needs_it():
    code = "import sys, gradwise; gradwise.__all__; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("verb", VERBS)
def test_each_verb_is_a_plain_function_with_named_typed_parameters(verb: str):
    fn = getattr(gradwise, verb)
    assert inspect.isfunction(fn) and fn.__module__.partition(".api")[0] == "gradwise"
    signature = inspect.signature(fn)
    assert signature.return_annotation is not inspect.Signature.empty, f"{verb} -> ?"
    params = list(signature.parameters.values())
    assert params[0].name in FIRST_PARAMETERS, f"{verb}({params[0].name}, ...)"
    for p in params:
        assert p.kind is not inspect.Parameter.VAR_POSITIONAL, f"{verb}(*{p.name})"
        assert p.annotation is not inspect.Parameter.empty, f"{verb}({p.name}) has no type"
        # **changes: Any is validated inside; a mapping of config keys holds any value
        typed = str(p.annotation).replace("dict[str, Any]", "")
        if p.kind is not inspect.Parameter.VAR_KEYWORD:
            assert "Any" not in typed, f"{verb}({p.name}: {p.annotation})"


def test_audit_shows_its_run_and_settings_by_name():
    params = inspect.signature(gradwise.audit).parameters
    assert list(params)[:2] == ["run", "settings"]
    assert "AuditSettings" in str(params["settings"].annotation)


def test_py_typed_ships_with_the_package():
    assert (Path(gradwise.__file__).parent / "py.typed").is_file()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["gradwise"]


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed")
def test_mypy_strict_passes_on_a_user_script_and_catches_a_misuse(
    tmp_path: Path, request: pytest.FixtureRequest
):
    """tests/typing/user_script.py calls every verb; a second script misuses the API, so a
    run that checked nothing (every type Any) cannot pass."""
    misuse = tmp_path / "misuse.py"
    misuse.write_text(
        "import gradwise\n"
        "run = gradwise.load('runs/x')\n"
        "gradwise.audit(run, gradwise.ServeSettings())\n"
        "n: int = gradwise.tune('c.yaml').best_config\n"
    )
    config = tmp_path / "mypy.ini"  # a user's mypy with the pydantic plugin, as ours
    config.write_text("[mypy]\nplugins = pydantic.mypy\n")
    store = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    cache = store.mkdir("mypy-public-api") if store is not None else tmp_path
    found = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--follow-imports=silent",  # gradwise's own modules are checked by `mypy src`
            f"--config-file={config}",
            f"--cache-dir={cache}",
            str(USER_SCRIPT),
            str(misuse),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    errors = [line for line in found.stdout.splitlines() if ": error:" in line]
    in_script = [e for e in errors if "user_script.py" in e]
    assert not in_script, "\n".join(in_script)
    lines = sorted({int(m.group(1)) for e in errors if (m := re.search(r"misuse\.py:(\d+)", e))})
    assert lines == [3, 4], found.stdout
