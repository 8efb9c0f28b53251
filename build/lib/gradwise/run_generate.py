"""What generative runs make: text from a language model, translations from a seq2seq model,
images from a diffusion model. `Run.generate_scored`, `Run.predict` (seq2seq) and
`Run.sample` call these."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from gradwise.config import DiffusionConfig, Seq2SeqConfig
from gradwise.errors import ConfigError, GradwiseError
from gradwise.models.diffusion import Diffusion, sample_images
from gradwise.models.sampling import Generation, generate
from gradwise.models.seq2seq import translate as decode

if TYPE_CHECKING:
    from gradwise.run import Run


def generate_scored(
    run: Run,
    prompt: str,
    n_tokens: int = 200,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    threshold: float = 0.1,
) -> Generation:
    """Like `generate`, with each token's probability, the perplexity and the spans the
    model was unsure of (probability below `threshold`)."""
    tok = run.schema.tokenizer
    if run.schema.task != "lm" or tok is None:
        raise GradwiseError(f"generate needs a language model; this run is {run.schema.task}.")
    ids = torch.from_numpy(tok.encode(prompt or "\n"))
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    out, probs = generate(
        run.model,  # type: ignore[arg-type]
        ids,
        n_tokens,
        temperature,
        top_k,
        top_p,
        gen,
        banned=tok.specials.all(),
    )
    tokens = [tok.token_text(int(i)) for i in out]
    return Generation.of(tokens, probs.tolist(), threshold)


def translate(run: Run, x: Any) -> np.ndarray:
    """Decode target texts for source texts (seq2seq runs)."""
    tok = run.schema.tokenizer
    assert tok is not None and isinstance(run.config.model, Seq2SeqConfig)
    source = run.transform(x)
    max_len = run.schema.input_shape[0] - (run.schema.source_len or 0)
    ids = decode(run.model, source, max_len, run.config.model.beam_size)  # type: ignore[arg-type]
    return np.array([tok.decode(seq) for seq in ids], dtype=object)


def sample(
    run: Run,
    n: int = 16,
    label: Any = None,
    steps: int | None = None,
    guidance: float | None = None,
    seed: int | None = None,
) -> np.ndarray:
    """Generate `n` images with a diffusion run, in the training data's pixel scale.

    Args:
        label: a class (as in the data) to generate; None draws unconditionally.
        steps: DDIM steps (default: model.sample_steps); guidance: classifier-free scale.

    Returns:
        (n, C, H, W) float images.
    """
    cfg = run.config.model
    if not isinstance(cfg, DiffusionConfig):
        raise GradwiseError(f"sample needs a diffusion run; this run is {cfg.arch}.")
    assert isinstance(run.model, Diffusion)  # built from cfg
    labels: Tensor | None = None
    if label is not None:
        classes = run.schema.classes or []
        matches = [i for i, c in enumerate(classes) if str(c) == str(label)]
        if not matches:
            raise ConfigError(
                f"--label {label!r} is not a class of this run; classes: "
                f"{', '.join(map(str, classes))}."
            )
        labels = torch.full((n,), matches[0], dtype=torch.long)
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    with torch.no_grad():
        images = sample_images(
            run.model,
            n,
            labels,
            steps or cfg.sample_steps,
            cfg.guidance if guidance is None else guidance,
            gen,
        )
    norm = run.schema.array
    assert norm is not None
    mean = np.array(norm.mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.array(norm.std, dtype=np.float32).reshape(1, -1, 1, 1)
    return images.float().numpy() * std + mean
