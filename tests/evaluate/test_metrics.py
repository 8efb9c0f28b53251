import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from gradwise.evaluate.metrics import (
    average_precision,
    classification_metrics,
    language_model_metrics,
    macro_f1,
    regression_metrics,
    roc_auc,
)


@pytest.mark.parametrize("n_classes", [2, 3, 7])
def test_classification_metrics_match_scikit_learn(n_classes):
    g = torch.Generator().manual_seed(n_classes)
    logits = torch.randn(500, n_classes, generator=g) * 2
    y = torch.randint(0, n_classes, (500,), generator=g)
    ours = classification_metrics(logits, y)
    probs = logits.softmax(1).numpy()
    pred = probs.argmax(1)
    assert ours["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert ours["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert ours["log_loss"] == pytest.approx(
        skm.log_loss(y, probs, labels=range(n_classes)), rel=1e-4
    )
    if n_classes == 2:
        assert ours["roc_auc"] == pytest.approx(skm.roc_auc_score(y, probs[:, 1]))
        assert ours["average_precision"] == pytest.approx(
            skm.average_precision_score(y, probs[:, 1])
        )
    else:
        assert "roc_auc" not in ours and "average_precision" not in ours


def test_macro_f1_ignores_classes_absent_from_labels_and_predictions():
    y = torch.tensor([0, 0, 1, 1])
    pred = torch.tensor([0, 1, 1, 1])
    assert macro_f1(pred, y, n_classes=5) == pytest.approx(skm.f1_score(y, pred, average="macro"))


def test_roc_auc_handles_ties_and_single_class():
    scores = torch.tensor([0.1, 0.4, 0.4, 0.8, 0.4])
    y = torch.tensor([0, 0, 1, 1, 1])
    assert roc_auc(scores, y) == pytest.approx(skm.roc_auc_score(y, scores))
    assert roc_auc(scores, torch.ones(5, dtype=torch.long)) is None


@pytest.mark.parametrize("seed", range(5))
def test_average_precision_equals_scikit_learn_with_ties_and_rare_positives(seed):
    g = np.random.default_rng(seed)
    y = (g.random(400) < 0.03).astype(np.int64)
    y[0] = 1
    scores = np.round(g.normal(size=400) + 2 * y, 1)  # rounding makes ties
    ours = average_precision(torch.from_numpy(scores), torch.from_numpy(y))
    assert ours == pytest.approx(skm.average_precision_score(y, scores), abs=1e-12)


def test_single_binary_logit_is_read_as_the_positive_class():
    logit = torch.tensor([[2.0], [-1.0], [0.5]])
    y = torch.tensor([1, 0, 0])
    out = classification_metrics(logit, y)
    p = torch.sigmoid(logit[:, 0]).numpy()
    assert out["log_loss"] == pytest.approx(skm.log_loss(y, np.c_[1 - p, p]), rel=1e-5)
    assert out["accuracy"] == pytest.approx(2 / 3)


def test_regression_metrics_match_scikit_learn():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(300, 3, generator=g)
    pred = y + 0.3 * torch.randn(300, 3, generator=g)
    ours = regression_metrics(pred, y)
    assert ours["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, pred)))
    assert ours["mae"] == pytest.approx(skm.mean_absolute_error(y, pred))
    assert ours["r2"] == pytest.approx(skm.r2_score(y, pred))


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    logits = torch.zeros(4, 10, 65)
    y = torch.randint(0, 65, (4, 10))
    out = language_model_metrics(logits, y)
    assert out["perplexity"] == pytest.approx(65, rel=1e-5)
    assert out["bits_per_token"] == pytest.approx(np.log2(65), rel=1e-5)
