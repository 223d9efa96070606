"""Calibration images, activation ranges and the calibration cache.

Ranges are computed once per (model, image set, method, symmetry) with ONNX Runtime's
calibrators over every float tensor, and cached as JSON; both backends then take the same
ranges, so a second run (or the accuracy-budget loop) never calibrates again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from spartan_deploy._io import sha256_file, write_json
from spartan_deploy.errors import DataError, QuantizationError
from spartan_deploy.model.config import DataConfig
from spartan_deploy.quantize.options import CalibMethod, QuantizeOptions

CACHE_VERSION = 1
_HOLDOUT_SHARE = 5  # without --calib-count, at most 1/5 of the folder is held out
_HIST_BINS = {CalibMethod.ENTROPY: 128, CalibMethod.PERCENTILE: 2048}  # Model Optimizer's
Ranges = dict[str, tuple[float, float]]


@dataclasses.dataclass(frozen=True)
class CalibrationSet:
    """Calibration images and the held-out images of the same folder (for the report)."""

    folder: str
    images: np.ndarray  # (N, 3, H, W) float32
    holdout: np.ndarray  # (M, 3, H, W) float32, M may be 0
    files: tuple[tuple[str, str], ...]  # (file name, sha256) of the calibration images
    skipped: tuple[str, ...]  # unreadable files left out

    @property
    def set_hash(self) -> str:
        """One hash over the calibration images (their file hashes in order)."""
        return hashlib.sha256("\n".join(h for _, h in self.files).encode()).hexdigest()


def load_calibration_set(folder: str | Path, data_config: DataConfig,
                         options: QuantizeOptions) -> CalibrationSet:
    """Seeded split of a folder into calibration images and held-out images."""
    from spartan_deploy.data import open_dataset

    dataset = open_dataset(folder, data_config, split="all")
    total = len(dataset)
    order = np.random.default_rng(options.seed).permutation(total)
    if options.calib_count is not None and options.calib_count > total:
        raise DataError(f"calibration folder {str(folder)!r} holds {total} images, fewer than "
                        f"--calib-count {options.calib_count}; lower it or add images")
    if options.calib_count is None:
        held = min(options.holdout, total // _HOLDOUT_SHARE)
        count = total - held
    else:
        count = options.calib_count
        held = min(options.holdout, total - count)
    skipped: list[str] = []
    images, files = _read(dataset, sorted(order[:count].tolist()), skipped)
    holdout, _ = _read(dataset, sorted(order[count:count + held].tolist()), skipped)
    if not len(images):
        raise DataError(f"calibration folder {str(folder)!r}: none of the {count} images picked "
                        "could be read; check the files")
    shape = (0, 3, data_config.input_size, data_config.input_size)
    return CalibrationSet(str(folder), np.stack(images),
                          np.stack(holdout) if holdout else np.zeros(shape, np.float32),
                          tuple(files), tuple(skipped))


def _read(dataset: Any, positions: list[int],
          skipped: list[str]) -> tuple[list[np.ndarray], list[tuple[str, str]]]:
    images, files = [], []
    for position in positions:
        item = dataset.items[position]
        array = dataset.load(position)
        if array is None:
            skipped.append(str(item))
            continue
        images.append(array)
        digest = (sha256_file(item) if isinstance(item, Path)
                  else hashlib.sha256(array.tobytes()).hexdigest())
        files.append((Path(str(item)).name, digest))
    return images, files


def batches(images: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(images), batch_size):
        yield images[start:start + batch_size]


def cache_key(source_sha256: str, calib: CalibrationSet, data_config: DataConfig,
              method: CalibMethod, symmetric: bool, percentile: float) -> str:
    """Everything a range depends on: model bytes, images, preprocessing, method options."""
    parts = {"version": CACHE_VERSION, "model": source_sha256, "images": calib.set_hash,
             "data_config": data_config.to_dict(), "method": method.value,
             "symmetric": symmetric,
             "percentile": percentile if method is CalibMethod.PERCENTILE else None}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def read_cache(path: Path, key: str) -> Ranges | None:
    """Cached ranges for ``key``, or None when absent, unreadable or for another key."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != key:
        return None
    ranges = data.get("ranges")
    if not isinstance(ranges, dict):
        return None
    return {name: (float(lo), float(hi)) for name, (lo, hi) in ranges.items()}


def write_cache(path: Path, key: str, ranges: Ranges, about: dict[str, Any]) -> None:
    write_json(path, {"key": key, **about, "ranges": {k: list(v) for k, v in ranges.items()}})


def compute_ranges(model_path: Path, input_name: str, images: np.ndarray,
                   method: CalibMethod, symmetric: bool, percentile: float,
                   batch_size: int) -> Ranges:
    """(low, high) of every float tensor over the calibration images (ONNX Runtime CPU)."""
    from onnxruntime.quantization import CalibrationMethod, create_calibrator

    ort_method = {CalibMethod.ENTROPY: CalibrationMethod.Entropy,
                  CalibMethod.MAX: CalibrationMethod.MinMax,
                  CalibMethod.PERCENTILE: CalibrationMethod.Percentile}[method]
    extra: dict[str, Any] = {"symmetric": symmetric}
    if method in _HIST_BINS:
        extra["num_bins"] = _HIST_BINS[method]
    if method is CalibMethod.ENTROPY:
        extra["num_quantized_bins"] = 128
    if method is CalibMethod.PERCENTILE:
        extra["percentile"] = percentile
    with tempfile.TemporaryDirectory(prefix="spartan-calib-") as tmp, _quiet():
        try:
            calibrator = create_calibrator(
                model_path, None, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                calibrate_method=ort_method, providers=["CPUExecutionProvider"],
                extra_options=extra)
            # One batch per call keeps memory to one batch of activations: the histogram
            # and min/max collectors merge across calls.
            for batch in batches(images, batch_size):
                calibrator.collect_data(_OneBatch(input_name, batch))
            tensors = calibrator.compute_data()
        except Exception as err:  # ORT raises plain RuntimeError/ValueError/its own types
            first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
            raise QuantizationError(f"calibration failed in ONNX Runtime: "
                                    f"{first or type(err).__name__}") from None
    return {name: (float(np.asarray(td.range_value[0]).item()),
                   float(np.asarray(td.range_value[1]).item()))
            for name, td in tensors.data.items()}


class _OneBatch:
    """A calibration data reader that yields one batch once."""

    def __init__(self, input_name: str, batch: np.ndarray) -> None:
        self._items = [{input_name: np.ascontiguousarray(batch, dtype=np.float32)}]

    def get_next(self) -> dict[str, np.ndarray] | None:
        return self._items.pop() if self._items else None

    def rewind(self) -> None:  # pragma: no cover - ORT does not rewind during collection
        pass


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ONNX Runtime's histogram collectors print progress to stdout; keep it off ours."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield
