"""Accuracy and agreement: top-1/top-5 on labelled data, and how closely an artefact follows
its FP32 reference (top-1 agreement, max and mean absolute logit difference).

Streaming: batches are decoded on a background thread while the runtime runs the previous
one, so evaluation is bound by the runtime rather than by image loading, and no more than a
couple of batches ever sit in memory.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from spartan_deploy._validate import positive_int
from spartan_deploy.errors import DataError, NumericsError, UsageError
from spartan_deploy.evaluation.comparison import Comparer, json_number, topk_hits
from spartan_deploy.evaluation.logits import BatchSource
from spartan_deploy.runtime.base import Runner, infer_batch

Batch = tuple[np.ndarray, "np.ndarray | None"]
ProgressFn = Callable[[int], None]  # called with the number of images just processed


@dataclasses.dataclass(frozen=True)
class AccuracyResult:
    """Figures of one runner over one dataset. Accuracies are fractions in [0, 1].

    top1/top5 are None on unlabelled data; the agreement fields are None without a reference.
    ``seconds`` is time spent inside the runtime only, so ``images_per_s`` is the runtime's
    streaming throughput, not the loader's.
    """

    count: int
    top1: float | None = None
    top5: float | None = None
    correct1: int = 0
    correct5: int = 0
    agreement_top1: float | None = None
    max_logit_diff: float | None = None
    mean_logit_diff: float | None = None
    cosine: float | None = None
    sqnr_db: float | None = None
    seconds: float = 0.0
    skipped: int = 0
    logits: np.ndarray | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def images_per_s(self) -> float | None:
        return self.count / self.seconds if self.seconds > 0 else None

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: json_number(getattr(self, f.name)) for f in dataclasses.fields(self)
                if f.name != "logits"}
        data["images_per_s"] = self.images_per_s
        return data


class _Accumulator:
    """Running sums for one runner, so results never need all logits in memory."""

    def __init__(self, keep_logits: bool = False) -> None:
        self.count = self.correct1 = self.correct5 = 0
        self.labelled = True
        self.comparer: Comparer | None = None  # against the reference, when there is one
        self.seconds = 0.0
        self.kept: list[np.ndarray] | None = [] if keep_logits else None

    def update(self, logits: np.ndarray, labels: np.ndarray | None,
               reference: np.ndarray | None, seconds: float, classes: int = 0) -> None:
        _check_logits(logits, reference, classes)
        if labels is not None and len(labels) != len(logits):
            raise UsageError(f"the artefact returned {len(logits)} rows of logits for a batch "
                             f"of {len(labels)} images")
        self.count += len(logits)
        self.seconds += seconds
        if labels is None:
            self.labelled = False
        else:
            self.correct1 += topk_hits(logits, labels, 1)
            self.correct5 += topk_hits(logits, labels, 5)
        if reference is not None:
            self.comparer = self.comparer or Comparer()
            self.comparer.add(reference, logits)
        if self.kept is not None:
            self.kept.append(logits)

    def result(self, skipped: int = 0) -> AccuracyResult:
        n = self.count
        labelled = self.labelled and n > 0
        figures = self.comparer.result() if self.comparer is not None and n > 0 else None
        kept = np.concatenate(self.kept) if self.kept else None
        return AccuracyResult(
            count=n, top1=self.correct1 / n if labelled else None,
            top5=self.correct5 / n if labelled else None,
            correct1=self.correct1 if labelled else 0, correct5=self.correct5 if labelled else 0,
            agreement_top1=figures.top1_agreement if figures else None,
            max_logit_diff=figures.max_abs_diff if figures else None,
            mean_logit_diff=figures.mean_abs_diff if figures else None,
            cosine=figures.cosine if figures else None,
            sqnr_db=figures.sqnr_db if figures else None,
            seconds=self.seconds, skipped=skipped, logits=kept)


def _check_logits(logits: np.ndarray, reference: np.ndarray | None, classes: int) -> None:
    if logits.ndim != 2:
        raise UsageError(f"the artefact returned logits of shape {list(logits.shape)}; "
                         "expected (batch, classes)")
    if logits.shape[1] < classes:
        raise DataError(f"the artefact predicts {logits.shape[1]} classes but the data has "
                        f"{classes}; evaluate it on data of its own classes")
    if reference is not None and reference.shape != logits.shape:
        raise UsageError(f"logits of shape {list(logits.shape)} cannot be compared with "
                         f"reference logits of shape {list(reference.shape)}; the artefacts "
                         "are not the same model")


def evaluate_accuracy(runner: Runner, dataset: BatchSource, batch_size: int = 64,
                      reference_logits: np.ndarray | Runner | None = None,
                      workers: int | None = None, keep_logits: bool = False,
                      progress: ProgressFn | None = None) -> AccuracyResult:
    """Top-1/top-5 of ``runner`` over ``dataset`` and, given a reference, its agreement.

    ``reference_logits`` is either an array (N, classes) in dataset order (e.g. the
    ``logits`` of an earlier ``keep_logits=True`` call on the FP32 model) or a runner that
    is run on the same batches. ``keep_logits`` returns this runner's logits for reuse.
    """
    if isinstance(reference_logits, Runner):
        results = evaluate_runners([reference_logits, runner], dataset, batch_size, 0,
                                   workers, keep_logits, progress)
        return results[1]
    if reference_logits is not None:
        reference_logits = np.asarray(reference_logits, dtype=np.float32)
    check_batch_size(batch_size)
    acc = _Accumulator(keep_logits)
    offset = 0
    with _active(runner):
        for images, labels in prefetch(dataset.batches(batch_size, workers)):
            logits, seconds = _timed_infer(runner, images)
            ref = None
            if reference_logits is not None:
                ref = _slice_reference(reference_logits, offset, len(images))
            acc.update(logits, labels, ref, seconds, _classes(dataset))
            offset += len(images)
            if progress:
                progress(len(images))
    return acc.result(int(getattr(dataset, "skipped", 0)))


def evaluate_runners(runners: Sequence[Runner], dataset: BatchSource, batch_size: int = 64,
                     reference: int | None = 0, workers: int | None = None,
                     keep_logits: bool = False,
                     progress: ProgressFn | None = None) -> list[AccuracyResult]:
    """Evaluate several runners in ONE pass over the data (each batch decoded once).

    ``reference`` is the index of the runner the others are compared with (None: none).
    """
    check_batch_size(batch_size)
    if not runners:
        raise UsageError("no artefact to evaluate; give at least one")
    accs = [_Accumulator(keep_logits) for _ in runners]
    with _all_active(runners):
        for images, labels in prefetch(dataset.batches(batch_size, workers)):
            outputs = [_timed_infer(r, images) for r in runners]
            ref = outputs[reference][0] if reference is not None else None
            for acc, (logits, seconds) in zip(accs, outputs):
                acc.update(logits, labels, ref, seconds, _classes(dataset))
            if progress:
                progress(len(images))
    skipped = int(getattr(dataset, "skipped", 0))
    return [acc.result(skipped) for acc in accs]


def check_batch_size(batch_size: Any) -> int:
    """Batch sizes are positive integers; anything else is a one-line usage error."""
    return positive_int(batch_size, "batch size")


def _classes(dataset: BatchSource) -> int:
    return len(getattr(dataset, "class_names", ()) or ())


def _timed_infer(runner: Runner, images: np.ndarray) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    logits = infer_batch(runner, images)  # any batch the artefact accepts (fixed: re-batched)
    seconds = time.perf_counter() - start
    logits = np.asarray(logits, dtype=np.float32)
    _check_finite(runner, logits)
    return logits, seconds


def _check_finite(runner: Runner, logits: np.ndarray) -> None:
    """NaN or infinite logits make top-1, top-5 and agreement meaningless (argmax of NaN is
    index 0): an error, never a figure."""
    if logits.size and not np.isfinite(logits).all():
        rows = int((~np.isfinite(logits.reshape(len(logits), -1))).any(axis=1).sum())
        what = str(runner.info.artefact) if runner.info.artefact else runner.info.name
        raise NumericsError(f"{what!r} produced NaN or infinite logits for {rows} of "
                            f"{len(logits)} images; its weights or graph are broken "
                            "(re-export it from a good checkpoint)")


def _slice_reference(reference: np.ndarray, offset: int, count: int) -> np.ndarray:
    if offset + count > len(reference):
        raise DataError(f"reference logits hold {len(reference)} rows but the dataset has "
                        "more images; compute the reference on the same dataset and limit")
    return reference[offset:offset + count]


class _active:
    """Activate a runner for the block unless the caller already did (then leave it on)."""

    def __init__(self, runner: Runner) -> None:
        self.runner, self.owned = runner, not runner.active

    def __enter__(self) -> Runner:
        if self.owned:
            self.runner.activate()
        return self.runner

    def __exit__(self, *exc: object) -> None:
        if self.owned:
            self.runner.deactivate()


class _all_active:
    def __init__(self, runners: Sequence[Runner]) -> None:
        self.guards = [_active(r) for r in runners]
        self.entered: list[_active] = []

    def __enter__(self) -> None:
        for guard in self.guards:
            guard.__enter__()
            self.entered.append(guard)

    def __exit__(self, *exc: object) -> None:
        for guard in reversed(self.entered):
            guard.__exit__(*exc)


_DONE = object()


def prefetch(batches: Iterable[Batch], depth: int = 2) -> Iterator[Batch]:
    """Iterate ``batches`` on a background thread, ``depth`` batches ahead.

    Decoding (PIL, numpy) releases the GIL for most of its work, so the next batch is ready
    when the runtime finishes this one. Errors in the loader re-raise here.
    """
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in batches:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as err:  # handed to the consumer, which re-raises it
            put(err)

    thread = threading.Thread(target=produce, name="spartan-prefetch", daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
