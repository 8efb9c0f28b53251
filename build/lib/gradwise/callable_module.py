"""Packages that are also the API function of the same name.

The Python contract spells `gradwise.audit(run, ...)`, `gradwise.explain(run, ...)` and
`gradwise.tune(config, ...)`, while `gradwise/audit/`, `gradwise/explain/` and
`gradwise/tune/` are packages. Importing a subpackage binds its module to the parent's
attribute, so a plain function of that name would be replaced by the module on first use.
Instead each such package's module is made callable: calling it calls the API function, and
`import gradwise.audit.calibration` keeps working.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


def make_callable(module_name: str, function: str) -> None:
    """Make the module `module_name` callable as `gradwise.api.<function>`."""

    class _CallableModule(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return getattr(importlib.import_module("gradwise.api"), function)(*args, **kwargs)

    _CallableModule.__doc__ = f"{module_name}, callable as gradwise.api.{function}."
    sys.modules[module_name].__class__ = _CallableModule
