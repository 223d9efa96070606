"""``compare(reference, candidate)``: how closely one set of outputs follows another.

One set of figures for every boundary of the toolkit (training form vs export form, PyTorch
vs ONNX Runtime, FP32 vs INT8/FP16, served vs in-process, block outputs in ``spartan
debug``): top-1 agreement (for logits), max and mean absolute difference, cosine similarity
and SQNR, all over the whole batch. :class:`Comparer` accumulates them batch by batch, so a
dataset never has to sit in memory; ``compare`` is the one-shot form.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from spartan_deploy.errors import UsageError


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Figures of a candidate against a reference over ``samples`` rows.

    ``top1_agreement``: share of rows whose argmax agrees (2-D outputs only, else None).
    ``cosine``: cosine similarity of the two flattened tensors. ``sqnr_db``: signal (the
    reference) to quantization-noise (the difference) ratio in dB; ``inf`` when identical.
    ``nonfinite_rows``: rows where the candidate holds inf or NaN (an FP16 overflow, a broken
    graph); they make the differences infinite instead of hiding.
    """

    samples: int
    top1_agreement: float | None
    max_abs_diff: float
    mean_abs_diff: float
    cosine: float
    sqnr_db: float
    nonfinite_rows: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {k: json_number(v) for k, v in dataclasses.asdict(self).items()}

    def describe(self) -> str:
        """One line for logs and CLI output."""
        agree = "" if self.top1_agreement is None else \
            f"top-1 agreement {self.top1_agreement:.2%}, "
        return (f"{agree}max |diff| {self.max_abs_diff:.3g}, mean |diff| "
                f"{self.mean_abs_diff:.3g}, cosine {self.cosine:.6f}, SQNR "
                f"{self.sqnr_db:.1f} dB ({self.samples} samples)")


class Comparer:
    """Running sums for :class:`Comparison`, fed one batch pair at a time."""

    def __init__(self) -> None:
        self.samples = self.agree = self.nonfinite = self.elements = 0
        self.max_diff = self.sum_abs = 0.0
        self.dot = self.ref_sq = self.cand_sq = self.err_sq = 0.0
        self.argmax = True

    def add(self, reference: np.ndarray, candidate: np.ndarray) -> None:
        reference, candidate = np.asarray(reference), np.asarray(candidate)
        if reference.shape != candidate.shape:
            raise UsageError(f"outputs of shape {list(candidate.shape)} cannot be compared with "
                             f"reference outputs of shape {list(reference.shape)}; they are not "
                             "the same model")
        if not reference.size:
            return
        ref = reference.astype(np.float64).reshape(len(reference), -1)
        bad = ~np.isfinite(candidate.reshape(len(candidate), -1)).all(axis=1)
        # NaN counts as an infinite error, never as a small one.
        cand = np.nan_to_num(candidate.astype(np.float64), nan=np.inf).reshape(ref.shape)
        diff = np.abs(cand - ref)
        self.samples += len(ref)
        self.nonfinite += int(bad.sum())
        self.elements += diff.size
        self.max_diff = max(self.max_diff, float(diff.max()))
        self.sum_abs += float(diff.sum())
        finite = np.where(np.isfinite(cand), cand, 0.0)
        self.dot += float((ref * finite).sum())
        self.ref_sq += float((ref * ref).sum())
        self.cand_sq += float((finite * finite).sum())
        self.err_sq += float((diff * diff).sum()) if np.isfinite(diff).all() else math.inf
        self.argmax = self.argmax and reference.ndim == 2
        if self.argmax:
            self.agree += int((reference.argmax(axis=1) == candidate.argmax(axis=1)).sum())

    def result(self) -> Comparison:
        if not self.samples:
            raise UsageError("nothing to compare: no outputs were collected")
        if self.nonfinite:
            cosine = 0.0
        else:
            norm = math.sqrt(self.ref_sq) * math.sqrt(self.cand_sq)
            cosine = self.dot / norm if norm > 0 else float(self.ref_sq == self.cand_sq)
        return Comparison(
            samples=self.samples,
            top1_agreement=self.agree / self.samples if self.argmax else None,
            max_abs_diff=self.max_diff, mean_abs_diff=self.sum_abs / self.elements,
            cosine=cosine, sqnr_db=_sqnr(self.ref_sq, self.err_sq),
            nonfinite_rows=self.nonfinite)


def compare(reference: np.ndarray, candidate: np.ndarray) -> Comparison:
    """Figures of ``candidate`` against ``reference`` (same shape, rows = samples)."""
    comparer = Comparer()
    comparer.add(reference, candidate)
    return comparer.result()


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy as a fraction."""
    return float(np.mean(np.asarray(logits).argmax(axis=1) == labels))


def topk_hits(logits: np.ndarray, labels: np.ndarray, k: int) -> int:
    """How many rows have their label among the ``k`` largest logits."""
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return int((top == labels[:, None]).any(axis=1).sum())


def _sqnr(signal: float, noise: float) -> float:
    if noise == 0:
        return math.inf
    if signal == 0 or math.isinf(noise):
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def json_number(value: Any) -> Any:
    """inf/NaN are not JSON: written as strings so a report stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
