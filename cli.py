"""Thin shim: ``python cli.py ...`` is the same as the ``spartan`` console script."""

from spartan_deploy.cli import run

if __name__ == "__main__":
    run()
