"""What the verbs share: a run from its directory, its config without loading the model,
and where a verb does its work (the backend and the cluster's address)."""

from __future__ import annotations

from pathlib import Path

from gradwise.config import Config, load_config
from gradwise.errors import GradwiseError
from gradwise.run import Run


def where(backend: str | None, address: str | None, cfg: Config) -> tuple[str, str | None]:
    """The backend and cluster address a verb uses: the arguments, else the config's
    `backend:` and `address:` keys."""
    chosen = backend if backend is not None else cfg.backend
    if chosen not in ("local", "ray"):
        raise GradwiseError(f"backend {chosen!r} is not known: use local or ray.")
    return chosen, address if address is not None else cfg.address


def as_run(run: Run | str | Path) -> Run:
    """A Run, loaded from its directory when given a path."""
    return run if isinstance(run, Run) else Run.load(run)


def config_of(run: Run | str | Path) -> Config:
    """The run's config without loading its model (the defaults where it has none yet; the
    verb then says what is missing)."""
    if isinstance(run, Run):
        return run.config
    path = Path(run) / "config.yaml"
    return load_config(path) if path.is_file() else Config()
