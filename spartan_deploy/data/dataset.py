"""``open_dataset``: the built-in digits or an image folder, streamed in preprocessed batches.

Only the list of items sits in memory; images are decoded on a thread pool (Pillow releases
the GIL while decoding) a bounded number of batches ahead, in a fixed order, so a stream is
deterministic whatever the number of workers.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from spartan_deploy._validate import non_negative_int, optional_positive_int, positive_int
from spartan_deploy.data import digits as _digits
from spartan_deploy.data.folder import DECODE_ERRORS, decode, list_folder, probe_readable
from spartan_deploy.data.preprocess import to_array
from spartan_deploy.errors import DataError, UsageError
from spartan_deploy.model.config import DataConfig

log = logging.getLogger("spartan_deploy.data")
Batch = tuple[np.ndarray, "np.ndarray | None"]
_PREFETCH_BATCHES = 2  # decoded batches kept ready ahead of the consumer


class Dataset:
    """A fixed, ordered list of images with optional labels, read lazily in batches."""

    def __init__(self, name: str, items: Sequence[Any], labels: np.ndarray | None,
                 class_names: Sequence[str], data_config: DataConfig,
                 loader: Callable[[Any], Image.Image], describe: dict[str, Any]) -> None:
        self.name = name
        self.items = list(items)
        self.labels = labels
        self.class_names = tuple(class_names)
        self.data_config = data_config
        self._loader = loader
        self._describe = describe
        self._skipped: dict[int, str] = {}  # position -> reason; a set, not a running count
        self._lock = threading.Lock()

    @property
    def labelled(self) -> bool:
        return self.labels is not None

    @property
    def skipped(self) -> int:
        """How many images have been skipped as unreadable so far."""
        return len(self._skipped)

    @property
    def skipped_files(self) -> list[str]:
        """``"item: reason"`` for each skipped image, in dataset order."""
        return [f"{self.items[i]}: {why}" for i, why in sorted(self._skipped.items())]

    @property
    def description(self) -> dict[str, Any]:
        """What to record in manifests and reports about this data."""
        return {**self._describe, "count": len(self), "labelled": self.labelled,
                "num_classes": len(self.class_names), "skipped": self.skipped}

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, {len(self)} images, labelled={self.labelled})"

    def load(self, position: int) -> np.ndarray | None:
        """One preprocessed image (3, H, W), or None when it cannot be decoded."""
        try:
            return to_array(self._loader(self.items[position]), self.data_config)
        except DECODE_ERRORS as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            with self._lock:
                self._skipped[position] = reason[:200]
            return None

    def batches(self, batch_size: int, workers: int | None = None,
                order: Sequence[int] | None = None) -> Iterator[Batch]:
        """Yield ``(images float32 (B,3,H,W), labels int64 (B,) or None)``.

        ``order`` gives positions to read (e.g. a seeded shuffle for training); default is
        dataset order. Unreadable images are skipped and counted; a stream in which no
        image at all could be read raises DataError at its end.
        """
        positive_int(batch_size, "batch size")
        positions = list(range(len(self))) if order is None else [int(i) for i in order]
        workers = default_workers() if workers is None else non_negative_int(workers,
                                                                             "--workers")
        produced = 0
        for images, labels in self._stream(positions, batch_size, workers):
            produced += len(images)
            yield images, labels
        if produced == 0 and positions:
            example = f"; e.g. {self.skipped_files[0]}" if self.skipped_files else ""
            raise DataError(f"dataset {self.name!r}: none of its {len(positions)} images could "
                            f"be read{example}")

    def _stream(self, positions: list[int], batch_size: int, workers: int) -> Iterator[Batch]:
        images: list[np.ndarray] = []
        labels: list[int] = []
        for position, array in self._decoded(positions, batch_size, workers):
            if array is None:
                continue
            images.append(array)
            if self.labels is not None:
                labels.append(int(self.labels[position]))
            if len(images) == batch_size:
                yield self._pack(images, labels)
                images, labels = [], []
        if images:
            yield self._pack(images, labels)

    def _decoded(self, positions: list[int], batch_size: int,
                 workers: int) -> Iterator[tuple[int, np.ndarray | None]]:
        if workers == 0:
            for position in positions:
                yield position, self.load(position)
            return
        window = max(batch_size * _PREFETCH_BATCHES, workers * 4)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
            pending: collections.deque[tuple[int, Future]] = collections.deque()
            upcoming = iter(positions)
            try:
                for position in upcoming:
                    pending.append((position, pool.submit(self.load, position)))
                    if len(pending) >= window:
                        head, future = pending.popleft()
                        yield head, future.result()
                while pending:
                    head, future = pending.popleft()
                    yield head, future.result()
            finally:  # a consumer that stops early must not wait for the whole window
                for _, future in pending:
                    future.cancel()

    def _pack(self, images: list[np.ndarray], labels: list[int]) -> Batch:
        batch = np.stack(images)
        return batch, (np.asarray(labels, dtype=np.int64) if self.labels is not None else None)


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def open_dataset(source: str | Path, data_config: DataConfig, split: str = "test",
                 limit: int | None = None, seed: int = 0) -> Dataset:
    """The built-in ``digits`` or an image folder, preprocessed with ``data_config``.

    ``source`` is the string ``"digits"`` or a folder path (a folder named digits: ./digits).

    ``split`` picks the digits split (train/test/all); for a folder that holds only split
    sub-folders (train/, val/ or test/) it picks one, otherwise the folder is used whole.
    ``limit`` keeps a seeded random subset (in dataset order) of that many images.
    """
    optional_positive_int(limit, "--limit")
    if is_builtin(source):
        dataset = _open_digits(data_config, split)
    else:
        dataset = _open_folder(source, data_config, split)
    return _subset(dataset, limit, seed) if limit is not None else dataset


def is_builtin(source: str | Path) -> bool:
    """The name ``digits`` (a string) is the built-in set; a folder of that name is
    reached as ``./digits`` or through a Path."""
    return isinstance(source, str) and source == _digits.DIGITS_NAME


def _open_digits(data_config: DataConfig, split: str) -> Dataset:
    indices = _digits.digits_split(split)
    labels = _digits.digits_labels()[indices]
    return Dataset(_digits.DIGITS_NAME, indices.tolist(), labels, _digits.DIGITS_CLASSES,
                   data_config, _digits.digit_image,
                   {"source": _digits.DIGITS_NAME, "split": split})


def _open_folder(source: str | Path, data_config: DataConfig, split: str) -> Dataset:
    listing = list_folder(source, split)
    probe_readable(listing)
    labels = np.asarray(listing.labels, dtype=np.int64) if listing.labels is not None else None
    return Dataset(str(listing.root), listing.files, labels, listing.class_names, data_config,
                   decode, {"source": str(listing.root), "split": split})


def _subset(dataset: Dataset, limit: int, seed: int) -> Dataset:
    if limit >= len(dataset):
        return dataset
    keep = np.sort(np.random.default_rng(seed).choice(len(dataset), size=limit, replace=False))
    return _take(dataset, keep, {"limit": limit, "subset_seed": seed})


def _take(dataset: Dataset, positions: np.ndarray, describe: dict[str, Any]) -> Dataset:
    labels = dataset.labels[positions] if dataset.labels is not None else None
    return Dataset(dataset.name, [dataset.items[i] for i in positions], labels,
                   dataset.class_names, dataset.data_config, dataset._loader,
                   {**dataset._describe, **describe})


def holdout_positions(count: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of positions ``0..count-1`` into (kept, held out), both sorted.

    The one definition of the validation split: training selects its epoch on the held-out
    part, and the bundled calibration images are drawn from the kept part only.
    """
    if not 0.0 < fraction < 1.0:
        raise UsageError(f"validation fraction {fraction} must lie strictly between 0 and 1")
    held = min(count - 1, max(1, round(count * fraction)))
    if held < 1:
        raise DataError(f"{count} training image(s) cannot be split into training and "
                        "validation; add images")
    order = np.random.default_rng([seed, 1]).permutation(count)
    return np.sort(order[held:]), np.sort(order[:held])


def split_validation(dataset: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """(training part, validation part) of a training split; see :func:`holdout_positions`."""
    kept, held = holdout_positions(len(dataset), fraction, seed)
    about = {"validation_fraction": fraction, "validation_seed": seed}
    return (_take(dataset, kept, {**about, "part": "fit"}),
            _take(dataset, held, {**about, "part": "validation"}))


def load_calibration(folder: str | Path, data_config: DataConfig, count: int | None = None,
                     seed: int = 0, batch_size: int = 64) -> np.ndarray:
    """Calibration images of a folder as one float32 (N, 3, H, W) array.

    ``count`` keeps a seeded subset; asking for more images than the folder holds is an
    error rather than a silent shortfall.
    """
    dataset = open_dataset(folder, data_config, split="all")
    if count is not None and count > len(dataset):
        raise DataError(f"calibration folder {str(folder)!r} holds {len(dataset)} images, "
                        f"fewer than the {count} asked for; lower the count or add images")
    if count is not None:
        dataset = _subset(dataset, count, seed)
    arrays = [images for images, _ in dataset.batches(batch_size)]
    if dataset.skipped:
        log.warning("calibration: skipped %d unreadable image(s) in %s", dataset.skipped,
                    folder)
    return np.concatenate(arrays)
