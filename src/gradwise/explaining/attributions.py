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
    from captum.attr import GradientShap, IntegratedGradients, KernelShap, Saliency

    model = run.model
    x = x.to(run.device).clone().requires_grad_(True)  # captum warns when it has to set this
    with eval_mode(model), torch.no_grad():
        targets = explained_targets(run, model(x).float().cpu())
    t = targets.to(run.device)
    base = baseline(run, x_train).to(run.device)
    gaps = None
    with eval_mode(model), torch.enable_grad():
        match method:
            case "ig":
                ig, start = IntegratedGradients(model), _path_start(run, base, x)
                values, gaps, steps = _integrate(
                    lambda n: ig.attribute(
                        x, baselines=start, target=t, n_steps=n, return_convergence_delta=True
                    )
                )
                return Attributions(values, gaps, targets, steps)
            case "gradshap":
                g = torch.Generator().manual_seed(seed)
                pick = torch.randperm(len(x_train), generator=g)[:GRADSHAP_BACKGROUND]
                with _seeded(seed):  # captum draws from the global generator
                    values = GradientShap(model).attribute(
                        x,
                        baselines=x_train[pick].to(run.device),
                        target=t,
                        n_samples=GRADSHAP_SAMPLES,
                    )
            case "saliency":
                values = Saliency(model).attribute(x, target=t, abs=True)
            case "kernelshap":
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
    return Attributions(values.detach().float().cpu(), gaps, targets)


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
            lambda n: lig.attribute(
                ids, baselines=base, target=t, n_steps=n, return_convergence_delta=True
            )
        )
    return Attributions(values.sum(dim=-1), gaps, targets, steps)


def _integrate(
    attribute: Callable[[int], tuple[Tensor, Tensor]],
) -> tuple[Tensor, Tensor, int]:
    """Integrated gradients with N_STEPS points, doubled while a row's completeness gap is
    above GAP_TOLERANCE (absolute, or relative to its f(x) - f(baseline)), up to MAX_STEPS.

    Returns:
        Attributions (float, CPU), each row's |gap| and the number of steps used.
    """
    steps = N_STEPS
    while True:
        values, delta = attribute(steps)
        values, gaps = values.detach().float().cpu(), delta.detach().abs().float().cpu()
        change = (values.flatten(1).sum(dim=1) - delta.detach().float().cpu()).abs()
        if steps >= MAX_STEPS or bool((gaps <= GAP_TOLERANCE * change.clamp(min=1.0)).all()):
            return values, gaps, steps
        steps *= 2


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
