"""The accuracy budget on a case that needs a fallback.

The fragile case is built by hand: in front of one quantized 1x1 conv, channel 0 of its input
is multiplied by 300 and the conv's weights for that channel divided by 300. The float
function is unchanged, but the per-tensor activation range now spans 300x the other
channels, so INT8 wipes them out. Labels are the FP32 predictions (FP32 top-1 = 100%), so
the drop is INT8's alone. Only that conv and two harmless ones are quantized.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from spartan_deploy.errors import QuantizationError
from spartan_deploy.quantize import QuantizeOptions, Target, graph, quantize_onnx
from spartan_deploy.quantize.budget import enforce_budget
from spartan_deploy.evaluation import load_eval_data
from spartan_deploy.quantize.core import graph_logits

OUTLIER = 300.0
FRAGILE = "/layers/layers.0/smixer/proj_out/Conv"
HARMLESS = ("/layers/layers.2/smixer/proj_in/Conv", "/layers/layers.0/cmixer/theta/Conv")
LABELLED = 60


def _make_fragile(source: Path, target: Path) -> None:
    model = onnx.load(source)
    conv = next(n for n in model.graph.node if n.name == FRAGILE)
    weight = next(i for i in model.graph.initializer if i.name == conv.input[1])
    values = numpy_helper.to_array(weight).copy()
    scale = np.ones((1, values.shape[1], 1, 1), np.float32)
    scale[0, 0] = OUTLIER
    values[:, 0] /= OUTLIER
    weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    model.graph.initializer.append(numpy_helper.from_array(scale, "outlier_scale"))
    mul = helper.make_node("Mul", [conv.input[0], "outlier_scale"], ["outlier_out"],
                           name="outlier_mul")
    conv.input[0] = "outlier_out"
    model.graph.node.insert(list(model.graph.node).index(conv), mul)
    onnx.save(model, target)
    target.with_name(target.name + ".json").write_bytes(
        source.with_name(source.name + ".json").read_bytes())


@pytest.fixture(scope="module")
def fragile_case(q_onnx_dir, tmp_path_factory):
    from spartan_deploy.data import DIGITS_DATA_CONFIG, digit_image, digits_split

    root = tmp_path_factory.mktemp("budget")
    path = root / "fragile.onnx"
    _make_fragile(q_onnx_dir / "model.onnx", path)
    indices = digits_split("test")[:LABELLED]
    digits = load_eval_data("digits", DIGITS_DATA_CONFIG, "test", require_labels=True)
    predicted = graph_logits(onnx.load(path), digits.images[:LABELLED]).argmax(1)
    for label in range(10):  # every class folder, so folder order gives the digit labels
        (root / "data" / str(label)).mkdir(parents=True)
    for index, label in zip(indices, predicted):
        digit_image(int(index)).save(root / "data" / str(label) / f"{int(index)}.png")
    convs = [n.name for n in onnx.load(path).graph.node if n.op_type == "Conv"]
    exclude = tuple(c for c in convs if c not in (FRAGILE, *HARMLESS))
    return path, root / "data", exclude


def _options(data: Path, exclude: tuple[str, ...], max_drop: float | None) -> QuantizeOptions:
    return QuantizeOptions(target=Target.CPU, method="max", data=str(data), exclude=exclude,
                           max_drop=max_drop)


def test_fragile_layer_breaks_int8_without_a_budget(fragile_case, calib_dir, tmp_path) -> None:
    path, data, exclude = fragile_case
    result = quantize_onnx(path, calib_dir, _options(data, exclude, None), tmp_path / "a.onnx")
    assert result.fp32_top1 == 1.0
    assert result.int8_top1 < 0.9  # the outlier channel wipes out the others
    assert FRAGILE in result.quantized_nodes and result.budget is None


def test_budget_returns_the_fragile_layer_to_float(fragile_case, calib_dir, tmp_path) -> None:
    path, data, exclude = fragile_case
    result = quantize_onnx(path, calib_dir, _options(data, exclude, 10.0), tmp_path / "b.onnx")
    budget = result.budget
    assert budget is not None and budget.met
    assert budget.int8_top1_before < 90.0 <= budget.int8_top1
    # The unit holding the fragile conv is ranked worst and goes back to float first.
    from spartan_deploy.debug import block_map_of
    worst = budget.sensitivity[0]["unit"]
    assert FRAGILE in block_map_of(onnx.load(path)).nodes[worst]
    assert budget.steps[0]["returned"] == worst and FRAGILE in budget.returned_to_float
    assert 100 * (result.fp32_top1 - result.int8_top1) <= 10.0
    assert FRAGILE not in result.quantized_nodes
    assert result.excluded["budget"] == list(budget.returned_to_float)
    manifest = result.manifest
    recorded = manifest.measurements["budget"]
    assert FRAGILE in recorded["returned_to_float"] and recorded["met"]
    model = onnx.load(result.path)
    conv = next(n for n in model.graph.node if n.name == FRAGILE)
    producer = {o: n.op_type for n in model.graph.node for o in n.output}
    assert all(producer.get(i) != "DequantizeLinear" for i in conv.input)


def test_budget_already_met_changes_nothing(fragile_case, calib_dir, tmp_path) -> None:
    path, data, exclude = fragile_case
    result = quantize_onnx(path, calib_dir, _options(data, exclude, 100.0), tmp_path / "c.onnx")
    assert result.budget.met and result.budget.returned_to_float == ()
    assert FRAGILE in result.quantized_nodes


def test_budget_says_plainly_when_it_cannot(fragile_case, calib_dir, tmp_path) -> None:
    """A re-quantization that keeps giving back the broken graph can never meet the budget:
    the loop gives up with a one-line error instead of looping or writing anything."""
    path, data, exclude = fragile_case
    broken = quantize_onnx(path, calib_dir, _options(data, exclude, None), tmp_path / "d.onnx")
    model, source = onnx.load(broken.path), onnx.load(path)
    from spartan_deploy.data import DIGITS_DATA_CONFIG

    labelled = load_eval_data(str(data), DIGITS_DATA_CONFIG, "test", require_labels=True)
    fp32 = graph_logits(source, labelled.images)
    with pytest.raises(QuantizationError, match=r"cannot meet --max-drop 10.*nothing was written"):
        enforce_budget(model, source, lambda extra: model, labelled, fp32, 10.0)
    # bypassing the fragile layer alone is what the loop relies on
    fixed = graph.bypass_qdq(model, [FRAGILE], source)
    agree = (graph_logits(fixed, labelled.images).argmax(1) == labelled.labels).mean()
    assert agree >= 0.9
