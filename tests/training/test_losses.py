import pytest
import torch
import torch.nn.functional as F

from gradwise.config import LossConfig
from gradwise.errors import ConfigError
from gradwise.training.losses import make_loss, resolve_loss_name


def test_label_smoothing_and_class_weights_match_torch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 3, generator=g)
    y = torch.tensor([0] * 40 + [1] * 8 + [2] * 2)
    fn = make_loss(LossConfig(label_smoothing=0.1, class_weights="balanced"), "cross_entropy", y, 3)
    weights = torch.tensor([50 / (3 * 40), 50 / (3 * 8), 50 / (3 * 2)])
    expected = F.cross_entropy(logits, y, weight=weights, label_smoothing=0.1)
    assert fn(logits, y).item() == pytest.approx(expected.item(), rel=1e-5)


def test_explicit_class_weights_need_one_per_class():
    with pytest.raises(ConfigError, match="one per class"):
        make_loss(LossConfig(class_weights=[1.0, 2.0]), "cross_entropy", torch.tensor([0, 1, 2]), 3)


def test_bce_positive_weight_is_the_class_ratio():
    y = torch.tensor([0, 0, 0, 1])
    logits = torch.tensor([[0.3], [-0.2], [1.0], [0.5]])
    fn = make_loss(LossConfig(class_weights="balanced"), "bce", y, 2)
    expected = F.binary_cross_entropy_with_logits(
        logits[:, 0], y.float(), pos_weight=torch.tensor([3.0])
    )
    assert fn(logits, y).item() == pytest.approx(expected.item(), rel=1e-5)


def test_language_model_loss_flattens_time():
    logits = torch.randn(2, 5, 7)
    y = torch.randint(0, 7, (2, 5))
    fn = make_loss(LossConfig(), "cross_entropy", y, 7)
    assert fn(logits, y).item() == pytest.approx(
        F.cross_entropy(logits.reshape(10, 7), y.reshape(10)).item()
    )


@pytest.mark.parametrize(
    ("name", "ref"), [("mse", F.mse_loss), ("mae", F.l1_loss), ("huber", F.huber_loss)]
)
def test_regression_losses(name, ref):
    pred, y = torch.randn(10, 2), torch.randn(10, 2)
    fn = make_loss(LossConfig(name=name), name, y, 0)
    assert fn(pred, y).item() == pytest.approx(ref(pred, y).item())


def test_loss_must_suit_the_task():
    assert resolve_loss_name(LossConfig(), "regression", 0) == "mse"
    assert resolve_loss_name(LossConfig(), "lm", 65) == "cross_entropy"
    with pytest.raises(ConfigError, match="needs class labels"):
        resolve_loss_name(LossConfig(name="cross_entropy"), "regression", 0)
    with pytest.raises(ConfigError, match="is for regression"):
        resolve_loss_name(LossConfig(name="huber"), "classification", 3)
    with pytest.raises(ConfigError, match="two classes"):
        resolve_loss_name(LossConfig(name="bce"), "classification", 3)
