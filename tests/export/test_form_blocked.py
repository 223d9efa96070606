"""The CPU-friendly pair placement (PairMode.AUTO): 16-channel groups, parity unchanged.

ONNX Runtime keeps a conv in its blocked NCHWc layout only when each group's input and output
widths are multiples of its block (16 on AVX-512, 8 on AVX2); OpenVINO's fast grouped kernels
want the same. These tests pin that structure and that it changes no result.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from spartan_deploy.evaluation import compare
from spartan_deploy.export import ExportOptions, PairMode, export_onnx, to_export_form
from spartan_deploy.onnx_checks import check_tensorrt_ops
from spartan_deploy.export.form import BLOCK_WIDTH, PairPlan, plan_pair
from spartan_deploy.model import LoadedModel, ModelConfig, SpaRTAN
from spartan_deploy.runtime.ort_session import SessionSpec, open_session
from tests.export.helpers import pruned_config, randomise


@pytest.mark.parametrize(("neck", "groups", "plan"), [
    (128, 128, PairPlan(128, 8)),  # spartan-t stage 1: depthwise stays, 16-wide 1x1 pair conv
    (512, 256, PairPlan(32, None)),  # stage 4: folded into the 3x3 conv, 16-wide groups
    (48, 24, PairPlan(3, None)),  # a pruned neck that is still a multiple of 16
    (54, 18, PairPlan(18, 27)),  # 54 % 16 != 0: the grouped placement (conv1x1 here)
    (40, 40, PairPlan(40, 20)),  # 40 % 16 != 0, depthwise: grouped 1x1 pair conv
    (48, 16, PairPlan(16, 24)),  # 3 channels per group: cannot be blocked, nor folded free
])
def test_auto_plan(neck, groups, plan):
    assert plan_pair(PairMode.AUTO, neck, groups) == plan


@pytest.mark.parametrize(("neck", "groups", "plan"), [
    (128, 128, PairPlan(128, 64)), (512, 256, PairPlan(256, None)), (54, 18, PairPlan(18, 27))])
def test_grouped_plan_is_the_previous_default(neck, groups, plan):
    assert plan_pair(PairMode.GROUPED, neck, groups) == plan


def _pair_convs(form: nn.Module) -> list[nn.Conv2d]:
    """The convs that carry the pair map: each wave mixer's pair conv and 3x3 conv."""
    convs = []
    for module in form.modules():
        if module.__class__.__name__ == "ExportCMixer":
            convs.append(module.conv[0])
            if isinstance(module.pair, nn.Conv2d):
                convs.append(module.pair)
    return convs


def _blocked_or_depthwise(conv: nn.Conv2d) -> bool:
    per_group_in = conv.in_channels // conv.groups
    per_group_out = conv.out_channels // conv.groups
    depthwise = conv.groups == conv.in_channels == conv.out_channels
    return depthwise or (per_group_in % BLOCK_WIDTH == 0 and per_group_out % BLOCK_WIDTH == 0)


def test_tiny_model_pair_convs_keep_the_blocked_layout(tiny_model):
    form = to_export_form(tiny_model)  # necks 64..256: every block can be blocked
    convs = _pair_convs(form)
    assert convs and all(_blocked_or_depthwise(c) for c in convs)
    # the previous placement had 2-channel groups, which both runtimes run slowly
    grouped = _pair_convs(to_export_form(tiny_model, PairMode.GROUPED))
    assert not all(_blocked_or_depthwise(c) for c in grouped)


def test_pruned_widths_fall_back_where_they_must():
    model = randomise(SpaRTAN(pruned_config()), seed=6)
    form = to_export_form(model)
    necks = [b.cmixer.conv.conv.out_channels for b in model.blocks()]
    for neck, mixer in zip(necks, (m for m in form.modules()
                                   if m.__class__.__name__ == "ExportCMixer")):
        convs = [mixer.conv[0]] + ([mixer.pair] if isinstance(mixer.pair, nn.Conv2d) else [])
        assert all(_blocked_or_depthwise(c) for c in convs) == (neck % BLOCK_WIDTH == 0)


def _sixteen_wide_config() -> ModelConfig:
    """A small model whose necks are multiples of 16 (so AUTO blocks every block)."""
    return ModelConfig(layer_depths=(1, 1, 2, 1), expand_ratios=(4, 4, 2, 2),
                       dims=(32, 64, 64), init_dim=16, num_classes=5)


def test_exported_blocked_graph_parity_and_tensorrt_ops(tmp_path):
    model = randomise(SpaRTAN(_sixteen_wide_config()), seed=7)
    loaded = LoadedModel("blocked", model, _data_config(32))
    result = export_onnx(loaded, tmp_path / "model.onnx", ExportOptions(img_size=32))
    graph = onnx.load(result.path)
    check_tensorrt_ops(graph)  # no Transpose, every op on the TensorRT parser's list
    assert _grouped_conv_widths(graph) == {BLOCK_WIDTH}
    x = np.random.default_rng(8).standard_normal((3, 3, 32, 32)).astype(np.float32)
    session = open_session(result.path, SessionSpec(threads=1))
    (logits,) = session.run(None, {"input": x})
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()
    assert np.abs(reference).max() > 1e-2  # non-trivial logits
    assert compare(reference, logits).max_abs_diff <= 1e-5


def _grouped_conv_widths(graph: onnx.ModelProto) -> set[int]:
    """Input channels per group of every grouped conv that is not depthwise."""
    dims = {i.name: list(i.dims) for i in graph.graph.initializer}
    widths = set()
    for node in graph.graph.node:
        groups = next((a.i for a in node.attribute if a.name == "group"), 1)
        if node.op_type == "Conv" and groups > 1 and dims[node.input[1]][1] > 1:
            widths.add(dims[node.input[1]][1])
    return widths


def _data_config(size: int):
    from spartan_deploy.data import DIGITS_DATA_CONFIG

    return DIGITS_DATA_CONFIG.with_input_size(size)
