"""The robustness check: its sanity checks, its units, and every data kind it covers."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import gradwise
from gradwise.auditing import robustness, threat
from gradwise.auditing.base import AuditContext
from gradwise.auditing.corruptions import _blur, char_edits
from gradwise.config import RobustnessAudit
from gradwise.training.adversarial import attack_budget
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> gradwise.Run:
    out = tmp_path_factory.mktemp("robust") / "digits"
    return gradwise.train(tiny_config(train={"epochs": 8}), out=out)


def _check(run: gradwise.Run, **settings) -> robustness.CheckResult:
    ctx = AuditContext(out=Path(run.path) / "audit", seed=0)
    return robustness.check(run, RobustnessAudit(**settings), ctx)


def test_running_worst_never_rises_and_keeps_each_samples_worst():
    correct = np.array([[1, 1, 1], [0, 1, 1], [1, 1, 0], [1, 0, 1]], dtype=float)  # (eps, N)
    worst = robustness.running_worst(correct, higher_is_worse=False)
    expected = np.array([[1, 1, 1], [0, 1, 1], [0, 1, 0], [0, 0, 0]], dtype=float)
    np.testing.assert_array_equal(worst, expected)
    errors = np.array([[1.0, 2.0], [0.5, 3.0], [4.0, 1.0]])
    np.testing.assert_array_equal(
        robustness.running_worst(errors, higher_is_worse=True), [[1, 2], [1, 3], [4, 3]]
    )


def test_digits_curve_starts_at_clean_accuracy_and_never_rises(digits_run: gradwise.Run):
    result = _check(digits_run)
    m = result.metrics
    clean = digits_run.metrics["test"]["accuracy"]
    assert m["n_samples"] == m["n_test"]  # the whole test split: comparable with metrics.json
    assert m["clean"] == pytest.approx(clean)
    for norm in ("linf", "l2"):
        for attack, values in m["curves"][norm].items():
            assert values[0] == pytest.approx(clean), (norm, attack)
            assert all(b <= a for a, b in zip(values, values[1:])), (norm, attack)
        assert m["curves"][norm]["worst"][-1] < clean - 0.3  # eps 4 of 16 breaks a plain MLP
    assert m["sanity"]["eps0_equals_clean"] and m["sanity"]["never_rises_with_eps"]
    assert m["sanity"]["within_budget"] and m["sanity"]["max_budget_excess"] < 1e-4
    resolved = result.settings["resolved"]
    assert resolved["eps"] == [0.0, 0.25, 0.5, 1.0, 2.0, 4.0]  # 1/64 .. 1/4 of 16 levels
    assert resolved["reference_eps"] == 1.0 and resolved["units"] == "raw"
    assert "eps 1 (raw units, range 0 to 16)" in result.summary
    assert f"on all {m['n_test']:,} test rows" in result.summary
    at_ref = m["curves"]["linf"]["worst"][3]
    assert result.verdict == ("fail" if clean - at_ref >= 0.3 else "warn")
    assert {c["name"] for c in m["corruptions"]} == {
        "gaussian_noise",
        "blur",
        "contrast",
        "occlusion",
    }
    for png in result.plots:
        assert (Path(digits_run.path) / "audit" / png).stat().st_size > 1000


def test_pgd_is_at_least_as_strong_as_fgsm_and_l2_at_least_as_strong_as_linf(
    digits_run: gradwise.Run,
):
    curves = _check(digits_run, corruptions=False).metrics["curves"]
    for a, b in zip(curves["linf"]["pgd"], curves["linf"]["fgsm"]):
        assert a <= b + 0.02  # PGD starts where FGSM steps; allow a sample or two of noise
    # the L2 ball of radius eps * sqrt(d) contains the L-inf ball of radius eps
    for a, b in zip(curves["l2"]["worst"], curves["linf"]["worst"]):
        assert a <= b + 0.02


def test_scores_come_from_the_returned_inputs_not_the_attack(digits_run, monkeypatch):
    # an "attack" that returns the clean inputs leaves accuracy at clean accuracy at every eps
    monkeypatch.setattr(threat, "pgd", lambda model, x, *a, **k: x.clone())
    m = _check(digits_run, corruptions=False).metrics
    clean = m["clean"]
    assert all(v == pytest.approx(clean) for v in m["curves"]["linf"]["worst"])
    # an attack that leaves its radius is caught, and the check refuses its numbers
    monkeypatch.setattr(threat, "pgd", lambda model, x, y, eps, *a, **k: x + 10.0)
    result = _check(digits_run, corruptions=False)
    assert not result.metrics["sanity"]["within_budget"]
    assert result.verdict == "fail" and "sanity checks" in result.summary


def test_user_grid_and_reference_are_stated(digits_run: gradwise.Run):
    result = _check(digits_run, eps=[0.5, 3.0], reference_eps=2.0, norm="linf", corruptions=False)
    assert result.metrics["eps"] == [0.0, 0.5, 2.0, 3.0]
    assert list(result.metrics["curves"]) == ["linf"]
    assert result.metrics["at_reference"]["eps"] == 2.0
    assert result.settings["eps"] == [0.5, 3.0]


def test_a_sampled_measurement_says_how_many_test_rows_it_attacked(digits_run: gradwise.Run):
    result = _check(digits_run, max_samples=50, norm="linf", corruptions=False)
    m = result.metrics
    assert m["n_samples"] == 50 and m["n_test"] == len(digits_run.split("test")) > 50
    assert f"on 50 of the {m['n_test']:,} test rows (a seeded sample" in result.summary
    assert result.settings["resolved"]["n_samples"] == 50


def _mixed_table(path: Path, n: int = 240) -> Path:
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "income": rng.normal(50_000, 15_000, n),  # dollars
            "ratio": rng.normal(0.3, 0.05, n),  # a fraction
            "city": rng.choice(["a", "b", "c"], n),
        }
    )
    df["label"] = np.where((df.income - 50_000) / 15_000 + (df.ratio - 0.3) / 0.05 > 0, "y", "n")
    df.to_csv(path, index=False)
    return path


def test_tables_attack_numeric_columns_in_std_units_and_leave_categories(tmp_path: Path):
    source = _mixed_table(tmp_path / "t.csv")
    cfg = tiny_config(
        data={"source": f"csv:{source}", "target": "label"},
        train={"epochs": 15, "optimizer": {"lr": 1e-2}},
    )
    run = gradwise.train(cfg, out=tmp_path / "r")
    budget = attack_budget(run.schema, "auto", run.split("train").x)
    assert budget.units == "std" and budget.n_attacked == 2
    assert budget.mask is not None and budget.mask.tolist() == [[1, 1, 0, 0, 0, 0]]
    x = run.split("test").x
    x_adv = robustness.pgd(
        run.model,
        x,
        run.split("test").y,
        0.5,
        5,
        scale=budget.scale,
        low=budget.low,
        high=budget.high,
        mask=budget.mask,
    )
    assert torch.equal(x_adv[:, 2:], x[:, 2:])  # one-hot city untouched
    assert (x_adv[:, :2] - x[:, :2]).abs().max() <= 0.5 + 1e-5  # std units: model units
    result = _check(run, attacks="on")
    assert result.settings["resolved"]["units"] == "std"
    assert result.settings["resolved"]["reference_eps"] == 0.25
    names = {c["name"] for c in result.metrics["corruptions"]}
    assert names == {"feature_noise", "missing_values"}
    assert "standard deviations of each column" in result.summary


def test_missing_values_go_through_the_preprocessors_imputation(tmp_path: Path):
    from gradwise.auditing.corruptions import corruptions

    source = _mixed_table(tmp_path / "t.csv", n=120)
    cfg = tiny_config(data={"source": f"csv:{source}", "target": "label"}, train={"epochs": 1})
    run = gradwise.train(cfg, out=tmp_path / "r")
    test = run.split("test")
    found, _ = corruptions(run, test.x, test.raw, seed=0)
    holed = [c for c in found if c.name == "missing_values"]
    prep = run.schema.tabular
    imputed_income = (prep.medians[0] - prep.means[0]) / prep.stds[0]
    share = (holed[-1].x[:, 0] == torch.tensor(imputed_income, dtype=torch.float32)).float().mean()
    assert 0.3 < share < 0.7  # about half the cells at severity 0.5 take the train median


def test_regression_reports_the_rise_of_rmse(tmp_path: Path):
    cfg = tiny_config(
        data={"source": "builtin:diabetes", "target": "target"},
        train={"epochs": 20, "optimizer": {"lr": 1e-2}},
    )
    run = gradwise.train(cfg, out=tmp_path / "r")
    result = _check(run, corruptions=True, attacks="on")
    m = result.metrics
    assert m["metric"] == "rmse"
    assert m["clean"] == pytest.approx(run.metrics["test"]["rmse"], rel=1e-4)
    worst = m["curves"]["linf"]["worst"]
    assert worst[0] == pytest.approx(m["clean"]) and all(b >= a for a, b in zip(worst, worst[1:]))
    assert worst[-1] > m["clean"] * 1.2  # 1 std on every column moves predictions
    assert result.headline.startswith("RMSE x") and "raises RMSE" in result.summary


def test_char_edits_are_seeded_and_scale_with_the_rate():
    text = "the quick brown fox jumps over the lazy dog " * 5
    g = lambda: np.random.default_rng(3)  # noqa: E731
    assert char_edits(text, 0.0, g()) == text
    assert char_edits(text, 0.1, g()) == char_edits(text, 0.1, g())
    few, many = char_edits(text, 0.02, g()), char_edits(text, 0.3, g())
    changed = lambda t: sum(a != b for a, b in zip(t, text)) + abs(len(t) - len(text))  # noqa: E731
    assert 0 < changed(few) < changed(many)


def test_blur_keeps_a_flat_image_flat_and_smooths_an_edge():
    flat = torch.full((1, 1, 8, 8), 5.0)
    assert torch.allclose(_blur(flat, 1.0), flat)
    edge = torch.zeros(1, 1, 8, 8)
    edge[..., 4:] = 16.0
    row = _blur(edge, 1.0)[0, 0, 0].tolist()
    assert 0 < row[3] < row[4] < 16 and sum(row) == pytest.approx(
        float(edge[0, 0, 0].sum()), rel=1e-5
    )


def test_text_classifier_gets_character_edits_and_a_verdict(tmp_path: Path):
    rng = np.random.default_rng(0)
    words = {"good": ["great fun", "lovely day", "nice work"], "bad": ["awful mess", "sad news"]}
    rows = [(" ".join(rng.choice(words[k], 2)), k) for k in rng.choice(["good", "bad"], 160)]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(tmp_path / "t.csv", index=False)
    cfg = tiny_config(
        data={
            "source": f"csv:{tmp_path / 't.csv'}",
            "target": "label",
            "text_column": "text",
            "block_size": 24,
        },
        model={"arch": "gru", "hidden": 16, "embed_dim": 8},
        train={"epochs": 3, "optimizer": {"lr": 1e-2}},
    )
    run = gradwise.train(cfg, out=tmp_path / "r")
    result = _check(run)
    assert "curves" not in result.metrics  # token ids: no gradient attack
    assert [c["severity"] for c in result.metrics["corruptions"]] == [0.02, 0.05, 0.1]
    assert "5% character edits" in result.summary and result.verdict in ("pass", "warn", "fail")


def test_a_language_model_is_not_applicable_and_says_why(tmp_path: Path):
    (tmp_path / "c.txt").write_text("to be or not to be, that is the question. " * 40)
    cfg = tiny_config(
        data={"source": f"text:{tmp_path / 'c.txt'}", "block_size": 16},
        model={"arch": "gpt", "n_layer": 1, "n_head": 2, "d_model": 16},
        train={"epochs": 1},
    )
    report = gradwise.audit(gradwise.train(cfg, out=tmp_path / "r"), checks=["robustness"])
    assert report["robustness"].verdict == "n/a"
    assert "continuous inputs" in report["robustness"].summary
