"""Lazy package namespaces: ``from spartan_deploy.model import load_model`` imports the
module that defines it on first use, not at package import.

Importing a light submodule (an options module, an enum) must not drag in torch, onnx or
onnxruntime through its package's ``__init__``: that is what keeps ``spartan --help`` quick.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def attach(package: str, exports: Mapping[str, str]
           ) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``__getattr__``, ``__dir__`` and ``__all__`` for ``package``.

    ``exports`` maps each public name to the submodule (relative to ``package``) that
    defines it.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        globals_of(package)[name] = value  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(globals_of(package)) | set(exports))

    return __getattr__, __dir__, sorted(exports)


def globals_of(package: str) -> dict[str, Any]:
    return vars(importlib.import_module(package))
