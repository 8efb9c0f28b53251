"""The datasets verb: what gradwise reads."""

from __future__ import annotations

from rich.table import Table

from gradwise.cli.console import out_console

SOURCES = [
    ("csv:PATH / parquet:PATH", "a table; data.target names the column to predict"),
    ("npz:PATH", "arrays X (N,F | N,T,F | N,C,H,W) and y"),
    ("images:DIR", "DIR/<class>/<image>.png|jpg, resized to data.image_size"),
    ("idx:PREFIX", "PREFIX-images-idx3-ubyte[.gz] + PREFIX-labels-idx1-ubyte[.gz] (MNIST)"),
    ("text:PATH", "a text corpus for a character-, byte- or BPE-level language model"),
    ("timeseries:PATH", "a CSV series; data.window past rows predict data.horizon steps"),
]


def datasets() -> None:
    """List the built-in data sets and the data sources gradwise reads."""
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
