"""Attributions through Captum: how much each input value moved the explained output.

Continuous inputs (tables, images, sequences) are attributed in the model's units:
integrated gradients and GradientSHAP for every differentiable model, saliency (|gradient|),
and KernelSHAP for tables on raw columns (a categorical feature's one-hot columns form one
feature). Text is attributed per token through its embedding layer (layer integrated
gradients, layer GradientSHAP), since token ids themselves have no gradient.

The baseline ("the input with nothing in it") is the training mean in model units: the
standardised zero for numeric values, the category frequencies for one-hot columns, the most
frequent code for embedded categories. GradientSHAP draws its baselines from the training
inputs instead. Text's baseline replaces every non-special token by <unk>: the same text
length and padding (so the same attention mask and pooled position), with no word in it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from gradwise.errors import ConfigError, GradwiseError
from gradwise.explaining.base import Method
from gradwise.models.blocks import eval_mode
from gradwise.run import Run

N_STEPS = 64  # integrated gradients: Gauss-Legendre points on the path, doubled while
MAX_STEPS = 512  # a row's completeness gap exceeds GAP_TOLERANCE (absolute, or relative to
GAP_TOLERANCE = 0.02  # |f(x) - f(baseline)|), up to MAX_STEPS
GRADSHAP_BACKGROUND = 64  # training inputs GradientSHAP draws baselines from
GRADSHAP_SAMPLES = 32  # draws per row
KERNELSHAP_SAMPLES = 256  # coalitions per row


@dataclass(frozen=True)
class Attributions:
    """Attributions of a batch of rows.

    Attributes:
        values: (N, ...) one per model input value (continuous inputs) or (N, T) one per
            token (text).
        gaps: (N,) |sum of attributions - (f(x) - f(baseline))| (integrated gradients), or
            None.
        targets: (N,) the output index each row's attributions explain.
        steps: integration steps used (integrated gradients), or None.
    """

    values: Tensor
    gaps: Tensor | None
    targets: Tensor
    steps: int | None = None


def explained_targets(run: Run, logits: Tensor) -> Tensor:
    """The output each row is explained for: the predicted class (several logits), else the
    one output (a binary model's positive-class logit, a regression's first output)."""
    if run.schema.task == "classification" and logits.shape[1] > 1:
        return logits.argmax(dim=1)
    return torch.zeros(len(logits), dtype=torch.long)


def baseline(run: Run, x_train: Tensor) -> Tensor:
    """(1, ...) the training mean in model units; embedded category codes take their most
    frequent training value (a mean code is no category)."""
    base = x_train.float().mean(dim=0, keepdim=True)
    prep = run.schema.tabular
    if prep is not None and prep.encoding == "embed" and prep.categorical:
        n_num = len(prep.numeric)
        base[0, n_num:] = x_train[:, n_num:].float().mode(dim=0).values
    return base


def _path_start(run: Run, base: Tensor, x: Tensor) -> Tensor:
    """(N, ...) where each row's integration path starts: the baseline, except that embedded
    category codes stay at the row's own (a path through fractional codes would cut through
    the model's rounding to whole codes, and the codes have no gradient to attribute)."""
    start = base.expand_as(x).clone()
    prep = run.schema.tabular
    if prep is not None and prep.encoding == "embed" and prep.categorical:
        n_num = len(prep.numeric)
        start[:, n_num:] = x[:, n_num:].detach()
    return start


def feature_groups(run: Run) -> tuple[list[str], Tensor] | None:
    """Raw columns of a table and, per model column, the raw column it belongs to (one-hot
    columns of a categorical feature share one); None for other data."""
    prep = run.schema.tabular
    if prep is None:
        if run.schema.kind != "tabular":
            return None
        n = run.schema.input_shape[0]
        return [f"x{i}" for i in range(n)], torch.arange(n)
    groups = list(range(len(prep.numeric)))
    for j, vocab in enumerate(prep.vocab):
        width = 1 if prep.encoding == "embed" else len(vocab)
        groups += [len(prep.numeric) + j] * width
    return prep.columns, torch.tensor(groups)


def input_attributions(
    run: Run,
    x: Tensor,
    method: Method,
    x_train: Tensor,
    seed: int,
) -> Attributions:
    """Attributions of continuous inputs x (model units) for the explained outputs.

    Raises:
        ConfigError: KernelSHAP on images or sequences (no feature grouping applies).
    """
    from captum.attr import GradientShap, KernelShap

    base = baseline(run, x_train).to(run.device)
    if method in ("ig", "saliency"):
        return row_attributions(run, x, method, base)
    model = run.model
    x = x.to(run.device).clone().requires_grad_(True)  # captum warns when it has to set this
    targets = _targets(run, x)
    t = targets.to(run.device)
    with eval_mode(model), torch.enable_grad():
        if method == "gradshap":
            g = torch.Generator().manual_seed(seed)
            pick = torch.randperm(len(x_train), generator=g)[:GRADSHAP_BACKGROUND]
            with _seeded(seed):  # captum draws from the global generator
                values = GradientShap(model).attribute(
                    x,
                    baselines=x_train[pick].to(run.device),
                    target=t,
                    n_samples=GRADSHAP_SAMPLES,
                )
        else:
            grouped = feature_groups(run)
            if grouped is None:
                raise ConfigError(
                    f"KernelSHAP explains tables, whose columns are features to leave out; "
                    f"on {run.schema.kind} inputs it would need a grouping (superpixels, "
                    "windows) and thousands of model calls per row. Use --method ig or "
                    "gradshap."
                )
            mask = grouped[1].view(1, -1).to(x.device)
            explainer = KernelShap(model)
            with _seeded(seed):  # captum samples coalitions from the global generator
                # one row at a time: captum fits one surrogate per row either way
                values = torch.cat(
                    [
                        explainer.attribute(
                            x[i : i + 1],
                            baselines=base,
                            target=t[i : i + 1],
                            feature_mask=mask,
                            n_samples=KERNELSHAP_SAMPLES,
                            perturbations_per_eval=64,
                        )
                        for i in range(len(x))
                    ]
                )
    return Attributions(values.detach().float().cpu(), None, targets)


def row_attributions(
    run: Run, x: Tensor, method: Literal["ig", "saliency"], base: Tensor
) -> Attributions:
    """Integrated gradients from `base` (1, ...) or saliency: methods whose attributions of a
    row depend on that row alone (no random draws, integration steps chosen per row), so a
    table explained in batches of any size gets the values of the rows explained together.
    """
    from captum.attr import Saliency

    model = run.model
    x = x.to(run.device).clone().requires_grad_(True)  # captum warns when it has to set this
    targets = _targets(run, x)
    t = targets.to(run.device)
    with eval_mode(model), torch.enable_grad():
        if method == "saliency":
            values = Saliency(model).attribute(x, target=t, abs=True)
            return Attributions(values.detach().float().cpu(), None, targets)
        x, start = x.detach(), _path_start(run, base.to(run.device), x)
        values, gaps, steps = _integrate(
            lambda rows, n: _path_integral(model, x[rows], start[rows], t[rows], n), len(x)
        )
    return Attributions(values, gaps, targets, steps)


def _path_integral(
    model: nn.Module, x: Tensor, start: Tensor, t: Tensor, n_steps: int
) -> tuple[Tensor, Tensor]:
    """Integrated gradients of rows x along the straight paths from `start`, with `n_steps`
    Gauss-Legendre points: the sum of the path's gradients of each row's output t, weighted,
    times x - start; and the convergence delta, sum of attributions - (f(x) - f(start)).

    This is captum's IntegratedGradients (same points, weights and order of summation), but
    the gradient of all rows x steps outputs comes from one backward pass of their sum:
    captum asks autograd for one scalar output per row and step, a Python loop that costs
    four times the model's own work on a small table model. Rows do not interact (the
    model is in eval mode), so the sum's gradient is each row's own.
    """
    points, weights = np.polynomial.legendre.leggauss(n_steps)  # on [-1, 1]
    alphas, step_sizes = 0.5 * (points + 1), 0.5 * weights  # on [0, 1]
    diff = x - start
    scaled = torch.cat([start + float(a) * diff for a in alphas]).requires_grad_()  # (S*N, ...)
    picked = model(scaled).gather(1, t.repeat(n_steps).view(-1, 1))  # (S*N, 1)
    (grads,) = torch.autograd.grad(picked.sum(), scaled)
    sizes = torch.tensor(step_sizes, dtype=grads.dtype, device=grads.device)
    sizes = sizes.repeat_interleave(len(x)).view(-1, *[1] * (x.dim() - 1))
    values = (grads * sizes).reshape(n_steps, *x.shape).sum(dim=0) * diff  # (N, ...)
    with torch.no_grad():
        rows = torch.arange(len(x), device=x.device)
        change = model(x)[rows, t] - model(start)[rows, t]
    return values, values.flatten(1).sum(dim=1) - change


def _targets(run: Run, x: Tensor) -> Tensor:
    """(N,) the output each row of x (on the run's device) is explained for."""
    with eval_mode(run.model), torch.no_grad():
        return explained_targets(run, run.model(x).float().cpu())


def token_attributions(run: Run, ids: Tensor, method: Method) -> Attributions:
    """(N, T) per-token attributions of labelled text: integrated gradients through the token
    embedding (the path runs from the baseline's embeddings to the text's), summed over the
    embedding's width.

    Raises:
        ConfigError: any other method: saliency and KernelSHAP need continuous inputs or
            columns, and GradientSHAP interpolates the inputs themselves, which token ids
            cannot be.
    """
    from captum.attr import LayerIntegratedGradients

    if method != "ig":
        raise ConfigError(
            f"--method {method} does not apply to text: token ids are discrete, so text is "
            "attributed through its embedding layer with integrated gradients; use --method ig."
        )
    model = run.model
    tok = run.schema.tokenizer
    assert tok is not None
    specials = torch.tensor(tok.specials.all(), device=run.device)
    ids = ids.to(run.device)
    base = torch.where(torch.isin(ids, specials), ids, torch.full_like(ids, tok.specials.unk))
    with eval_mode(model), torch.no_grad():
        targets = explained_targets(run, model(ids).float().cpu())
    lig, t = LayerIntegratedGradients(model, token_embedding(model)), targets.to(run.device)
    with eval_mode(model), torch.enable_grad():
        values, gaps, steps = _integrate(
            lambda rows, n: lig.attribute(
                ids[rows],
                baselines=base[rows],
                target=t[rows],
                n_steps=n,
                return_convergence_delta=True,
            ),
            len(ids),
        )
    return Attributions(values.sum(dim=-1), gaps, targets, steps)


def _integrate(
    attribute: Callable[[Tensor, int], tuple[Tensor, Tensor]], n_rows: int
) -> tuple[Tensor, Tensor, int]:
    """Integrated gradients of `n_rows` rows with N_STEPS points; a row whose completeness
    gap is above GAP_TOLERANCE (absolute, or relative to its f(x) - f(baseline)) is
    integrated again with twice the points, up to MAX_STEPS. Steps are chosen per row, so a
    row's attributions do not depend on the rows explained with it.

    Args:
        attribute: (row positions, steps) -> that rows' attributions and convergence deltas.

    Returns:
        Attributions (float, CPU), each row's |gap| and the most steps any row used.
    """
    rows, steps = torch.arange(n_rows), N_STEPS
    values, gaps = _integrated(attribute, rows, steps)
    while steps < MAX_STEPS:
        change = (values.flatten(1).sum(dim=1) - gaps[1]).abs()
        rows = torch.nonzero(gaps[0] > GAP_TOLERANCE * change.clamp(min=1.0)).flatten()
        if len(rows) == 0:
            break
        steps *= 2
        again, again_gaps = _integrated(attribute, rows, steps)
        values[rows], gaps[:, rows] = again, again_gaps
    return values, gaps[0], steps


def _integrated(
    attribute: Callable[[Tensor, int], tuple[Tensor, Tensor]], rows: Tensor, steps: int
) -> tuple[Tensor, Tensor]:
    """Attributions (float, CPU) of `rows` and a (2, len(rows)) tensor: their |gap| and their
    signed convergence delta (sum of attributions - (f(x) - f(baseline)))."""
    values, delta = attribute(rows, steps)
    delta = delta.detach().float().cpu()
    return values.detach().float().cpu(), torch.stack([delta.abs(), delta])


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's global generator for a library that draws from it (captum), then give
    the caller's random state back."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def token_embedding(model: nn.Module) -> nn.Module:
    """The token embedding layer of a text model."""
    from gradwise.models.bert import BERT
    from gradwise.models.gpt import GPT
    from gradwise.models.hf_encoder import HFEncoder
    from gradwise.models.rnn import RNN

    match model:
        case BERT() | GPT():
            return model.tok_emb
        case RNN() if model.embed is not None:
            return model.embed
        case HFEncoder():
            embeddings = model.encoder.get_input_embeddings()  # type: ignore[operator]
            assert isinstance(embeddings, nn.Module)
            return embeddings
    raise GradwiseError(f"{type(model).__name__} has no token embedding to attribute through.")
