"""One settings model per verb: bounds, config sections, typed --set, and precedence
(defaults < the run's config section < --set < explicit flags)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

import gradwise
from gradwise.audit_config import CHECK_NAMES
from gradwise.cli import app
from gradwise.cli.console import verb_changes
from gradwise.config import (
    VERB_SECTIONS,
    AuditSettings,
    BenchSettings,
    Config,
    ExplainSettings,
    MonitorSettings,
    OptimizeSettings,
    ReportSettings,
    ServeSettings,
    TuneSettings,
    dump_config,
    load_config,
    parse_overrides,
    settings_with,
)
from gradwise.errors import ConfigError
from tests.conftest import tiny_config

runner = CliRunner()

SETTINGS: dict[str, type[BaseModel]] = {
    "audit": AuditSettings,
    "explain": ExplainSettings,
    "optimize": OptimizeSettings,
    "bench": BenchSettings,
    "serve": ServeSettings,
    "monitor": MonitorSettings,
    "tune": TuneSettings,
    "report": ReportSettings,
}


def test_every_verb_has_a_section_of_the_config():
    assert set(VERB_SECTIONS) == set(SETTINGS)
    for verb, cls in SETTINGS.items():
        assert Config.model_fields[verb].annotation is cls
    written = load_config({}).model_dump()
    assert all(verb in written for verb in VERB_SECTIONS)


def _fields(cls: type[BaseModel]) -> list[tuple[str, str, Any]]:
    out = []
    for name, field in cls.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += [(f"{name}.{n}", d, a) for n, d, a in _fields(ann)]
        else:
            out.append((name, field.description or "", ann))
    return out


@pytest.mark.parametrize("verb", sorted(SETTINGS))
def test_every_setting_says_what_it_is(verb: str):
    # the docs' configuration reference is generated from these descriptions
    fields = _fields(SETTINGS[verb])
    if verb == "audit":  # the per-check sections came first; some thresholds pair a *_warn
        fields = [f for f in fields if "." not in f[0]]
    missing = [name for name, text, _ in fields if not text]
    assert not missing, f"{verb} settings without a description: {missing}"


@pytest.mark.parametrize(
    ("verb", "changes", "message"),
    [
        ("serve", {"port": 0}, "serve.port: Input should be greater than or equal to 1"),
        ("serve", {"max_batch": 5000}, "serve.max_batch: Input should be less than or equal"),
        ("serve", {"max_wait_ms": -1}, "serve.max_wait_ms"),
        ("serve", {"workers": 0}, "serve.workers"),
        ("serve", {"tune_batches": "1,0"}, "serve.tune_batches.1"),
        ("serve", {"prot": 9000}, "unknown key serve.prot .*did you mean serve.port"),
        ("tune", {"trials": 0}, "tune.trials"),
        ("tune", {"pruner": "mean"}, "tune.pruner: Input should be 'median', 'halving'"),
        ("tune", {"direction": "up"}, "tune.direction"),
        ("tune", {"prune_startup": -1}, "tune.prune_startup"),
        ("tune", {"metric": "test.accuracy"}, "searching on the test split"),
        ("tune", {"metric": "accuracy"}, "must be a validation metric like val.accuracy"),
        ("tune", {"budget_s": 0}, "tune.budget_s"),
        ("monitor", {"window": "5"}, "at least 10 instances"),
        ("monitor", {"window": "soon"}, "neither a number of instances"),
        ("monitor", {"alpha": 1.0}, "monitor.alpha"),
        ("monitor", {"raw_detectors": ["ks", "kss"]}, "monitor.raw_detectors.1"),
        ("bench", {"variants": "some"}, "bench.variants"),
        ("bench", {"batches": []}, "batches: give at least one value"),
        ("serve", {"tune_waits": ""}, "tune_waits: give at least one value"),
        ("bench", {"seconds": 0}, "bench.seconds"),
        ("optimize", {"quantize": "int4"}, "optimize.quantize"),
        ("optimize", {"alpha": 1.5}, "optimize.alpha"),
        ("optimize", {"precision": "fp16"}, "optimize.precision"),
        ("explain", {"method": "lime"}, "explain.method"),
        ("explain", {"split": "holdout"}, "explain.split"),
        ("explain", {"rows": [-1]}, "explain.rows.0"),
        ("audit", {"checks": ["calibraton"]}, "did you mean calibration"),
        ("audit", {"calibration.bins": 1}, "audit.calibration.bins"),
        ("audit", {"calibraton": {"bins": 5}}, "did you mean audit.calibration"),
        ("report", {"tun": "x"}, "unknown key report.tun"),
    ],
)
def test_a_value_out_of_bounds_is_one_config_error_naming_its_key(
    verb: str, changes: dict[str, Any], message: str
):
    with pytest.raises(ConfigError, match=message):
        settings_with(SETTINGS[verb](), verb, changes)


def test_changes_to_a_sub_section_keep_its_other_keys():
    base = AuditSettings.model_validate({"calibration": {"bins": 5, "ece_warn": 0.01}})
    changed = settings_with(base, "audit", {"calibration": {"bins": 10}})
    assert changed.calibration.bins == 10 and changed.calibration.ece_warn == 0.01
    dotted = settings_with(base, "audit", {"calibration.ece_fail": 0.5})
    assert dotted.calibration.bins == 5 and dotted.calibration.ece_fail == 0.5


def test_check_names_are_the_audits_and_read_as_people_write_them():
    from gradwise.auditing import CHECKS

    assert CHECK_NAMES == CHECKS
    chosen = settings_with(AuditSettings(), "audit", {"checks": "calibration,data-quality"})
    assert chosen.checks == ["calibration", "data_quality"]


def test_set_values_are_typed_by_their_field():
    parsed = parse_overrides(
        [
            "data.target=2020",
            "name=nan",
            "train.epochs=5",
            "train.optimizer.lr=3e-4",
            "data.text_column=null",
            "model.hidden=[64, 64]",
            "serve.store=off",
            "monitor.window=1h",
            "tune.direction=max",
        ]
    )
    assert parsed == {
        "data.target": "2020",
        "name": "nan",
        "train.epochs": 5,
        "train.optimizer.lr": 3e-4,
        "data.text_column": None,
        "model.hidden": [64, 64],
        "serve.store": "off",
        "monitor.window": "1h",
        "tune.direction": "max",
    }
    cfg = load_config({"data": {"source": "builtin:digits"}}, ["data.target=2020", "name=nan"])
    assert cfg.data.target == "2020" and cfg.name == "nan"


def test_a_verb_section_round_trips_through_the_written_config(tmp_path: Path):
    cfg = load_config(
        {"serve": {"port": 9000, "tune_waits": "0,1"}, "monitor": {"window": 500}},
        ["tune.trials=7", "audit.checks=calibration,shift"],
    )
    assert cfg.serve.port == 9000 and cfg.serve.tune_waits == (0.0, 1.0)
    assert cfg.monitor.window == "500" and cfg.tune.trials == 7
    assert cfg.audit.checks == ["calibration", "shift"]
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg


def test_flags_beat_set_which_beats_the_config_which_beats_the_defaults():
    section = load_config({"serve": {"port": 9000, "max_batch": 8}}).serve

    def port(set_: list[str] | None, **flags: Any) -> int:
        return settings_with(section, "serve", verb_changes("serve", set_, **flags)).port

    assert ServeSettings().port == 8000
    assert port(None) == 9000
    assert port(["serve.port=9001"]) == 9001
    assert port(["serve.port=9001"], port=9002) == 9002
    assert port(None, port=None, tune=False) == 9000  # flags not given change nothing
    kept = settings_with(section, "serve", verb_changes("serve", ["serve.port=1"]))
    assert kept.max_batch == 8


def test_set_on_a_run_verb_takes_only_its_own_section():
    with pytest.raises(ConfigError, match="serve --set changes the serve settings only"):
        verb_changes("serve", ["train.epochs=3"])


def test_the_cli_reports_a_bad_setting_with_its_key_and_exit_2(tmp_path: Path):
    out = runner.invoke(app, ["serve", str(tmp_path), "--set", "serve.port=0"])
    assert out.exit_code == 2 and "serve.port: Input should be greater" in out.output
    out = runner.invoke(app, ["serve", str(tmp_path), "--max-batch", "0"])
    assert out.exit_code == 2 and "serve.max_batch" in out.output
    out = runner.invoke(app, ["serve", str(tmp_path), "--set", "train.epochs=3"])
    assert out.exit_code == 2 and "serve settings only" in out.output


def test_the_api_validates_before_any_work(tmp_path: Path):
    with pytest.raises(ConfigError, match="serve.port"):
        gradwise.serve(tmp_path, port=70000)
    with pytest.raises(ConfigError, match="did you mean serve.flush_interval_s"):
        gradwise.serve(tmp_path, flush_interval=1.0)
    with pytest.raises(ConfigError, match="tune.trials"):
        gradwise.tune(tiny_config(), tmp_path / "t", trials=0)


@pytest.fixture(scope="module")
def sectioned_run(tmp_path_factory: pytest.TempPathFactory) -> gradwise.Run:
    cfg = tiny_config(
        audit={"checks": ["calibration"], "calibration": {"bins": 5}},
        explain={"method": "saliency"},
    )
    return gradwise.train(cfg, out=tmp_path_factory.mktemp("sections") / "run")


def test_the_runs_config_section_is_the_verbs_default_and_is_recorded(sectioned_run):
    report = gradwise.audit(sectioned_run)
    assert [c.check for c in report.checks] == ["calibration"]
    assert report["calibration"].settings["bins"] == 5
    changed = gradwise.audit(sectioned_run, **{"calibration.bins": 7})
    assert changed["calibration"].settings["bins"] == 7
    assert gradwise.explain(sectioned_run).settings["method"] == "saliency"


def test_the_cli_applies_the_same_precedence(sectioned_run):
    run_dir = str(sectioned_run.path)
    out = runner.invoke(app, ["explain", run_dir, "--json", "--set", "explain.method=gradshap"])
    assert out.exit_code == 0, out.output
    assert '"method": "gradshap"' in out.output
    args = ["explain", run_dir, "--json", "--set", "explain.method=gradshap", "--method", "ig"]
    out = runner.invoke(app, args)
    assert out.exit_code == 0 and '"method": "ig"' in out.output
