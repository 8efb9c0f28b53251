"""The report page: every section present, the "no data yet" commands, plots drawn from the
JSON, nothing fetched from a network, the summary's numbers equal to the files'."""

from __future__ import annotations

import base64
import json
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import gradwise
from gradwise.auditing import read_audit
from gradwise.cli import app
from gradwise.errors import ConfigError, NotTrainedError
from gradwise.reporting import ship_rule, write_report
from tests.reporting.conftest import DATA, add_monitor
from tests.reporting.page import png_of, read_page

runner = CliRunner()
SECTIONS = [
    "summary",
    "data",
    "training",
    "metrics",
    "audit-baseline",
    "audit",
    "audit-generalisation",
    "audit-calibration",
    "audit-uncertainty",
    "audit-selective",
    "audit-slices",
    "audit-fairness",
    "audit-robustness",
    "audit-shift",
    "audit-data-quality",
    "explain",
    "cost",
    "tune",
    "monitor",
]


def test_every_section_is_on_the_page_in_order_and_the_missing_ones_name_their_command(
    audited_run, tmp_path
):
    report = write_report(audited_run, out=tmp_path / "r.html")
    page = read_page(report.path)
    assert page.sections == SECTIONS
    run = str(audited_run)
    assert page.missing == {
        "audit-selective": f"no selective audit yet: gradwise audit {run} --checks selective",
        "audit-slices": f"no slices audit yet: gradwise audit {run} --checks slices",
        "audit-fairness": f"no fairness audit yet: gradwise audit {run} --checks fairness",
        "audit-robustness": f"no robustness audit yet: gradwise audit {run} --checks robustness",
        "audit-shift": f"no shift audit yet: gradwise audit {run} --checks shift",
        "cost": f"no trade-off or cost measured yet: gradwise optimize {run} --quantize int8 "
        f"--onnx, then gradwise bench {run} --variants all",
        "tune": f"no tuning study: gradwise tune {run}/config.given.yaml --out DIR, then "
        f"gradwise report {run} --tune DIR",
        "monitor": f"not monitored yet: gradwise serve {run}, then gradwise monitor {run}",
    }
    assert set(report.missing) == set(page.missing) and report.notes == ()


def test_the_page_is_self_contained_and_every_plot_is_a_png_drawn_for_it(audited_run, tmp_path):
    page = read_page(write_report(audited_run, out=tmp_path / "r.html").path)
    assert page.external == []
    # training, baseline, generalisation, calibration, uncertainty, data quality, attributions,
    # activations: each drawn here, none copied from the checks' own PNG files
    assert len(page.images) == 8
    sizes = {png_of(img["src"]).size for img in page.images}
    assert all(w >= 400 and h >= 150 for w, h in sizes)
    own = {p.read_bytes() for p in (audited_run / "audit").glob("*.png")}
    assert own and not own & {base64.b64decode(img["src"].partition(",")[2]) for img in page.images}
    anchors = {link[1:] for link in page.links if link.startswith("#")}
    assert anchors <= set(SECTIONS)  # every reason and card line links a section that exists


def test_the_summary_and_sections_show_the_numbers_in_the_files(audited_run, tmp_path):
    page = read_page(write_report(audited_run, out=tmp_path / "r.html").path)
    metrics = json.loads((audited_run / "metrics.json").read_text())
    baseline = json.loads((audited_run / "audit" / "baseline.json").read_text())
    calibration = json.loads((audited_run / "audit" / "calibration.json").read_text())
    accuracy = f"{metrics['test']['accuracy']:.4g}"
    noise = f"{baseline['metrics']['noise_test_bootstrap']:.2g}"
    assert f"test accuracy {accuracy} ± {noise}" in page.text
    assert "test-set bootstrap of the margin over the best baseline" in page.text
    assert f"parameters {metrics['n_params']:,}" in page.text
    before, after = calibration["metrics"]["before"], calibration["metrics"]["after"]
    assert f"ece before / after {before['ece']:.4g} / {after['ece']:.4g}" in page.text
    for name in ("generalisation", "baseline", "calibration", "uncertainty", "data_quality"):
        saved = json.loads((audited_run / "audit" / f"{name}.json").read_text())
        assert saved["summary"] in page.text  # the plain-language verdict
        assert f"settings of the {name} check" in page.text
    assert "no robustness audit yet: missing evidence" in page.text  # a reason for care


def test_the_stored_reliability_bins_reproduce_the_stored_ece(audited_run):
    m = json.loads((audited_run / "audit" / "calibration.json").read_text())["metrics"]
    for key in ("before", "after"):
        bins = m["reliability"][key]
        count = np.asarray(bins["count"], dtype=float)
        gap = np.abs(np.asarray(bins["accuracy"]) - np.asarray(bins["confidence"]))
        assert count.sum() == m["n_test"]
        assert float((count * gap).sum() / count.sum()) == pytest.approx(m[key]["ece"], abs=1e-5)


def test_robustness_and_shift_are_drawn_once_audited(run_copy):
    gradwise.audit(run_copy, checks=["robustness", "shift"])
    report = write_report(run_copy)
    assert report.path == run_copy / "report.html" and report.notes == ()
    page = read_page(report.path)
    assert "audit-robustness" not in page.missing and "audit-shift" not in page.missing
    assert len(page.images) == 10


def test_a_monitored_run_shows_the_timeline_the_alerts_and_asks_for_care(run_copy):
    add_monitor(run_copy)
    report = write_report(run_copy)
    page = read_page(report.path)
    assert "monitor" not in page.missing
    assert "inputs drifted: ks effect 0.41" in page.text  # the alert, from report.json
    assert "served instances 450" in page.text
    assert any(r.anchor == "monitor" and "2 alerts" in r.text for r in report.decision.reasons)
    assert len(page.images) == 9


def test_a_run_inside_a_study_finds_it_and_takes_its_seed_noise(audited_run, tmp_path):
    study = tmp_path / "study"
    shutil.copytree(audited_run, study / "best" / "seed-0")
    shutil.copy(DATA / "tune.json", study / "tune.json")
    run = study / "best" / "seed-0"
    page = read_page(write_report(run).path)
    tune = json.loads((DATA / "tune.json").read_text())
    assert "tune" not in page.missing
    assert f"± {tune['seeds']['test_std']:.2g}" in page.text
    assert "seed-to-seed std of test accuracy over 3 seeds of the tuned config" in page.text
    assert tune["importance"]["sentence"] in page.text
    with pytest.raises(ConfigError, match="no tune.json there"):
        gradwise.report(run, tune=tmp_path)


def test_a_seed_of_a_comparison_takes_its_arm_noise(audited_run, tmp_path):
    folder = tmp_path / "cmp"
    run = Path(shutil.copytree(audited_run, folder / "tiny-a" / "f1" / "s0"))
    arm = {
        "name": "tiny-a",
        "fraction": 1.0,
        "values": [0.9, 0.92, 0.91],
        "wall_s": [1, 1, 1],
        "n_params": 1,
        "mean": 0.91,
        "std": 0.01,
    }
    compare = {
        "metric": "test.accuracy",
        "a": "tiny-a",
        "b": "tiny-b",
        "seeds": [0, 1, 2],
        "arms": [arm],
        "verdicts": [],
    }
    (folder / "compare.json").write_text(json.dumps(compare))
    page = read_page(write_report(run).path)
    assert "± 0.01 " in page.text and "gradwise compare" in page.text


def test_cli_prints_the_decision_its_reasons_and_the_path_last(audited_run, tmp_path):
    out = runner.invoke(app, ["report", str(audited_run), "--out", str(tmp_path / "x.html")])
    assert out.exit_code == 0, out.output
    lines = out.stdout.strip().splitlines()
    # the digits run names no fairness groups: no fairness audit is no missing evidence
    expected = ship_rule(read_audit(audited_run), not_asked=frozenset({"fairness"}))
    assert lines[0] == f"report of {audited_run}: {expected.label}"
    assert lines[1 : 1 + len(expected.reasons)] == [
        f"- {r.text} (#{r.anchor})" for r in expected.reasons
    ]
    assert any("#audit-robustness" in line for line in lines)
    assert lines[-1].startswith(f"wrote {tmp_path / 'x.html'}")
    as_json = runner.invoke(
        app, ["report", str(audited_run), "--json", "--out", str(tmp_path / "y.html")]
    )
    result = json.loads(as_json.stdout)
    assert result["decision"] == expected.decision and result["path"].endswith("y.html")


def test_cli_says_what_is_wrong_with_a_folder_that_holds_no_run(tmp_path):
    out = runner.invoke(app, ["report", str(tmp_path)])
    assert out.exit_code == 2 and "has no model.json" in out.output
    assert "Traceback" not in out.output
    with pytest.raises(NotTrainedError, match="not found"):
        gradwise.report(tmp_path / "nope")


def test_the_api_takes_a_run_and_the_verb_is_a_plain_function(audited_run, tmp_path):
    import inspect

    import gradwise.reporting  # noqa: F401  (importing the package leaves the verb alone)

    report = gradwise.report(gradwise.load(audited_run), out=tmp_path / "a.html")
    assert report.path.is_file()
    assert report.decision == ship_rule(read_audit(audited_run), not_asked=frozenset({"fairness"}))
    assert inspect.isfunction(gradwise.report)
    assert gradwise.report(audited_run, out=tmp_path / "b.html").path.is_file()


def test_a_regression_run_renders_its_own_plots_and_says_why_calibration_is_na(tmp_path):
    from tests.conftest import tiny_config
    from tests.reporting.conftest import FAST_AUDIT

    cfg = tiny_config(data={"source": "builtin:diabetes"}, audit=FAST_AUDIT)
    run = gradwise.train(cfg, out=tmp_path / "reg")
    gradwise.audit(run, checks=["baseline", "calibration", "uncertainty", "robustness"])
    report = write_report(run.path)
    page = read_page(report.path)
    assert report.notes == () and "test rmse" in page.text
    assert "calibration of class probabilities needs a classifier" in page.text
    for img in page.images:
        png_of(img["src"])


def test_the_templates_and_py_typed_ship_in_the_wheel(tmp_path):
    import shutil
    import subprocess
    import sys
    import zipfile

    root = Path(__file__).parents[2]
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "templates/*.j2" in data["package-data"]["gradwise.reporting"]
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip(f"setuptools {setuptools.__version__} cannot build this project (>= 77)")
    # built from a copy: setuptools writes build/ and *.egg-info beside the sources
    project = tmp_path / "project"
    shutil.copytree(root / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, project / name)
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(project),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        pytest.skip(f"pip wheel failed here: {built.stderr.strip()[-300:]}")
    (wheel,) = tmp_path.glob("gradwise-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    templates = sorted(p.name for p in (root / "src/gradwise/reporting/templates").glob("*.j2"))
    assert sorted(Path(n).name for n in names if "reporting/templates/" in n) == templates
    assert "gradwise/py.typed" in names  # the package's types are its public types (PEP 561)


def test_the_selective_section_shows_the_guarantee_its_plot_and_the_share_for_a_person(tmp_path):
    from tests.conftest import tiny_config

    run = gradwise.train(tiny_config(train={"epochs": 10}), out=tmp_path / "sel")
    gradwise.audit(run, checks=["calibration", "selective"], selective={"alpha": [0.05, 0.1]})
    gradwise.optimize(run, onnx=True, seconds=0.02, robust_samples=64)
    saved = json.loads((run.path / "audit" / "selective.json").read_text())
    m = saved["metrics"]
    c, test = m["certificates"][0], m["certificates"][0]["test"]
    # the case the person wording is for: certified, kept on test, broken by answering everything
    assert c["certified"] and test["error"] <= 0.05 < m["test_error"]
    report = write_report(run.path)
    page = read_page(report.path)
    assert "audit-selective" not in page.missing and report.notes == ()
    assert saved["summary"] in page.text
    promise = (
        "at most 5.0% errors among answered inputs, with 90% confidence (alpha 0.05, delta 0.1)"
    )
    assert f"guarantee {promise}" in page.text
    assert f"validation rows {m['n_val']} threshold {c['threshold']:.4g}" in page.text
    assert f"coverage on test {test['coverage']:.1%} of {m['n_test']} rows" in page.text
    lo, hi = test["error_interval"]
    assert f"{test['error']:.1%} ({test['errors']} of {test['answered']}; 95% interval" in page.text
    assert f"95% interval {lo:.1%} to {hi:.1%}" in page.text
    assert f"oracle coverage on test {test['oracle_coverage']:.1%}" in page.text
    assert "Assumption: validation rows and future inputs are exchangeable" in page.text
    second = m["certificates"][1]
    lo, hi = second["test"]["error_interval"]
    assert (
        f"0.1 0.1 {second['threshold']:.4g} {second['coverage']:.1%} "
        f"{second['test']['coverage']:.1%} {second['test']['error']:.1%} ({lo:.1%} to {hi:.1%})"
    ) in page.text  # the table of every promise asked for
    (plot,) = [img for img in page.images if img["alt"] == "selective plot"]
    png_of(plot["src"])
    # the decision holds with a person for the share of test cases it handed over
    label = f"ship with care, with a person for the {1 - test['coverage']:.0%} it abstains on"
    assert report.decision.label == label and label in page.text
    assert report.decision.decision == "ship with care"  # robustness and others not run yet
    # the trade-off table shows each variant's certified coverage at the same alpha
    assert "coverage % at α 0.05 Δ coverage pt" in page.text
    tradeoff = json.loads((run.path / "artifacts" / "tradeoff.json").read_text())
    base = tradeoff["rows"][0]
    assert base["coverage"] == c["coverage"]  # the base's row is its stored guarantee
    assert f"{base['robust_accuracy']:.4g} {100 * c['coverage']:.1f} +0.0" in page.text
