"""Calibration images, activation ranges and the calibration cache.

Ranges are computed once per (model, image set, preprocessing, method, symmetry, target
operator set) over the tensors the target may quantize -- min/max reduced here, entropy and
percentile with ONNX Runtime's HistogramCollector (the code Model Optimizer calibrates with)
-- and cached as JSON. The backends take these ranges as they are, so a second run (or the
accuracy-budget loop, which re-quantizes) never calibrates again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from spartan_deploy._io import sha256_file, write_json
from spartan_deploy.errors import DataError, QuantizationError
from spartan_deploy.model.config import DataConfig
from spartan_deploy.quantize.options import CalibMethod, QuantizeOptions

CACHE_VERSION = 1
_HOLDOUT_SHARE = 5  # without --calib-count, at most 1/5 of the folder is held out
_HIST_BINS = {CalibMethod.ENTROPY: 128, CalibMethod.PERCENTILE: 2048}  # Model Optimizer's
Ranges = dict[str, tuple[float, float]]
_FLOAT_ONLY_OPS = frozenset({"Conv", "ConvTranspose", "FusedConv", "Gemm"})
_PROBE_BYTES = 1 << 30  # activations held per calibration batch, at most


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
    from spartan_deploy._resources import check_images

    check_images(count + held, data_config.input_size, f"calibration folder {str(folder)!r}",
                 "--calib-count")
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


def folder_digest(folder: Path) -> str:
    """One hash over a calibration folder's image names and bytes (cheap: no decoding).

    Run folders key their reuse on it, and the quantize manifest records it, so a Q/DQ graph
    made earlier from the same images can be recognised without decoding them again.
    """
    from spartan_deploy.data import IMAGE_SUFFIXES

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"--calib {str(folder)!r} is a file; give a folder of images")
    if not folder.is_dir():
        raise DataError(f"calibration folder {str(folder)!r} does not exist; give --calib DIR "
                        "(default: the bundled calibration set)")
    digest = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*")
                   if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"calibration folder {str(folder)!r} holds no images; give --calib "
                        "a folder of JPEG/PNG/BMP/WebP files")
    for path in files:
        # os.fsencode: names that are not valid UTF-8 (kept as surrogates) hash as the bytes
        # the file system holds, as every other tool here reads them.
        digest.update(os.fsencode(path.relative_to(folder).as_posix()))
        digest.update(bytes.fromhex(sha256_file(path)))
    return digest.hexdigest()


def batches(images: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(images), batch_size):
        yield images[start:start + batch_size]


def cache_key(source_sha256: str, calib: CalibrationSet, data_config: DataConfig,
              method: CalibMethod, symmetric: bool, percentile: float,
              op_types: frozenset[str], graph: str = "source") -> str:
    """Everything a range depends on: model bytes, images, preprocessing, method options."""
    parts = {"version": CACHE_VERSION, "model": source_sha256, "images": calib.set_hash,
             "data_config": data_config.to_dict(), "method": method.value,
             "symmetric": symmetric, "op_types": sorted(op_types), "graph": graph,
             "percentile": percentile if method is CalibMethod.PERCENTILE else None}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def read_cache(path: Path, key: str) -> Ranges | None:
    """Cached ranges for ``key``; None when absent, not a cache (unparsable, another
    shape: it is rebuilt and replaced) or made for another key.

    A cache of this key whose ranges are of the wrong shape, non-finite or inverted is
    refused (QuantizationError naming the file and --no-cache), never trusted: ranges go
    straight into the Q/DQ scales, where a NaN would silently break the graph.
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != key:
        return None
    ranges = data.get("ranges")
    if not isinstance(ranges, dict) or not ranges:
        raise _bad_cache(path, "it has no ranges")
    return {name: _cached_range(path, name, value) for name, value in ranges.items()}


def _cached_range(path: Path, name: str, value: Any) -> tuple[float, float]:
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise _bad_cache(path, f"the range of {name!r} is {value!r}, not [low, high]")
    low, high = float(value[0]), float(value[1])
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise _bad_cache(path, f"the range of {name!r} is [{low}, {high}]")
    return low, high


def _bad_cache(path: Path, why: str) -> QuantizationError:
    return QuantizationError(f"calibration cache {str(path)!r} is damaged: {why}; delete it "
                             "or pass --no-cache to calibrate again")


def write_cache(path: Path, key: str, ranges: Ranges, about: dict[str, Any]) -> None:
    write_json(path, {"key": key, **about, "ranges": {k: list(v) for k, v in ranges.items()}})


def calibrated_tensors(model: onnx.ModelProto, op_types: frozenset[str]) -> list[str]:
    """Float tensors a backend may quantize: inputs and outputs of ``op_types`` nodes."""
    inits = {i.name for i in model.graph.initializer}
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in (
        *inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)}
    names: dict[str, None] = {}
    for node in model.graph.node:
        if node.op_type not in op_types:
            continue
        for name in (*node.input, *node.output):
            # ONNX shape inference cannot type the outputs of ONNX Runtime's fused ops
            # (Gelu, FusedConv); what a float-only operator reads or writes is float.
            kind = types.get(name, onnx.TensorProto.FLOAT if node.op_type in _FLOAT_ONLY_OPS
                             else None)
            if name and name not in inits and kind == onnx.TensorProto.FLOAT:
                names[name] = None
    return list(names)


def compute_ranges(model_path: Path, input_name: str, images: np.ndarray,
                   method: CalibMethod, symmetric: bool, percentile: float,
                   batch_size: int, op_types: frozenset[str]) -> Ranges:
    """(low, high) of every tensor a backend may quantize, over the calibration images.

    One ONNX Runtime CPU session outputs all those tensors; min/max are reduced here and the
    histogram methods use ONNX Runtime's own HistogramCollector (the code Model Optimizer
    calibrates with), fed one batch at a time so memory holds one batch of activations.
    """
    model = onnx.load(str(model_path))
    names = calibrated_tensors(model, op_types)
    try:
        sess = _probe_session(model, names)
        fixed = _fixed_batch(sess)
        if fixed is not None:  # an export with --batch N runs N images at a time, no other
            images, batch_size = _whole_batches(images, fixed), fixed
        else:
            batch_size = _fitting_batch(sess, names, input_name, images, batch_size)
        collector = _Collector(method, symmetric, percentile)
        for batch in batches(images, batch_size):
            outputs = sess.run(names, {input_name: np.ascontiguousarray(batch)})
            collector.add(dict(zip(names, outputs)))
        return collector.result()
    except QuantizationError:
        raise
    except Exception as err:  # ORT raises its own types; numpy ValueError on NaN ranges
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise QuantizationError(f"calibration failed: {first or type(err).__name__}") from None


def _probe_session(model: onnx.ModelProto, names: list[str]) -> Any:
    """A CPU session with every tensor in ``names`` added as a graph output."""
    from spartan_deploy.runtime.ort_session import SessionSpec, open_session

    probe = onnx.ModelProto.FromString(model.SerializeToString())
    present = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None)
                              for n in names if n not in present)
    return open_session(probe, SessionSpec(), what="the calibration graph")


def _fixed_batch(sess: Any) -> int | None:
    first = sess.get_inputs()[0].shape
    return first[0] if first and isinstance(first[0], int) and first[0] > 0 else None


def _whole_batches(images: np.ndarray, batch: int) -> np.ndarray:
    """The images topped up to a multiple of ``batch`` with repeats of the first ones: a
    repeated image adds no new value to a min/max and barely weighs in a histogram."""
    short = -len(images) % batch
    if short == 0:
        return images
    extra = np.resize(images, (short, *images.shape[1:]))  # cycles through the images
    return np.concatenate([images, extra])


def _fitting_batch(sess: Any, names: list[str], input_name: str, images: np.ndarray,
                   limit: int) -> int:
    """The largest batch (<= limit) whose probed activations fit in _PROBE_BYTES."""
    per_image = sum(o.nbytes for o in sess.run(names, {input_name: images[:1]}))
    return int(max(1, min(limit, _PROBE_BYTES // max(per_image, 1))))


class _Collector:
    """Min/max per tensor, or ONNX Runtime's histogram collector for entropy/percentile."""

    def __init__(self, method: CalibMethod, symmetric: bool, percentile: float) -> None:
        self.symmetric = symmetric
        self.lows: dict[str, float] = {}
        self.highs: dict[str, float] = {}
        self.histograms: Any = None
        if method is not CalibMethod.MAX:
            from onnxruntime.quantization.calibrate import HistogramCollector

            self.histograms = HistogramCollector(
                method=method.value, symmetric=symmetric, num_bins=_HIST_BINS[method],
                num_quantized_bins=128, percentile=percentile, scenario="same")

    def add(self, arrays: dict[str, np.ndarray]) -> None:
        if self.histograms is not None:
            with _quiet():
                self.histograms.collect({k: [v] for k, v in arrays.items()})
            return
        for name, array in arrays.items():
            low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
            self.lows[name] = min(low, self.lows.get(name, low))
            self.highs[name] = max(high, self.highs.get(name, high))

    def result(self) -> Ranges:
        if self.histograms is not None:
            with _quiet():
                found = self.histograms.compute_collection_result()
            pairs = {k: (float(np.asarray(v[0]).item()), float(np.asarray(v[1]).item()))
                     for k, v in found.items()}
        else:
            pairs = {k: (low, self.highs[k]) for k, low in self.lows.items()}
        return {k: self._final(low, high) for k, (low, high) in pairs.items()}

    def _final(self, low: float, high: float) -> tuple[float, float]:
        if not (np.isfinite(low) and np.isfinite(high)):
            raise QuantizationError("calibration met NaN or infinite activations; check the "
                                    "model and the calibration images")
        if self.symmetric:  # signed symmetric INT8: the larger side on both sides
            amax = max(abs(low), abs(high))
            return -amax, amax
        return min(low, 0.0), max(high, 0.0)  # zero must be exactly representable


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ONNX Runtime's histogram collectors print progress to stdout; keep it off ours."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield
