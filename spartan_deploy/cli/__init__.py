"""The ``spartan`` command line: a thin layer, one module per command, over the library."""

from __future__ import annotations

import importlib

from spartan_deploy.cli.app import app, run

# Each module registers its commands on ``app`` when imported, in pipeline order (the
# order ``spartan --help`` lists them).
_COMMAND_MODULES = ("info", "train", "export", "prune", "quantize", "engine", "bench",
                    "debug", "pipeline", "triton", "serve", "loadtest")

for _name in _COMMAND_MODULES:
    importlib.import_module(f"spartan_deploy.cli.{_name}")

__all__ = ["app", "run"]
