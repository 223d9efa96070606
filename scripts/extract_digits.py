"""Extract the UCI digits from scikit-learn into the package's small array file (run once).

scikit-learn is only needed here, never at run time. The split is drawn here, stratified
per class with a fixed seed, and stored in the file, so it never depends on a library's
random number generator again.

    python3 scripts/extract_digits.py [--force]
    python3 scripts/extract_digits.py --stats   # mean/std for DIGITS_DATA_CONFIG
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "spartan_deploy" / "data" / "digits.npz"
SPLIT_SEED = 20250710
TEST_FRACTION = 0.2


def stratified_split(labels: np.ndarray, seed: int, fraction: float) -> tuple[np.ndarray, ...]:
    """Per class, a seeded ``fraction`` of the samples goes to the test split."""
    rng = np.random.default_rng(seed)
    test = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        count = int(round(len(members) * fraction))
        test.extend(rng.choice(members, size=count, replace=False).tolist())
    test_index = np.sort(np.asarray(test, dtype=np.int16))
    train_index = np.setdiff1d(np.arange(len(labels), dtype=np.int16), test_index)
    return train_index, test_index


def print_stats() -> int:
    """Mean/std of the train split as the model sees it (32x32, before normalisation)."""
    import dataclasses

    sys.path.insert(0, str(REPO))
    from spartan_deploy.data.digits import DIGITS_DATA_CONFIG, digit_image, digits_split
    from spartan_deploy.data.preprocess import to_array

    raw = dataclasses.replace(DIGITS_DATA_CONFIG, mean=(0.0,) * 3, std=(1.0,) * 3)
    pixels = np.stack([to_array(digit_image(i), raw)[0] for i in digits_split("train")])
    print(f"mean {pixels.mean():.4f} std {pixels.std():.4f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="overwrite the existing file")
    parser.add_argument("--stats", action="store_true",
                        help="print the train split's mean/std after preprocessing, then exit")
    args = parser.parse_args()
    if args.stats:
        return print_stats()
    if OUTPUT.exists() and not args.force:
        print(f"{OUTPUT} exists; pass --force to overwrite", file=sys.stderr)
        return 1
    from sklearn.datasets import load_digits  # build-time only

    digits = load_digits()
    images = digits.images.astype(np.uint8)  # integer counts 0..16, exactly representable
    if not np.array_equal(images, digits.images):
        raise SystemExit("digits pixels are not integers 0..16; refusing to quantise them")
    labels = digits.target.astype(np.uint8)
    train_index, test_index = stratified_split(labels, SPLIT_SEED, TEST_FRACTION)
    np.savez_compressed(OUTPUT, images=images, labels=labels, train_index=train_index,
                        test_index=test_index, split_seed=np.int64(SPLIT_SEED))
    print(f"wrote {OUTPUT}: {len(images)} images, train {len(train_index)}, "
          f"test {len(test_index)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
