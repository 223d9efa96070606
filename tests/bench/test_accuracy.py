"""evaluate_accuracy / run_eval: known answers on a small labelled folder, agreement figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spartan_deploy.bench import EvalOptions, evaluate_accuracy, prefetch, run_eval
from spartan_deploy.errors import DataError, UsageError
from spartan_deploy.runtime import RunnerOptions, open_runner
from spartan_deploy.runtime.base import Runner, RunnerInfo
from tests.bench import colour_data as cd


class ArrayData:
    """A labelled in-memory dataset (what evaluate_accuracy needs of a Dataset)."""

    class_names = tuple("abcdef")
    skipped = 0

    def __init__(self, n: int = 23, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.images = rng.standard_normal((n, 3, 4, 4)).astype(np.float32)
        self.labels = rng.integers(0, 6, n)

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, batch_size: int, workers=None):
        for i in range(0, len(self), batch_size):
            yield self.images[i:i + batch_size], self.labels[i:i + batch_size]


class TableRunner(Runner):
    """Returns fixed logits, row by row, in the order images arrive."""

    def __init__(self, logits: np.ndarray) -> None:
        super().__init__()
        self.logits, self.offset = logits, 0
        self.info = RunnerInfo("table", "test", "fp32", "cpu")

    def activate(self) -> None:
        self.offset = 0
        super().activate()

    def infer(self, images: np.ndarray) -> np.ndarray:
        out = self.logits[self.offset:self.offset + len(images)]
        self.offset += len(images)
        return out


def _expected_topk(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    order = np.argsort(-logits, axis=1)[:, :k]
    return float(np.mean([label in row for row, label in zip(order, labels)]))


@pytest.mark.parametrize("batch_size", [1, 5, 64])
def test_top1_top5_match_direct_computation(batch_size: int) -> None:
    data = ArrayData()
    logits = np.random.default_rng(3).standard_normal((len(data), 6)).astype(np.float32)
    result = evaluate_accuracy(TableRunner(logits), data, batch_size)
    assert result.count == len(data)
    assert result.top1 == pytest.approx(np.mean(logits.argmax(1) == data.labels))
    assert result.top5 == pytest.approx(_expected_topk(logits, data.labels, 5))
    assert result.agreement_top1 is None and result.max_logit_diff is None


def test_agreement_with_reference_array_and_runner() -> None:
    data = ArrayData()
    reference = np.random.default_rng(4).standard_normal((len(data), 6)).astype(np.float32)
    shifted = reference.copy()
    shifted[:, 0] += 0.25  # same shift on every row: diffs known exactly
    expected_agree = np.mean(shifted.argmax(1) == reference.argmax(1))
    for ref in (reference, TableRunner(reference)):
        result = evaluate_accuracy(TableRunner(shifted), data, 7, reference_logits=ref)
        assert result.agreement_top1 == pytest.approx(expected_agree)
        assert result.max_logit_diff == pytest.approx(0.25, abs=1e-6)
        assert result.mean_logit_diff == pytest.approx(0.25 / 6, abs=1e-6)


def test_keep_logits_returns_them_in_order() -> None:
    data = ArrayData()
    logits = np.random.default_rng(5).standard_normal((len(data), 6)).astype(np.float32)
    result = evaluate_accuracy(TableRunner(logits), data, 4, keep_logits=True)
    np.testing.assert_array_equal(result.logits, logits)


def test_reference_of_other_shape_is_refused() -> None:
    data = ArrayData()
    logits = np.zeros((len(data), 6), np.float32)
    with pytest.raises(UsageError, match="not the same model"):
        evaluate_accuracy(TableRunner(logits), data, 4,
                          reference_logits=np.zeros((len(data), 7), np.float32))


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "8"])
def test_bad_batch_size(bad) -> None:
    with pytest.raises(UsageError, match="positive integer"):
        evaluate_accuracy(TableRunner(np.zeros((1, 6))), ArrayData(), bad)


def test_prefetch_keeps_order_and_reraises() -> None:
    assert list(prefetch(iter(range(10)))) == list(range(10))

    def broken():
        yield 1
        raise DataError("disk vanished")

    with pytest.raises(DataError, match="disk vanished"):
        list(prefetch(broken()))


# --- a real labelled folder through open_dataset ---------------------------------------------

def test_known_answers_on_labelled_folder(tmp_path: Path) -> None:
    folder = cd.write_colour_folder(tmp_path / "colours")
    good = cd.write_model(tmp_path / "good.onnx", np.eye(3, dtype=np.float32))
    swapped = cd.write_model(tmp_path / "swapped.onnx", cd.SWAP_GREEN_BLUE)
    report = run_eval([swapped, good], EvalOptions(str(folder), batch_size=2),
                      RunnerOptions(threads=1))
    by_label = {e.label: e for e in report.entries}
    # Both are FP32: the first one given is the reference.
    assert report.reference == "swapped.onnx" and by_label["swapped.onnx"].reference
    good_acc = by_label["good.onnx"].accuracy
    assert good_acc.count == cd.COUNT and good_acc.correct1 == cd.CORRECT
    assert good_acc.top5 == 1.0  # three classes: top-5 holds them all
    assert by_label["swapped.onnx"].accuracy.correct1 == 2  # only the red images
    # Swapping green/blue moves two logits by 2 on the 5 green/blue images, none on red.
    assert good_acc.agreement_top1 == pytest.approx(2 / 7)
    assert good_acc.max_logit_diff == pytest.approx(2.0, abs=1e-5)
    assert good_acc.mean_logit_diff == pytest.approx(5 * 2 * 2 / (7 * 3), abs=1e-5)


def test_int8_artefact_is_compared_with_the_fp32_one(tmp_path: Path) -> None:
    folder = cd.write_colour_folder(tmp_path / "colours")
    fp32 = cd.write_model(tmp_path / "m.onnx", np.eye(3, dtype=np.float32))
    int8 = cd.write_model(tmp_path / "m.int8.onnx", np.eye(3, dtype=np.float32),
                          quantized=True)
    report = run_eval([int8, fp32], EvalOptions(str(folder)))
    assert report.reference == "m.onnx"
    q = report.entries[0]
    assert q.info.precision == "int8" and not q.reference
    assert q.accuracy.agreement_top1 == 1.0 and q.accuracy.correct1 == cd.CORRECT


def test_folder_without_labels_is_refused(tmp_path: Path) -> None:
    flat = cd.write_flat_folder(tmp_path / "flat")
    model = cd.write_model(tmp_path / "m.onnx", np.eye(3, dtype=np.float32))
    with pytest.raises(DataError, match="no labels"):
        run_eval([model], EvalOptions(str(flat)))


def test_artefact_without_preprocessing_is_refused(tmp_path: Path) -> None:
    folder = cd.write_colour_folder(tmp_path / "colours")
    model = cd.write_model(tmp_path / "bare.onnx", np.eye(3, dtype=np.float32),
                           manifest=False)
    with pytest.raises(UsageError, match="cannot tell how to preprocess"):
        run_eval([model], EvalOptions(str(folder)))


def test_too_few_classes_is_refused(tmp_path: Path) -> None:
    folder = cd.write_colour_folder(tmp_path / "colours")
    model = cd.write_model(tmp_path / "two.onnx", np.eye(3, 2, dtype=np.float32))
    with pytest.raises(DataError, match="predicts 2 classes"):
        run_eval([model], EvalOptions(str(folder)))


def test_open_runner_validates_every_artefact_first(tmp_path: Path) -> None:
    model = cd.write_model(tmp_path / "m.onnx", np.eye(3, dtype=np.float32))
    with pytest.raises(UsageError, match="does not exist"):
        run_eval([model, tmp_path / "missing.onnx"], EvalOptions("digits"))
    assert open_runner(model).info.extra["input_size"] == 32
