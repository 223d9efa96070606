"""``train``: runs in seconds on a subset, is deterministic, fine-tunes, refuses overwrites."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spartan_deploy.data import DIGITS_DATA_CONFIG, open_dataset
from spartan_deploy.errors import DataError, OutputExistsError, UsageError
from spartan_deploy.model import read_checkpoint, save_checkpoint
from spartan_deploy.train import Augment, TrainOptions, evaluate_model, evaluate_predictions, train
from spartan_deploy.train.optim import augment_batch, make_optimizer, make_schedule
from spartan_deploy.train.setup import build_setup

from ..data.conftest import make_class_folder

QUICK = TrainOptions(epochs=1, batch_size=16, limit=64, eval_limit=48, threads=1, workers=0)


def test_one_epoch_on_a_subset(tmp_path: Path, tiny_yaml: str):
    out = tmp_path / "tiny.pt"
    result = train("digits", out, QUICK, model=tiny_yaml, command="spartan train ...")
    assert result.output == out and out.is_file()
    # The validation part (10% of the 64, seeded) is held out of training.
    assert result.train_count + result.val_count == 64 and result.val_count == 6
    assert result.test_count == 48
    checkpoint = read_checkpoint(out)
    assert checkpoint.config.layer_depths == (1, 1, 1, 1)
    assert checkpoint.data_config == DIGITS_DATA_CONFIG
    assert checkpoint.metrics["test_top1"] == pytest.approx(result.test.top1)
    assert checkpoint.metrics["val_top1"] == pytest.approx(result.best.val_top1)
    assert "validation" in checkpoint.metrics["selection"]
    assert checkpoint.meta["command"] == "spartan train ..." and checkpoint.meta["seed"] == 0
    assert all(v.dtype != torch.float64 for v in checkpoint.state_dict.values())
    # The saved weights are the ones that scored test_top1.
    test = open_dataset("digits", DIGITS_DATA_CONFIG, "test", limit=48, seed=0)
    assert evaluate_model(checkpoint.build_model(), test).top1 == result.test.top1


def test_same_seed_same_weights_other_seed_differs(tmp_path: Path, tiny_yaml: str):
    import dataclasses
    options = dataclasses.replace(QUICK, epochs=2)
    runs = [train("digits", tmp_path / f"{n}.pt", dataclasses.replace(options, seed=seed),
                  model=tiny_yaml) for n, seed in enumerate((5, 5, 6))]
    states = [read_checkpoint(r.output).state_dict for r in runs]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])
    assert runs[0].history == tuple(
        dataclasses.replace(s, seconds=a.seconds) for s, a in zip(runs[1].history,
                                                                  runs[0].history))


def test_existing_output_is_refused_untouched(tmp_path: Path, tiny_yaml: str):
    out = tmp_path / "exists.pt"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match="--force"):
        train("digits", out, QUICK, model=tiny_yaml)
    assert out.read_bytes() == b"keep me"
    train("digits", out, QUICK, model=tiny_yaml, force=True)
    assert read_checkpoint(out).config.num_classes == 10


def test_unknown_dataset_writes_nothing(tmp_path: Path, tiny_yaml: str):
    with pytest.raises(DataError, match="'mnist'"):
        train("mnist", tmp_path / "x.pt", QUICK, model=tiny_yaml)
    assert list(tmp_path.iterdir()) == [Path(tiny_yaml)]


def test_folder_without_splits_is_refused(tmp_path: Path, tiny_yaml: str):
    make_class_folder(tmp_path / "data", "train", per_class=2)
    with pytest.raises(DataError, match="needs train/ and val/"):
        train(tmp_path / "data", tmp_path / "x.pt", QUICK, model=tiny_yaml)


def test_fine_tune_with_a_new_head(tmp_path: Path, tiny_yaml: str):
    source = tmp_path / "digits.pt"
    train("digits", source, QUICK, model=tiny_yaml)
    data = tmp_path / "three"
    make_class_folder(data / "train", "train", per_class=6)
    make_class_folder(data / "val", "test", per_class=3)
    setup = build_setup(None, data, QUICK, weights=source)
    original = read_checkpoint(source).state_dict
    assert setup.new_head and setup.model.config.num_classes == 3
    assert torch.equal(setup.model.state_dict()["conv.0.conv.weight"],
                       original["conv.0.conv.weight"])
    result = train(data, tmp_path / "three.pt", QUICK, weights=source)
    checkpoint = read_checkpoint(result.output)
    assert checkpoint.config.num_classes == 3
    assert checkpoint.meta["init_weights"]["new_head"] is True
    assert checkpoint.metrics["class_names"] == ["0", "1", "2"]


def test_fine_tune_same_classes_keeps_the_head(tmp_path: Path, tiny_yaml: str):
    source = tmp_path / "digits.pt"
    train("digits", source, QUICK, model=tiny_yaml)
    setup = build_setup(tiny_yaml, "digits", QUICK, weights=source)
    assert not setup.new_head
    assert torch.equal(setup.model.state_dict()["linear.weight"],
                       read_checkpoint(source).state_dict["linear.weight"])


def test_bad_options_are_usage_errors():
    for bad in ({"epochs": 0}, {"batch_size": 1}, {"lr": 0.0}, {"label_smoothing": 1.0}):
        with pytest.raises(UsageError):
            TrainOptions(**bad)


def test_schedule_warms_up_then_decays():
    model = torch.nn.Linear(2, 2)
    options = TrainOptions(epochs=10, lr=1.0, min_lr=0.01, warmup_epochs=2)
    optimizer = make_optimizer(model, options)
    schedule = make_schedule(optimizer, options, steps_per_epoch=10)
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    peak = int(np.argmax(lrs))
    assert 15 <= peak <= 21 and lrs[0] < 0.1 and lrs[-1] < 0.05
    assert all(a <= b for a, b in zip(lrs[:peak], lrs[1:peak + 1]))
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1:]))


def test_shift_augmentation_is_seeded():
    images = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).reshape(2, 3, 32, 32)
    a = augment_batch(images, Augment.SHIFT, torch.Generator().manual_seed(1))
    b = augment_batch(images, Augment.SHIFT, torch.Generator().manual_seed(1))
    assert a.shape == images.shape and torch.equal(a, b)
    assert torch.equal(augment_batch(images, Augment.NONE, torch.Generator()), images)


def test_evaluate_predictions_counts_correctly():
    dataset = open_dataset("digits", DIGITS_DATA_CONFIG, "test", limit=40)
    labels = dataset.labels

    def oracle(images: np.ndarray, seen=[0]) -> np.ndarray:  # noqa: B006
        batch = labels[seen[0]:seen[0] + len(images)]
        seen[0] += len(images)
        logits = np.zeros((len(images), 10), np.float32)
        logits[np.arange(len(images)), batch] = 5.0
        logits[0, (batch[0] + 1) % 10] = 9.0  # first of each batch wrong (but in top 5)
        return logits

    result = evaluate_predictions(oracle, dataset, batch_size=16)
    assert result.count == 40 and result.correct == 37
    assert result.top1 == pytest.approx(37 / 40) and result.top5 == 1.0


def test_evaluate_needs_labels(tmp_path: Path, tiny_yaml: str):
    from ..data.conftest import write_digit
    write_digit(tmp_path / "flat" / "a.png", 0)
    dataset = open_dataset(tmp_path / "flat", DIGITS_DATA_CONFIG)
    with pytest.raises(DataError, match="has no labels"):
        evaluate_predictions(lambda x: x, dataset)


def test_save_checkpoint_roundtrip_keeps_training_metrics(tmp_path: Path, tiny_yaml: str):
    result = train("digits", tmp_path / "m.pt", QUICK, model=tiny_yaml)
    checkpoint = read_checkpoint(result.output)
    again = save_checkpoint(tmp_path / "copy.pt", checkpoint.build_model(), DIGITS_DATA_CONFIG,
                            checkpoint.metrics)
    assert read_checkpoint(again).metrics["history"][0]["epoch"] == 1


def test_epoch_is_chosen_on_validation_never_on_test(tmp_path: Path, tiny_yaml: str):
    import dataclasses
    options = dataclasses.replace(QUICK, epochs=3)
    result = train("digits", tmp_path / "v.pt", options, model=tiny_yaml)
    best_by_val = max(result.history, key=lambda s: (s.val_top1, -s.val_loss))
    assert result.best == best_by_val
    # History carries no test figure: the test split is scored once, after training.
    assert all(not k.startswith("test") for k in result.history[0].to_dict())


def test_validation_part_is_disjoint_and_seeded():
    from spartan_deploy.data.dataset import split_validation
    train = open_dataset("digits", DIGITS_DATA_CONFIG, "train")
    fit, val = split_validation(train, 0.1, seed=0)
    again_fit, again_val = split_validation(train, 0.1, seed=0)
    assert set(fit.items).isdisjoint(val.items)
    assert len(fit) + len(val) == len(train) and len(val) == round(0.1 * len(train))
    assert val.items == again_val.items and fit.items == again_fit.items
    assert split_validation(train, 0.1, seed=1)[1].items != val.items


def test_bundled_calibration_avoids_validation_and_test():
    from spartan_deploy.data import digits_split
    from spartan_deploy.data.calib import calibration_indices, validation_indices
    calib = set(calibration_indices().tolist())
    assert calib.isdisjoint(validation_indices().tolist())
    assert calib.isdisjoint(digits_split("test").tolist())
