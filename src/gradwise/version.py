"""gradwise's version: a leaf, so that any layer can state it (metrics.json, the report)."""

__version__ = "0.1.0"
