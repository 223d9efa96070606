"""``python -m spartan_deploy`` is the ``spartan`` command."""

import sys

from spartan_deploy.cli import run

sys.exit(run())
