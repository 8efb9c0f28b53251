"""Verbs of generative runs: generate (language models), sample (diffusion)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from gradwise.cli.console import (
    RunArg,
    err_console,
    flag,
    handles_errors,
    out_console,
)


@handles_errors
def generate(
    run_dir: RunArg,
    prompt: Annotated[str, typer.Option(metavar="TEXT", help="text to continue")] = "\n",
    tokens: Annotated[int, typer.Option(min=1, metavar="N", help="tokens to generate")] = 200,
    temperature: Annotated[float, typer.Option(min=0.0, metavar="T", help="0 = greedy")] = 0.8,
    top_k: Annotated[
        int | None, typer.Option(min=1, metavar="K", help="sample from the k likeliest")
    ] = None,
    top_p: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, metavar="P", help="nucleus sampling")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(metavar="N", help="seed for reproducible samples")
    ] = None,
    scores: Annotated[
        bool, flag("--scores", "mark low-confidence spans [[...]]; report perplexity")
    ] = False,
    threshold: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            metavar="P",
            help="with --scores: a token below this probability is unsure",
        ),
    ] = 0.1,
    as_json: Annotated[bool, flag("--json", "print tokens and probabilities")] = False,
) -> None:
    """Sample text from a language model run."""
    import gradwise

    run = gradwise.load(run_dir)
    result = run.generate_scored(prompt, tokens, temperature, top_k, top_p, seed, threshold)
    if as_json:
        out_console.print_json(
            json.dumps(
                {
                    "prompt": prompt,
                    "text": result.text,
                    "perplexity": result.perplexity,
                    "threshold": threshold,
                    "low_confidence": result.low_confidence,
                    "tokens": [
                        {"token": t, "p": round(p, 6)} for t, p in zip(result.tokens, result.probs)
                    ],
                }
            )
        )
    elif scores:
        sys.stdout.write(prompt + result.marked() + "\n")
        n_unsure = sum(b - a for a, b in result.low_confidence)
        err_console.print(
            f"perplexity {result.perplexity:.2f} over {len(result.tokens)} tokens; "
            f"{len(result.low_confidence)} low-confidence spans [[...]] hold {n_unsure} tokens "
            f"below p={threshold:g}",
            highlight=False,
        )
    else:
        sys.stdout.write(prompt + result.text + "\n")


@handles_errors
def sample(
    run_dir: RunArg,
    n: Annotated[
        int, typer.Option("--n", min=1, max=1024, metavar="N", help="images to generate")
    ] = 16,
    label: Annotated[
        str | None, typer.Option(metavar="LABEL", help="class to generate (conditional runs)")
    ] = None,
    steps: Annotated[int | None, typer.Option(min=1, metavar="N", help="DDIM steps")] = None,
    guidance: Annotated[
        float | None, typer.Option(min=0.0, metavar="W", help="guidance scale")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(metavar="N", help="seed for reproducible samples")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="PNG grid to write (default: RUN/samples.png)"),
    ] = None,
) -> None:
    """Generate images with a diffusion run and write them as a PNG grid."""
    import gradwise
    from gradwise.reporting.images import save_grid

    run = gradwise.load(run_dir)
    images = run.sample(n, label, steps, guidance, seed)
    path = out or run.path / "samples.png"
    norm = run.schema.array
    assert norm is not None
    save_grid(images, path, low=norm.pixel_low, high=norm.pixel_high)
    what = f"class {label}" if label is not None else "unconditional"
    out_console.print(f"{n} samples ({what}) written to {path}")
