"""Thin shim: ``python cli.py ...`` is the same as the ``spartan`` console script."""

import sys

from spartan_deploy.cli import run

if __name__ == "__main__":
    sys.exit(run())
