"""The datasets verbs: what gradwise reads, what each example needs, and fetching it.

gradwise datasets [--examples DIR] [--json]     list
gradwise datasets get NAME... [--to DIR]        fetch, verifying every sha256
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from gradwise.cli.console import (
    Command,
    Group,
    JsonOpt,
    QuietOpt,
    flag,
    handles_errors,
    out_console,
)

SOURCES = [
    ("csv:PATH / parquet:PATH", "a table; data.target names the column to predict"),
    ("npz:PATH", "arrays X (N,F | N,T,F | N,C,H,W) and y"),
    ("images:DIR", "DIR/<class>/<image>.png|jpg, resized to data.image_size"),
    ("idx:PREFIX", "PREFIX-images-idx3-ubyte[.gz] + PREFIX-labels-idx1-ubyte[.gz] (MNIST)"),
    ("text:PATH", "a text corpus for a character-, byte- or BPE-level language model"),
    ("timeseries:PATH", "a CSV series; data.window past rows predict data.horizon steps"),
]


def _paragraphs(text: str) -> str:
    """Help text as paragraphs: the line breaks of the source are not the terminal's."""
    return "\n\n".join(" ".join(p.split()) for p in text.strip().split("\n\n"))


HELP = _paragraphs("""
List the built-in data sets, the data sources gradwise reads, the example data sets, and
what each example in --examples reads and whether it is here.

The example configs name their data through the data home, e.g. data.source:
csv:${GRADWISE_DATA:-../../shared/data}/german_credit/german.csv, where the prefix stands
for $GRADWISE_DATA when it is set; else ../../shared/data beside the config, when that
folder exists (a checkout with the shared data beside it); else ~/gradwise_data.

`gradwise datasets get NAME` fetches a set into the data home from its public source and
checks every file's sha256 (GRADWISE_DATA_MIRROR: read a folder or URL holding NAME/FILE
copies instead). Nothing else downloads: training reads local files only.
""")
GET_HELP = _paragraphs("""
Fetch example data sets into the data home, checking every file's sha256.

From each set's public source (or GRADWISE_DATA_MIRROR) into DIR/NAME/ (default: the data
home, where the example configs look). A file already there with the right sha256 is kept.
""")

app = typer.Typer(
    name="datasets",
    cls=Group,
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ExamplesOpt = Annotated[
    Path,
    typer.Option(
        "--examples",
        metavar="DIR",
        help="the folder of example configs to check (skipped when it does not exist)",
    ),
]


@app.callback(invoke_without_command=True, help=HELP)
@handles_errors
def datasets(
    ctx: typer.Context,
    examples: ExamplesOpt = Path("examples"),
    as_json: JsonOpt = False,
) -> None:
    if ctx.invoked_subcommand is not None:
        return
    from gradwise.data.registry import DATASETS
    from gradwise.settings import data_home

    home = data_home()
    needs = _examples(examples) if examples.is_dir() else []
    if as_json:
        sets = [
            {
                "name": d.name,
                "title": d.title,
                "bytes": d.n_bytes,
                "licence": d.licence,
                "origin": d.origin,
                "present": not d.missing(home),
                "files": [{"name": f.name, "url": f.url, "sha256": f.sha256} for f in d.files],
            }
            for d in DATASETS.values()
        ]
        out = {"data_home": str(home), "datasets": sets, "examples": needs}
        typer.echo(json.dumps(out, indent=2))
        return
    _print_builtins()
    _print_example_sets(home)
    if needs:
        _print_examples(needs, examples)


def _print_builtins() -> None:
    from gradwise.data.builtin import BUILTINS

    table = Table(title="built-in data sets (data.source: builtin:NAME)", title_justify="left")
    for col in ("name", "task", "shape", "description"):
        table.add_column(col)
    for b in BUILTINS.values():
        table.add_row(b.name, b.task, b.shape, b.description)
    out_console.print(table)
    sources = Table(title="your own data (data.source)", title_justify="left")
    sources.add_column("source")
    sources.add_column("reads")
    for src, what in SOURCES:
        sources.add_row(src, what)
    out_console.print(sources)


def _print_example_sets(home: Path) -> None:
    from gradwise.data.registry import DATASETS

    table = Table(
        title=f"example data sets (gradwise datasets get NAME; data home {home})",
        title_justify="left",
    )
    for col in ("name", "what", "MB", "licence", "in the data home"):
        table.add_column(col, justify="right" if col == "MB" else "left")
    for d in DATASETS.values():
        present = "yes" if not d.missing(home) else "no"
        table.add_row(d.name, d.title, f"{d.n_bytes / 1e6:.2f}", d.licence, present)
    out_console.print(table)


def _print_examples(needs: list[dict[str, Any]], folder: Path) -> None:
    table = Table(title=f"what the examples in {folder} read", title_justify="left")
    for col in ("example", "data", "here", "to get it"):
        table.add_column(col)
    for e in needs:
        table.add_row(e["example"], e["data"], "yes" if e["present"] else "no", e["get"] or "")
    out_console.print(table)


def _examples(folder: Path) -> list[dict[str, Any]]:
    """Each config in `folder`: the data it reads, resolved as training would, and whether
    it is there (with the command that gets it when not)."""
    import yaml

    from gradwise.data.registry import get_command, identify, is_there
    from gradwise.settings import expand_data_home

    found = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            continue
        source = raw.get("data", {}).get("source") if isinstance(raw, dict) else None
        if not isinstance(source, str):
            continue
        kind, _, location = source.partition(":")
        entry = {"example": path.stem, "source": source, "data": source, "present": True}
        entry["get"] = None
        if kind not in ("builtin", "memory"):
            where = Path(expand_data_home(location, path.parent))
            where = where if where.is_absolute() else path.parent / where
            known = identify(where)
            entry["present"] = is_there(kind, where)
            entry["data"] = f"{known[0].name} ({known[1]})" if known else str(where)
            if not entry["present"]:
                entry["get"] = (
                    get_command(known[0].name, known[1])
                    if known
                    else "see the comment at the top of the config"
                )
        found.append(entry)
    return found


NamesArg = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="NAME", show_default=False, help="example data sets (gradwise datasets lists them)"
    ),
]
ToOpt = Annotated[
    Path | None,
    typer.Option("--to", metavar="DIR", help="where to put NAME/FILE (default: the data home)"),
]


@app.command("get", cls=Command, help=GET_HELP)
@handles_errors
def get(
    names: NamesArg = None,
    to: ToOpt = None,
    every: Annotated[bool, flag("--all", "every example data set (about 16 MB)")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Fetch example data sets, checking every file's sha256 (its help is GET_HELP)."""
    from gradwise.data.registry import DATASETS, fetch, find
    from gradwise.errors import ConfigError
    from gradwise.settings import DATA_ENV, data_home

    if every:
        chosen = list(DATASETS.values())
    elif names:
        chosen = [find(n) for n in names]
    else:
        raise ConfigError("name the data sets to get (gradwise datasets lists them), or --all.")
    folder = to if to is not None else data_home()

    def said(f: Any, what: str) -> None:
        if not quiet:
            out_console.print(f"  {what} {f.name} ({f.n_bytes:,} bytes, sha256 checked)")

    for d in chosen:
        if not quiet:
            out_console.print(f"{d.name}: {d.title} ({d.licence})", highlight=False)
        here = fetch(d, folder, on_file=said)
        if not quiet:
            out_console.print(f"  in {here}", highlight=False)
    if to is not None and not quiet and to.expanduser().absolute() != data_home().absolute():
        out_console.print(
            f"the example configs read ${DATA_ENV}; to have them read this folder: "
            f"export {DATA_ENV}={to.expanduser().absolute()}",
            highlight=False,
        )
