"""Regenerate calib/: seeded digits from the TRAIN split as PNGs plus calib/manifest.json.

    python3 scripts/make_calib.py [--count 512] [--seed 0] [--output calib] [--force]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spartan_deploy.data.calib import (
    DEFAULT_COUNT,
    DEFAULT_SEED,
    check_calibration,
    make_digits_calibration,
)
from spartan_deploy.errors import SpartanError

# The repository's calib/ (the package's bundled calib links to it).
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "calib"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--force", action="store_true", help="replace an existing folder")
    args = parser.parse_args()
    try:
        folder = make_digits_calibration(args.output, args.count, args.seed, args.force)
        problems = check_calibration(folder)
    except SpartanError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if problems:
        print("error: " + "; ".join(problems), file=sys.stderr)
        return 1
    print(f"wrote {args.count} calibration images and manifest.json to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
