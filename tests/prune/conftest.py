"""Fixtures of the pruning tests: one torch thread (the machine is shared), pruned tiny models."""

from __future__ import annotations

import pytest
import torch

from spartan_deploy.model import ModelConfig, SpaRTAN


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _randomise_norms(model: SpaRTAN, seed: int) -> SpaRTAN:
    """Trained-looking BatchNorm statistics and layer scales, so every channel matters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
        for name, param in model.named_parameters():
            if name.endswith(("scale_1", "scale_2", "gamma")):
                param.copy_(torch.rand(param.shape, generator=generator) * 0.5 + 0.5)
    return model.eval()


@pytest.fixture
def lively_tiny(tiny_model) -> SpaRTAN:
    """The official tiny model with layer scales near 1: pruning errors show in its logits."""
    model = SpaRTAN(tiny_model.config)
    model.load_state_dict(tiny_model.state_dict())
    return _randomise_norms(model, 0)


@pytest.fixture
def grouped4_model() -> SpaRTAN:
    """Stages 3-4 with expand ratio 4: the grouped 3x3 conv has 4 channels per group."""
    config = ModelConfig(layer_depths=(1, 1, 1, 1), expand_ratios=(2, 2, 4, 4),
                         dims=(16, 32, 32), init_dim=16, num_classes=5)
    torch.manual_seed(3)
    return _randomise_norms(SpaRTAN(config), 1)
