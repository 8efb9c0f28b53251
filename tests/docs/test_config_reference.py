"""The configuration reference lists every key of every settings model, from the models alone."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from pydantic import BaseModel, ConfigDict, Field

from gradwise import config

HOOKS = Path(__file__).resolve().parents[2] / "docs" / "hooks"


def _reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location("config_reference", HOOKS / "config_reference.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("config_reference", module)
    spec.loader.exec_module(module)
    return module


reference = _reference()


def test_every_field_of_every_nested_model_has_a_row() -> None:
    sections = reference.all_sections()
    for section in sections:
        keys = {row.key.rsplit(".", 1)[-1] for row in section.rows}
        assert keys == set(section.model.model_fields), section.key
    covered = {s.model for s in sections}
    exported = {
        getattr(config, name)
        for name in config.__all__
        if isinstance(getattr(config, name), type) and issubclass(getattr(config, name), BaseModel)
    }
    assert exported <= covered, exported - covered
    assert {s.key for s in sections} >= {"", "data", "data.split", "train.optimizer", "audit"}


def test_a_row_shows_type_default_bounds_and_description() -> None:
    rows = {row.key: row for s in reference.all_sections() for row in s.rows}
    lr = rows["train.optimizer.lr"]
    assert (lr.type, lr.default, lr.bounds, lr.description) == (
        "float",
        "0.001",
        "> 0",
        "peak learning rate",
    )
    hidden = [s for s in reference.all_sections() if s.tag == "arch: mlp"][0]
    widths = {row.key: row for row in hidden.rows}["model.hidden"]
    assert (widths.type, widths.default, widths.bounds) == ("list[int]", "[256, 256]", "each ≥ 1")
    assert '"relu" | "gelu"' in {row.key: row for row in hidden.rows}["model.activation"].type


def test_each_member_of_a_tagged_union_gets_its_own_table() -> None:
    tags = {s.tag for s in reference.all_sections() if s.key == "model"}
    assert {"arch: mlp", "arch: cnn", "arch: gpt", "arch: rnn | lstm | gru"} <= tags
    augment = {s.tag for s in reference.all_sections() if s.key == "data.augment[]"}
    assert {"name: shift", "name: noise"} <= augment


def test_a_new_settings_model_in_all_appears_without_an_edit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class PlanetSettings(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        orbit_days: float = Field(365.25, gt=0, description="one year, in days")

    monkeypatch.setattr(config, "PlanetSettings", PlanetSettings, raising=False)
    monkeypatch.setattr(config, "__all__", [*config.__all__, "PlanetSettings"])
    page = reference.render()
    assert "## `PlanetSettings`" in page
    row = "| <code>orbit_days</code> | <code>float</code> | <code>365.25</code> | &gt; 0 | one"
    assert row in page
