"""The monitor watching a certified abstention guarantee on served streams written through the
prediction store (as `serve --abstain` writes them: each output with its decision): labels
that turn wrong halfway, dimmer inputs that make the model abstain, and a server that ran
without abstention."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import gradwise
from gradwise.config import MonitorSettings
from gradwise.monitoring import Monitor, MonitorReport
from gradwise.run import Run
from gradwise.serving.store import FeedbackRecord, PredictionRecord, PredictionStore
from tests.conftest import tiny_config

WINDOW = 150
PER_REQUEST = 10
FLIPPED = 0.3  # the share of labels turned wrong after the drop
CAUGHT_WITHIN = 100  # labelled answers after the drop (the benchmark's 90th percentile: ~55)


@pytest.fixture(scope="module")
def certified(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A digits MLP whose abstention threshold is certified at alpha 0.05 (about 57% of the
    validation rows answered, about 2% of the test rows' answers wrong)."""
    out = tmp_path_factory.mktemp("certified") / "digits"
    run = gradwise.train(tiny_config(train={"epochs": 10}), out=out)
    gradwise.audit(run, checks=["calibration", "selective"], selective={"alpha": 0.05})
    assert run.calibration.selective and run.calibration.selective["threshold"] is not None
    return run


def write_stream(
    run: Run, store: Path, x: np.ndarray, labels: np.ndarray | None, t0: float = 1.7e9
) -> None:
    """Store `x` as served with abstention, ten instances per request (and each request's
    labels right after it, when given): the records `serve --abstain` writes."""
    chosen = run.predict_selective(x)
    writer = PredictionStore(f"sqlite:///{store}", "replica-a", flush_interval_s=0.05)
    writer.start()
    for a in range(0, len(x), PER_REQUEST):
        rows = range(a, min(a + PER_REQUEST, len(x)))
        request_id = f"r{a:06d}"
        outputs = [
            {
                "prediction": chosen.prediction[i].item(),
                "confidence": float(chosen.probabilities[i].max()),
                "decision": chosen.decision[i],
                "abstain_score": float(chosen.score[i]),
            }
            for i in rows
        ]
        body = {"instances": [{"pixels": x[i].tolist()} for i in rows]}
        t = t0 + a
        writer.put(
            PredictionRecord(
                request_id, t, "v1", len(rows), json.dumps(body), json.dumps(outputs), None
            )
        )
        if labels is not None:
            for j, i in enumerate(rows):
                writer.put(FeedbackRecord(request_id, j, t + 0.5, labels[i].item()))
    writer.close()


def replayed(run: Run, times: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The test images (never trained on) `times` over, each time in a new order."""
    test = run.split("test")
    x, y = np.asarray(test.raw), run.schema.target.decode(test.y.numpy())
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(len(x)) for _ in range(times)])
    return x[order], y[order]


@pytest.fixture(scope="module")
def dropped(certified: Run, tmp_path_factory: pytest.TempPathFactory):
    """Test images four times over (1436 instances); from instance 720 on, 30% of the labels
    fed back are another class: the model's accuracy among answered drops from about 98% to
    about 68%. Returns (report, change, labels fed back, decisions)."""
    x, y = replayed(certified, 4, seed=0)
    change = 720
    rng = np.random.default_rng(1)
    fed = y.copy()
    flip = (np.arange(len(y)) >= change) & (rng.random(len(y)) < FLIPPED)
    fed[flip] = (fed[flip] + 1 + rng.integers(0, 9, flip.sum())) % 10
    store = tmp_path_factory.mktemp("dropped") / "p.sqlite"
    write_stream(certified, store, x, fed)
    report = gradwise.monitor(certified, store=str(store), window=WINDOW)
    return report, change, fed, certified.predict_selective(x)


def test_the_guarantee_alert_fires_soon_after_the_answers_turn_wrong_and_never_before(dropped):
    report, change, fed, chosen = dropped
    g = report.guarantee
    assert g is not None and g.state == "watched" and g.broken is not None
    answered = chosen.answer
    before = int(answered[:change].sum())  # labelled answers before the drop
    assert g.labelled == int(answered.sum())  # every answered instance got its label
    delay = g.broken["labelled"] - before
    assert 0 < delay <= CAUGHT_WITHIN
    wrong = chosen.prediction[answered] != fed[answered]
    assert g.broken["errors"] == int(wrong[: g.broken["labelled"]].sum())
    (alert,) = [a for a in report.alerts if a.kind == "guarantee_broken"]
    crossed_at = np.flatnonzero(answered)[g.broken["labelled"] - 1]  # labels came in order
    assert alert.window == crossed_at // WINDOW >= change // WINDOW
    assert alert.value is not None and alert.value >= alert.threshold == 0.05
    for said in (f"after {g.broken['labelled']} labelled answered", "valid at every look"):
        assert said in alert.message
    assert f"{g.broken['errors']} wrong" in alert.message and "0.05" in alert.message


def test_windows_before_the_drop_are_consistent_and_the_ones_after_the_crossing_broken(dropped):
    report, change, _, _ = dropped
    clean = [w for w in report.windows if w.end <= change]
    assert len(clean) == change // WINDOW >= 4
    assert all(not w.alerts for w in clean)  # no alert of any kind before the drop
    assert all(w.guarantee["status"] == "consistent" for w in clean)
    assert all(w.guarantee["look"]["lower_bound"] < 0.05 for w in clean)
    crossed = report.guarantee.broken["window"]
    after = [w for w in report.windows if w.index >= crossed]
    assert all(w.guarantee["status"] == "broken" for w in after)
    assert "guarantee likely broken" in after[0].guarantee["why"]
    expected = 1 - report.guarantee.promise.coverage
    assert all(w.guarantee["expected_abstention_rate"] == expected for w in report.windows)
    assert not any(w.guarantee["abstention_rise"] for w in report.windows)  # inputs unchanged


def test_the_guarantee_is_written_to_the_report_and_drawn_on_the_timeline(dropped, certified: Run):
    report, *_ = dropped
    folder = Path(certified.path) / "monitor"
    saved = json.loads((folder / "report.json").read_text())["guarantee"]
    assert saved["state"] == "watched" and saved["broken"] == report.guarantee.broken
    assert saved["alpha"] == 0.05 and saved["delta"] == 0.1  # the certified delta, by default
    assert saved["lower_bound"] > 0.05 and "guarantee likely broken" in saved["sentence"]
    assert "every look" in saved["validity"] and "Waudby-Smith" in saved["method"]
    windows = json.loads((folder / "windows.json").read_text())
    assert [w["guarantee"]["status"] for w in windows] == [
        w.guarantee["status"] for w in report.windows
    ]
    assert (folder / "timeline.png").read_bytes()[:4] == b"\x89PNG"


def test_labels_that_arrive_after_their_window_was_judged_still_raise_the_alert(
    certified: Run, tmp_path: Path
):
    x, y = replayed(certified, 2, seed=2)
    wrong = (y + 1) % 10  # every answer wrong: the guarantee is broken from the start
    store = tmp_path / "p.sqlite"
    write_stream(certified, store, x, None)
    monitor = Monitor(certified, f"sqlite:///{store}", MonitorSettings(window="200"))
    judged = monitor.update()
    assert judged and not monitor.late_alerts()  # no labels yet: nothing to judge
    writer = PredictionStore(f"sqlite:///{store}", "replica-a", flush_interval_s=0.05)
    writer.start()
    for i in range(len(x)):
        request_id, row = f"r{i - i % PER_REQUEST:06d}", i % PER_REQUEST
        writer.put(FeedbackRecord(request_id, row, 2e9, int(wrong[i])))
    writer.close()
    assert monitor.update() == []  # no new window, but the labels broke the guarantee
    (alert,) = monitor.late_alerts()
    assert alert.kind == "guarantee_broken" and alert.window == 0
    assert monitor.late_alerts() == []  # raised once


def test_a_smaller_delta_than_certified_needs_more_evidence(
    certified: Run, dropped, tmp_path: Path
):
    report, *_ = dropped
    run = gradwise.load(shutil.copytree(certified.path, tmp_path / "run"))
    store = report.store.removeprefix("sqlite:///")
    strict = gradwise.monitor(run, store=store, window=WINDOW, guarantee_delta=0.001).guarantee
    assert strict.promise.delta == 0.001 and strict.promise.certified_delta == 0.1
    assert strict.broken is not None
    assert strict.broken["labelled"] > report.guarantee.broken["labelled"]


@pytest.fixture(scope="module")
def dimmed(certified: Run, tmp_path_factory: pytest.TempPathFactory) -> tuple[MonitorReport, int]:
    """Test images four times over (1436 instances), from instance 720 on at 60% contrast (a
    dimmer camera): the model abstains on about 70% of those instead of about 42%. No label
    is fed back."""
    x, _ = replayed(certified, 4, seed=3)
    change = 720
    x[change:] = x[change:] * 0.6
    store = tmp_path_factory.mktemp("dimmed") / "p.sqlite"
    write_stream(certified, store, x, None)
    return gradwise.monitor(certified, store=str(store), window=WINDOW), change


def test_more_abstentions_than_on_validation_are_reported_as_an_early_shift_signal(dimmed):
    report, change = dimmed
    before = [w for w in report.windows if w.end <= change]
    after = [w for w in report.windows if w.start >= change]
    assert not any(a.kind == "abstention_rise" for w in before for a in w.alerts)
    assert all(w.guarantee["abstention_p_value"] >= 0.01 for w in before)
    for w in after:
        rise = [a for a in w.alerts if a.kind == "abstention_rise"]
        assert len(rise) == 1 and w.guarantee["abstention_rise"]
        assert w.guarantee["abstention_rate"] > w.guarantee["expected_abstention_rate"] + 0.15
        assert "early sign" in rise[0].message and "Fisher's exact test" in rise[0].message
    assert report.guarantee.abstention_rise_windows == tuple(w.index for w in after)
    assert report.guarantee.labelled == 0 and report.guarantee.broken is None


def test_where_inputs_drifted_the_guarantee_is_void_and_the_report_says_why(dimmed):
    report, change = dimmed
    after = [w for w in report.windows if w.start >= change]
    assert after and all(w.drifted for w in after)
    for w in after:
        assert w.guarantee["status"] == "void"
        why = w.guarantee["why"]
        assert "does not hold here" in why and "validation rows" in why
        assert "drifted from the training data in" in why
        assert all(name in why for name in w.most_drifted)
        (drift,) = [a for a in w.alerts if a.kind == "drift"]
        assert "does not hold on them" in drift.message
    assert set(report.guarantee.void_windows) >= {w.index for w in after}
    assert "does not hold in the drifted window(s)" in report.guarantee.sentence


def test_without_decisions_the_guarantee_section_says_abstention_was_off(
    certified: Run, tmp_path: Path
):
    from tests.monitoring.conftest import serve_stream

    run = gradwise.load(shutil.copytree(certified.path, tmp_path / "run"))
    test = run.split("test")
    store = tmp_path / "plain.sqlite"
    serve_stream(run, store, np.asarray(test.raw)[:200], test.y.numpy()[:200])
    report = gradwise.monitor(run, store=str(store), window=100)
    g = report.guarantee
    assert g is not None and g.state == "off" and g.broken is None
    assert "abstention was off" in g.sentence and "200 served instances" in g.sentence
    assert all(w.guarantee is None for w in report.windows)
    saved = json.loads((Path(run.path) / "monitor" / "report.json").read_text())["guarantee"]
    assert saved["state"] == "off" and saved["lower_bound"] is None
    assert not report.alerts
