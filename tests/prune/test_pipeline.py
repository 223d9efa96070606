"""``prune``: saved widths reload, bad input is refused, pruned models prune again."""

from __future__ import annotations

import json

import pytest
import torch

from spartan_deploy.manifest import manifest_path
from spartan_deploy.data import DIGITS_DATA_CONFIG
from spartan_deploy.errors import OutputExistsError, UsageError
from spartan_deploy.model import LoadedModel, infer_config, load_model, read_checkpoint
from spartan_deploy.prune import Method, PruneOptions, Sparsity, is_two_four, prune


@pytest.fixture
def loaded(lively_tiny) -> LoadedModel:
    return LoadedModel("tiny", lively_tiny, DIGITS_DATA_CONFIG, None)


def test_saved_widths_reload_to_the_same_config_and_outputs(loaded, tmp_path):
    out = tmp_path / "pruned.pt"
    result = prune(loaded, PruneOptions(ratio=0.35), out)
    checkpoint = read_checkpoint(out)
    assert checkpoint.config == result.model.config and checkpoint.config.is_pruned
    assert checkpoint.config.block_widths != loaded.config.default_block_widths()
    assert infer_config(checkpoint.state_dict).block_widths == result.model.config.block_widths
    reloaded = load_model(weights=out).model
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), result.model(x), rtol=0, atol=0)
    manifest = json.loads(manifest_path(out).read_text())
    assert manifest["sha256"] == checkpoint.sha256
    figures = manifest["measurements"]
    assert figures["pruned"]["params"] == result.pruned.params < figures["before"]["params"]
    assert manifest["kind"] == "checkpoint" and manifest["stage"] == "prune"
    assert checkpoint.meta["width_ratio"] == pytest.approx(0.35)


def test_pruning_an_already_pruned_checkpoint_further(loaded, tmp_path):
    first = prune(loaded, PruneOptions(ratio=0.3), tmp_path / "a.pt")
    again = load_model(weights=tmp_path / "a.pt")
    second = prune(again, PruneOptions(ratio=0.3), tmp_path / "b.pt")
    assert second.before.params == first.pruned.params
    assert second.pruned.params < first.pruned.params
    assert second.pruned.macs < first.pruned.macs
    assert read_checkpoint(tmp_path / "b.pt").config == second.model.config


def test_target_macs_meets_the_target(loaded):
    full = prune(loaded, PruneOptions(ratio=0.01)).before.macs
    result = prune(loaded, PruneOptions(target_macs=int(full * 0.7)))
    assert result.pruned.macs <= full * 0.7
    assert result.pruned.macs >= full * 0.6


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.2, 1.5])
def test_ratio_outside_open_interval_is_refused(loaded, ratio, tmp_path):
    with pytest.raises(UsageError, match=f"--ratio {ratio}"):
        prune(loaded, PruneOptions(ratio=ratio), tmp_path / "x.pt")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("fields", [
    {},
    dict(ratio=0.3, target_macs=10**6),
    dict(ratio=0.3, finetune_epochs=1),
    dict(target_macs=-5),
])
def test_bad_option_combinations_are_refused(fields):
    with pytest.raises(UsageError):
        PruneOptions(**fields)


def test_target_macs_above_the_model_is_refused(loaded, tmp_path):
    with pytest.raises(UsageError, match="not below the model"):
        prune(loaded, PruneOptions(target_macs=10**12), tmp_path / "x.pt")
    assert not any(tmp_path.iterdir())


def test_existing_output_needs_force(loaded, tmp_path):
    out = tmp_path / "p.pt"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError):
        prune(loaded, PruneOptions(ratio=0.3), out)
    assert out.read_bytes() == b"keep me"
    prune(loaded, PruneOptions(ratio=0.3), out, force=True)
    assert read_checkpoint(out).config.is_pruned


def test_taylor_with_data_two_four_and_fine_tune(loaded, tmp_path):
    options = PruneOptions(ratio=0.3, method=Method.TAYLOR, data="digits", limit=64,
                           train_limit=64, calib_count=32, finetune_epochs=1,
                           sparsity=Sparsity.TWO_FOUR, batch_size=32)
    result = prune(loaded, options, tmp_path / "t.pt")
    assert result.before.top1 is not None and result.finetuned is not None
    assert result.sparsity is not None and result.sparsity.sparse_layers
    params = dict(result.model.named_parameters())
    assert all(is_two_four(params[f"{name}.weight"]) for name in result.sparsity.sparse_layers)
    saved = read_checkpoint(tmp_path / "t.pt")
    assert saved.meta["sparsity"]["layers"] == list(result.sparsity.sparse_layers)
    assert saved.metrics["finetuned"]["top1"] == result.finetuned.top1


def test_taylor_reads_a_calibration_folder(loaded, tmp_path):
    from PIL import Image

    from spartan_deploy.data import digit_pixels
    calib = tmp_path / "calib"
    calib.mkdir()
    for index in range(6):
        Image.fromarray(digit_pixels(index)).save(calib / f"{index}.png")
    result = prune(loaded, PruneOptions(ratio=0.3, method=Method.TAYLOR, calib=calib,
                                        calib_count=4))
    assert result.model.config.is_pruned


def test_taylor_without_images_uses_the_bundled_calibration_set(loaded):
    from spartan_deploy.prune.pipeline import _calibration
    batches = _calibration(loaded, PruneOptions(ratio=0.3, method=Method.TAYLOR,
                                                calib_count=5))
    assert sum(len(b) for b in batches) == 5


def test_fine_tune_refuses_a_folder_without_splits(loaded, tmp_path):
    from PIL import Image

    from spartan_deploy.data import digit_pixels
    from spartan_deploy.errors import DataError
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        Image.fromarray(digit_pixels(0)).save(tmp_path / label / "x.png")
    with pytest.raises(DataError):
        prune(loaded, PruneOptions(ratio=0.3, data=str(tmp_path), finetune_epochs=1))


def test_two_four_prefers_widths_its_kernels_accept():
    assert PruneOptions(ratio=0.3).multiple == 16
    assert PruneOptions(ratio=0.3, sparsity=Sparsity.TWO_FOUR).multiple == 32
    assert PruneOptions(ratio=0.3, sparsity=Sparsity.TWO_FOUR, channel_multiple=8).multiple == 8
