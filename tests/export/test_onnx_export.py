"""export_onnx: verified graph, ORT parity, TensorRT operator list, manifest, bad input."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from spartan_deploy.errors import ExportError, OutputExistsError, ParityError, UsageError
from spartan_deploy.export import (
    ExportOptions, export_onnx, onnx_export, to_export_form)
from spartan_deploy.onnx_checks import check_dtypes, check_tensorrt_ops, tensorrt_ops
from spartan_deploy.model import DataConfig, LoadedModel, SpaRTAN, load_model, save_checkpoint
from tests.export.helpers import pruned_config, randomise


@pytest.fixture(scope="module")
def tiny_loaded(tiny_model, tmp_path_factory):
    """The official tiny model, saved as our checkpoint and loaded back (64x64 inputs)."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, tiny_model, DataConfig(input_size=64, resize_size=64))
    return load_model(weights=path)


@pytest.fixture(scope="module")
def official_loaded(official_fixture, tmp_path_factory):
    """The fixture's weights as an official training checkpoint with a DDP prefix."""
    path = tmp_path_factory.mktemp("official") / "official.pth"
    state = {f"module.{k}": v for k, v in official_fixture["state_dict"].items()}
    torch.save({"epoch": 3, "model": state, "optim": {}}, path)
    return load_model(weights=path)


@pytest.fixture(scope="module")
def tiny_export(official_loaded, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    return export_onnx(official_loaded, out, ExportOptions(img_size=64))


def _run(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": x})[0]


def test_onnx_matches_official_logits_at_batch_1_and_7(tiny_export, official_fixture):
    x = official_fixture["input"].numpy()
    logits = official_fixture["logits"].numpy()
    batch7 = np.concatenate([x, x[:3]])
    expected7 = np.concatenate([logits, logits[:3]])
    assert np.abs(_run(tiny_export.path, batch7) - expected7).max() <= 1e-4
    assert np.abs(_run(tiny_export.path, x[2:3]) - logits[2:3]).max() <= 1e-4


def test_graph_is_real_valued_and_on_the_tensorrt_list(tiny_export):
    model = onnx.load(tiny_export.path)
    ops = {n.op_type for n in model.graph.node}
    assert "Transpose" not in ops
    assert ops <= tensorrt_ops().supported
    assert {"ArgMax", "GatherElements", "Conv"} <= ops
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "ArgMax":
            assert attrs.get("keepdims", 1) == 1 and attrs.get("select_last_index", 0) == 0
            assert attrs["axis"] == 1
        if node.op_type == "GatherElements":
            assert attrs["axis"] == 1
    bad = {TensorProto.COMPLEX64, TensorProto.COMPLEX128, TensorProto.DOUBLE}
    values = list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)
    assert all(v.type.tensor_type.elem_type not in bad for v in values)
    assert all(t.data_type not in bad for t in model.graph.initializer)
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "input" and out.name == "logits"
    assert inp.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim[1:]] == [3, 64, 64]


def test_manifest_records_source_options_versions_and_parity(tiny_export, official_loaded):
    manifest = json.loads(tiny_export.manifest_path.read_text())
    assert manifest == tiny_export.manifest.to_dict()
    assert manifest["schema"] == "spartan-deploy/manifest/2" and manifest["stage"] == "export"
    assert manifest["parent"]["sha256"] == official_loaded.weights_sha256
    assert manifest["checkpoint_sha256"] == hashlib.sha256(
        official_loaded.weights_path.read_bytes()).hexdigest()
    parent = tiny_export.path.parent / manifest["parent"]["path"]
    assert parent.resolve() == official_loaded.weights_path.resolve()
    assert manifest["details"]["checkpoint_format"] == "official"
    assert manifest["sha256"] == hashlib.sha256(tiny_export.path.read_bytes()).hexdigest()
    assert manifest["config"] == official_loaded.config.to_dict()
    assert manifest["data_config"]["input_size"] == 64
    assert manifest["details"]["opset"] == 17 and manifest["options"]["fmt"] == "onnx"
    assert {"torch", "onnx", "onnxruntime"} <= set(manifest["versions"])
    assert manifest["io"]["inputs"][0] == {"name": "input", "shape": ["batch", 3, 64, 64],
                                           "dtype": "float32"}
    parity = manifest["measurements"]["parity"]
    assert 0 <= parity["max_abs_diff"] <= 1e-4 and parity["top1_agreement"] == 1.0
    leftovers = [p.name for p in tiny_export.path.parent.iterdir()]
    assert sorted(leftovers) == ["model.onnx", "model.onnx.json"]


def test_pruned_shape_model_exports_with_parity(tmp_path):
    model = randomise(SpaRTAN(pruned_config()), seed=7)
    loaded = LoadedModel("pruned", model, DataConfig(input_size=64, resize_size=64))
    result = export_onnx(loaded, tmp_path / "pruned.onnx", ExportOptions(batch=3))
    assert result.parity.max_abs_diff <= 1e-4
    graph = onnx.load(result.path)
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 3
    x = np.random.default_rng(0).standard_normal((3, 3, 64, 64), dtype=np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    assert np.abs(_run(result.path, x) - expected).max() <= 1e-4


def test_opset_18_exports_and_checks(tiny_loaded, tmp_path):
    """From opset 18 ReduceMean takes its axes as an input (TensorRT wants it constant)."""
    result = export_onnx(tiny_loaded, tmp_path / "m.onnx", ExportOptions(opset=18))
    assert onnx.load(result.path).opset_import[0].version == 18
    assert result.parity.max_abs_diff <= 1e-4


def _tamper(monkeypatch):
    """Make the exporter hand back a graph whose head weights are off by 10%."""
    original = onnx_export._export_graph

    def tampered(*args, **kwargs):
        graph = original(*args, **kwargs)
        gemm = next(n for n in graph.graph.node if n.op_type == "Gemm")
        init = next(t for t in graph.graph.initializer if t.name == gemm.input[1])
        values = onnx.numpy_helper.to_array(init) * 1.1
        init.CopyFrom(onnx.numpy_helper.from_array(values.astype(np.float32), init.name))
        return graph

    monkeypatch.setattr(onnx_export, "_export_graph", tampered)


def test_tampered_graph_fails_parity_and_writes_nothing(tiny_loaded, tmp_path, monkeypatch):
    _tamper(monkeypatch)
    with pytest.raises(ParityError, match="max abs logit difference"):
        export_onnx(tiny_loaded, tmp_path / "out" / "model.onnx", ExportOptions())
    assert not any((tmp_path / "out").iterdir())


def test_simplified_graph_dropped_when_it_breaks_parity(tiny_loaded, tmp_path, monkeypatch):
    import onnxslim

    def bad_slim(model):
        gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
        init = next(t for t in model.graph.initializer if t.name == gemm.input[2])
        init.CopyFrom(onnx.numpy_helper.from_array(
            onnx.numpy_helper.to_array(init) + np.float32(1.0), init.name))
        return model

    monkeypatch.setattr(onnxslim, "slim", bad_slim)
    result = export_onnx(tiny_loaded, tmp_path / "model.onnx", ExportOptions())
    assert result.simplified is False and result.parity.max_abs_diff <= 1e-4


@pytest.mark.parametrize(("fields", "match"), [
    (dict(opset=11), "--opset 11"),
    (dict(opset=21), "--opset 21"),
    (dict(fmt="tflite"), "--fmt 'tflite'"),
    (dict(batch=0), "--batch 0"),
    (dict(img_size=16), "--img-size 16"),
    (dict(atol=0.0), "--atol"),
])
def test_bad_options_are_one_line_usage_errors(fields, match):
    with pytest.raises(UsageError, match=match) as err:
        ExportOptions(**fields)
    assert "\n" not in str(err.value)


def test_unwritable_output_leaves_nothing(tiny_loaded, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(UsageError, match="cannot create output folder"):
        export_onnx(tiny_loaded, blocker / "model.onnx", ExportOptions())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-folder"]


def test_existing_output_needs_force(tiny_loaded, tmp_path):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"old")
    with pytest.raises(OutputExistsError, match="--force"):
        export_onnx(tiny_loaded, out, ExportOptions())
    assert out.read_bytes() == b"old"
    export_onnx(tiny_loaded, out, ExportOptions(simplify=False), force=True)
    assert onnx.load(out).graph.output[0].name == "logits"


def _graph(node, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph([node], "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _value(name, elem=TensorProto.FLOAT, shape=(1, 4, 2, 2)):
    return helper.make_tensor_value_info(name, elem, shape)


@pytest.mark.parametrize(("node", "match"), [
    (helper.make_node("Transpose", ["x"], ["y"], perm=[0, 1, 3, 2]), "Transpose"),
    (helper.make_node("Unique", ["x"], ["y"]), "Unique"),
    (helper.make_node("Gelu", ["x"], ["y"], domain="com.microsoft"), "com.microsoft"),
    (helper.make_node("ArgMax", ["x"], ["y"], axis=1, select_last_index=1),
     "select_last_index"),
])
def test_operator_check_rejects_what_tensorrt_cannot_parse(node, match):
    with pytest.raises(ExportError, match=match):
        check_tensorrt_ops(_graph(node, [_value("x")], [_value("y")]))


@pytest.mark.parametrize("elem", [TensorProto.COMPLEX64, TensorProto.DOUBLE])
def test_dtype_check_rejects_complex_and_double(elem):
    node = helper.make_node("Identity", ["x"], ["y"])
    with pytest.raises(ExportError, match="complex64|double"):
        check_dtypes(_graph(node, [_value("x", elem)], [_value("y", elem)]))


def test_export_form_is_what_gets_exported(tiny_export, official_loaded):
    """Same ops as the export form implies: no BatchNormalization, folded pair maps."""
    ops = tiny_export.operators
    assert "BatchNormalization" not in ops and "InstanceNormalization" not in ops
    form = to_export_form(official_loaded.model)
    convs = sum(1 for m in form.modules() if m.__class__.__name__ == "Conv2d")
    assert ops["Conv"] == convs


@pytest.mark.slow
def test_dynamo_exporter_gives_a_checked_graph_too(tiny_loaded, tmp_path):
    options = ExportOptions(exporter="dynamo", opset=18)
    result = export_onnx(tiny_loaded, tmp_path / "dynamo.onnx", options)
    assert result.parity.max_abs_diff <= 1e-4
    assert "Transpose" not in result.operators
    assert result.manifest.details["export_form"]["exporter"] == "dynamo"
