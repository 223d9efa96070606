"""The export form: parity with the training form, real arithmetic only, any widths."""

from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode

from spartan_deploy.errors import ExportError
from spartan_deploy.export import PairMode, to_export_form
from spartan_deploy.export.form import pair_fold_groups, pair_matrix
from spartan_deploy.model import ModelConfig, SpaRTAN, resolve_model
from tests.export.helpers import pruned_config, randomise


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.mark.parametrize("mode", list(PairMode))
def test_official_fixture_parity(tiny_model, official_fixture, mode):
    form = to_export_form(tiny_model, mode)
    x = official_fixture["input"]
    with torch.no_grad():
        exported, training = form(x), tiny_model(x)
    assert _max_diff(exported, training) <= 1e-5
    assert _max_diff(exported, official_fixture["logits"]) <= 1e-5


def test_spartan_t_random_weights_parity_at_224():
    torch.manual_seed(0)
    model = randomise(SpaRTAN(resolve_model("spartan-t").model), seed=1)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        training = model(x)
        exported = to_export_form(model)(x)
    assert training.abs().max() > 1e-2  # the weights are not trivially small
    assert _max_diff(exported, training) <= 1e-5


@pytest.mark.parametrize("mode", list(PairMode))
def test_pruned_non_uniform_widths(mode):
    model = randomise(SpaRTAN(pruned_config()), seed=3)
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert _max_diff(to_export_form(model, mode)(x), model(x)) <= 1e-5


def test_no_complex_arithmetic_and_training_model_untouched(tiny_model, official_fixture):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    form = to_export_form(tiny_model)
    called: set[str] = set()

    class Recorder(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            called.add(getattr(func, "__name__", str(func)))
            return func(*args, **(kwargs or {}))

    with torch.no_grad(), Recorder():
        out = form(official_fixture["input"])
    assert not out.is_complex()
    assert not {"view_as_complex", "view_as_real", "permute", "transpose"} & called
    assert all(not p.is_complex() and p.dtype == torch.float32
               for p in list(form.parameters()) + list(form.buffers()))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in form.modules())
    assert all(torch.equal(before[k], v) for k, v in tiny_model.state_dict().items())
    assert tiny_model.training is False


def test_pair_matrix_is_the_complex_product():
    weight = torch.randn(1, 1, 1, 3, 2)
    values = torch.randn(6, dtype=torch.float64)
    expected = torch.view_as_real(torch.view_as_complex(values.view(3, 2))
                                  * torch.view_as_complex(weight.double().view(3, 2)))
    assert torch.allclose(pair_matrix(weight) @ values, expected.reshape(-1))


@pytest.mark.parametrize(("neck", "groups", "expected"),
                         [(64, 64, 32), (64, 32, 32), (54, 18, 9), (60, 20, 10), (8, 1, 1)])
def test_pair_fold_groups(neck, groups, expected):
    assert pair_fold_groups(neck, groups) == expected


def test_feature_decomposition_near_minus_one_keeps_explicit_form():
    model = randomise(SpaRTAN(pruned_config()), seed=5)
    with torch.no_grad():
        model.blocks()[0].smixer.gamma.fill_(-1.0)  # 1 + gamma = 0: cannot be folded
    form = to_export_form(model)
    assert form.layers[0].smixer.folded is False
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert _max_diff(form(x), model(x)) <= 1e-5


def test_rejects_non_finite_weights_and_other_modules():
    model = SpaRTAN(ModelConfig(layer_depths=(1, 1, 1, 1), dims=(16, 16, 16), init_dim=8,
                                num_classes=3))
    with torch.no_grad():
        model.linear.weight[0, 0] = float("nan")
    with pytest.raises(ExportError, match="linear.weight"):
        to_export_form(model)
    with pytest.raises(ExportError, match="SpaRTAN"):
        to_export_form(torch.nn.Linear(2, 2))
