"""Logits of any runner over images in memory or a dataset, and labelled data in memory.

The one "run this model over these images" of the toolkit: stages that check parity or
accuracy (export, quantize and its budget, precision graphs, debug) and eval/bench all feed
images to a :class:`~spartan_deploy.runtime.base.Runner` through :func:`logits_over`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from spartan_deploy._validate import positive_int
from spartan_deploy.errors import DataError

if TYPE_CHECKING:
    from spartan_deploy.model.config import DataConfig
    from spartan_deploy.runtime.base import Runner

Batch = tuple[np.ndarray, "np.ndarray | None"]
DEFAULT_BATCH = 64


class BatchSource(Protocol):
    """What evaluation needs of a dataset (``spartan_deploy.data.Dataset`` fits)."""

    def __len__(self) -> int: ...

    def batches(self, batch_size: int, workers: int | None = None) -> Iterable[Batch]: ...


@dataclasses.dataclass(frozen=True)
class EvalData:
    """Preprocessed images (float32 NCHW) in memory, their labels (or None) and where they
    came from. Stages that run many graphs over the same images decode them once."""

    images: np.ndarray
    labels: np.ndarray | None
    description: dict[str, Any]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labelled(self) -> bool:
        return self.labels is not None

    def batches(self, batch_size: int, workers: int | None = None) -> Iterator[Batch]:
        for start in range(0, len(self.images), batch_size):
            stop = start + batch_size
            labels = self.labels[start:stop] if self.labels is not None else None
            yield self.images[start:stop], labels


def load_eval_data(source: str, data_config: DataConfig, split: str = "test",
                   limit: int | None = None, seed: int = 0,
                   require_labels: bool = False) -> EvalData:
    """``--data`` (``digits`` or a folder) decoded once into memory."""
    from spartan_deploy.data import open_dataset

    dataset = open_dataset(source, data_config, split=split, limit=limit, seed=seed)
    from spartan_deploy._resources import check_images

    check_images(len(dataset), data_config.input_size, f"--data {source!r}")
    if require_labels and not dataset.labelled:
        raise DataError(f"--data {source!r} has no labels (a flat folder); give 'digits' or a "
                        "folder with one sub-folder per class")
    images, labels = [], []
    for batch, batch_labels in dataset.batches(DEFAULT_BATCH):
        images.append(batch)
        if batch_labels is not None:
            labels.append(batch_labels)
    if not images:
        raise DataError(f"--data {source!r} holds no readable images; give another folder")
    return EvalData(np.concatenate(images), np.concatenate(labels) if labels else None,
                    dataset.description)


def logits_over(runner: Runner, data: np.ndarray | BatchSource,
                batch_size: int = DEFAULT_BATCH,
                progress: Callable[[int], None] | None = None) -> np.ndarray:
    """``runner``'s float32 logits for every image of ``data``, in order.

    ``data`` is an image array or anything with ``batches`` (a dataset, :class:`EvalData`).
    The runner is activated for the call unless the caller already did.
    """
    from spartan_deploy.runtime.base import infer_batch

    positive_int(batch_size, "batch size")
    images = data if isinstance(data, np.ndarray) else getattr(data, "images", None)
    if isinstance(images, np.ndarray) and images.ndim == 4 and len(images):
        from spartan_deploy._resources import check_batch

        check_batch(min(batch_size, len(images)), int(images.shape[-1]), option="batch size")
    if isinstance(data, np.ndarray):
        batches: Iterable[Any] = ((data[i:i + batch_size], None)
                                  for i in range(0, len(data), batch_size))
    else:
        batches = data.batches(batch_size)
    outputs = []
    owned = not runner.active
    if owned:
        runner.activate()
    try:
        for images, _ in batches:
            outputs.append(np.asarray(infer_batch(runner, images), dtype=np.float32))
            if progress:
                progress(len(images))
    finally:
        if owned:
            runner.deactivate()
    if not outputs:
        raise DataError("no image to run the model on")
    return np.concatenate(outputs)


NO_DATA = "none"


def check_data_source(data: str, split: str = "test", require_labels: bool = True) -> None:
    """Refuse a ``--data`` that cannot be used (missing folder, no readable image, no labels)
    by reading only the folder listing and one image header, before any slow work."""
    if data.strip().lower() == NO_DATA:
        return
    from spartan_deploy.data.dataset import is_builtin
    from spartan_deploy.data.folder import list_folder, probe_readable

    if is_builtin(data):
        return
    listing = list_folder(data, split)
    probe_readable(listing)
    if require_labels and listing.labels is None:
        raise DataError(f"--data {data!r} has no labels (a flat folder); give 'digits' or a "
                        "folder with one sub-folder per class")


def resolve_data(data: str | None, data_config: DataConfig | None) -> str | None:
    """``--data``: the name or folder given; ``none`` for no data; unset: the data the
    model records (``digits`` for a model preprocessed as the digits are), else none."""
    if data is not None:
        return None if data.strip().lower() == NO_DATA else data
    from spartan_deploy.data import DIGITS_DATA_CONFIG, DIGITS_NAME

    if data_config is not None and data_config.to_dict() == DIGITS_DATA_CONFIG.to_dict():
        return DIGITS_NAME
    return None
