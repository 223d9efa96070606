"""The bundled calibration set: seeded digits from the TRAIN split, as PNGs with a manifest.

``calib/manifest.json`` lists every file with its sha256, its index among the 1,797 digits
and its label, so anyone can check that no test image leaked into calibration.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from spartan_deploy._io import sha256_file, write_json
from spartan_deploy.data.dataset import holdout_positions
from spartan_deploy.data.digits import (
    digits_file,
    digit_pixels,
    digits_labels,
    digits_split,
)
from spartan_deploy.errors import DataError, OutputExistsError, UsageError
from spartan_deploy.paths import bundled_calib_dir

MANIFEST_NAME = "manifest.json"
# How the bundled model was trained (models/spartan-t-digits.md): its validation part.
BUNDLED_VAL_FRACTION = 0.1
BUNDLED_TRAIN_SEED = 0
DEFAULT_COUNT = 512
DEFAULT_SEED = 0


def validation_indices() -> np.ndarray:
    """The digits the bundled model chose its epoch on (``spartan train``'s default
    validation share of the train split, seed 0): calibration never uses them."""
    train = digits_split("train")
    _, held = holdout_positions(len(train), BUNDLED_VAL_FRACTION, BUNDLED_TRAIN_SEED)
    return train[held]


def calibration_indices(count: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED) -> np.ndarray:
    """A seeded, sorted choice of ``count`` digits from the train split, outside its
    validation part (never test, never validation)."""
    train = np.setdiff1d(digits_split("train"), validation_indices())
    if not 1 <= count <= len(train):
        raise UsageError(f"calibration count {count} is out of range; use 1..{len(train)}")
    return np.sort(np.random.default_rng(seed).choice(train, size=count, replace=False))


def make_digits_calibration(folder: str | Path | None = None, count: int = DEFAULT_COUNT,
                            seed: int = DEFAULT_SEED, force: bool = False) -> Path:
    """Write the PNGs and manifest into a temporary folder, then move it into place."""
    folder = Path(folder) if folder is not None else bundled_calib_dir()
    if folder.exists() and any(folder.iterdir()) and not force:
        raise OutputExistsError(f"calibration folder {str(folder)!r} is not empty; pass "
                                "--force to regenerate it")
    labels = digits_labels()
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        entries = []
        for index in calibration_indices(count, seed).tolist():
            name = f"digit_{index:04d}.png"
            Image.fromarray(digit_pixels(index)).save(staging / name, optimize=False)
            entries.append({"file": name, "sha256": sha256_file(staging / name),
                            "source_index": index, "label": int(labels[index])})
        write_json(staging / MANIFEST_NAME, _manifest(entries, seed))
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)
    return folder


def _manifest(entries: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    return {
        "dataset": "digits",
        "description": "UCI Optical Recognition of Handwritten Digits (CC BY 4.0), 8x8 grey, "
                       "pixel counts 0..16 scaled to 0..255; see "
                       "spartan_deploy/data/DIGITS_LICENSE.md",
        "split": "train (outside the validation part the bundled model chose its epoch on)",
        "seed": seed,
        "count": len(entries),
        "source_file": digits_file().name,
        "source_sha256": sha256_file(digits_file()),
        "generator": "scripts/make_calib.py",
        "files": entries,
    }


def read_calibration_manifest(folder: str | Path | None = None) -> dict[str, Any]:
    path = Path(folder if folder is not None else bundled_calib_dir()) / MANIFEST_NAME
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"calibration manifest {str(path)!r} is missing or unreadable "
                        f"({err}); regenerate it with scripts/make_calib.py") from None
    problem = _manifest_shape_problem(data)
    if problem:
        raise DataError(f"calibration manifest {str(path)!r} is of the wrong shape ({problem}); "
                        "regenerate it with scripts/make_calib.py")
    return data


_ENTRY_TYPES = {"file": str, "sha256": str, "source_index": int, "label": int}


def _manifest_shape_problem(data: Any) -> str:
    """What is wrong with a parsed manifest's structure ('' when nothing is)."""
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not an object"
    files = data.get("files")
    if not isinstance(files, list):
        return "'files' is not a list"
    for number, entry in enumerate(files):
        if not isinstance(entry, dict):
            return f"entry {number} is not an object"
        for key, kind in _ENTRY_TYPES.items():
            value = entry.get(key)
            if not isinstance(value, kind) or isinstance(value, bool):
                return f"entry {number}: {key!r} is {value!r}"
    return ""


def check_calibration(folder: str | Path | None = None) -> list[str]:
    """Problems with a calibration folder against its manifest (empty list: all good)."""
    folder = Path(folder) if folder is not None else bundled_calib_dir()
    manifest = read_calibration_manifest(folder)
    problems = []
    listed = {entry["file"] for entry in manifest["files"]}
    on_disk = {p.name for p in folder.iterdir() if p.is_file() and p.name != MANIFEST_NAME}
    problems += [f"{name}: on disk, not in the manifest" for name in sorted(on_disk - listed)]
    problems += [f"{name}: in the manifest, missing" for name in sorted(listed - on_disk)]
    test = set(digits_split("test").tolist())
    validation = set(validation_indices().tolist())
    labels = digits_labels()
    for entry in manifest["files"]:
        path = folder / entry["file"]
        if path.is_file() and sha256_file(path) != entry["sha256"]:
            problems.append(f"{entry['file']}: sha256 differs from the manifest")
        if not 0 <= entry["source_index"] < len(labels):
            problems.append(f"{entry['file']}: digit {entry['source_index']} does not exist")
            continue
        if entry["source_index"] in test:
            problems.append(f"{entry['file']}: digit {entry['source_index']} is a test image")
        if entry["source_index"] in validation:
            problems.append(f"{entry['file']}: digit {entry['source_index']} is a validation "
                            "image")
        if int(labels[entry["source_index"]]) != entry["label"]:
            problems.append(f"{entry['file']}: label {entry['label']} is wrong")
    return problems
