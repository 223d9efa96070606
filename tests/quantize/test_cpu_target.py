"""--target cpu end to end: placement, float parts, figures, manifest, cache, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from typer.testing import CliRunner

from spartan_deploy._io import sha256_file
from spartan_deploy.manifest import read_manifest
from spartan_deploy.cli import app
from spartan_deploy.errors import OutputExistsError, QuantizationError
from spartan_deploy.quantize import QuantizeOptions, Target, graph, quantize_onnx


def _groups(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "group"), 1)


def _plain_or_depthwise(model: onnx.ModelProto, node: onnx.NodeProto) -> bool:
    dims = {i.name: list(i.dims) for i in model.graph.initializer}
    return _groups(node) == 1 or dims[node.input[1]][1] == 1


def _reads_dq(model: onnx.ModelProto, node: onnx.NodeProto, int8: set[str]) -> bool:
    """Reads a dequantized tensor other than the requantized output of an INT8 conv (that
    output only exists as INT8 at run time: DQ -> Conv -> Q runs as one QLinearConv)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    for tensor in node.input:
        dq = producer.get(tensor)
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        q = producer.get(dq.input[0])
        maker = producer.get(q.input[0]) if q is not None else None
        if maker is None or maker.name not in int8:
            return True
    return False


def _activation_scales(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return {n.input[0]: inits[n.input[1]] for n in model.graph.node
            if n.op_type == "QuantizeLinear" and n.input[0] not in inits}


def test_only_plain_and_depthwise_convs_are_int8(cpu_run, q_onnx_dir) -> None:
    model = onnx.load(cpu_run.path)
    nodes = {n.name: n for n in model.graph.node}
    assert cpu_run.quantized_nodes
    for name in cpu_run.quantized_nodes:
        assert nodes[name].op_type == "Conv"
    source = onnx.load(q_onnx_dir / "model.onnx")
    plain = [n.name for n in source.graph.node
             if n.op_type == "Conv" and _plain_or_depthwise(source, n)]
    assert any(_groups(nodes[n]) > 1 for n in cpu_run.quantized_nodes)  # depthwise ones
    fragile = {n for names in graph.find_fragile(source).values() for n in names}
    assert set(cpu_run.quantized_nodes) == set(plain) - fragile


def test_qdq_counts_match_the_quantized_convs(cpu_run) -> None:
    model = onnx.load(cpu_run.path)
    nodes = {n.name: n for n in model.graph.node}
    inits = {i.name for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    convs = [nodes[n] for n in cpu_run.quantized_nodes]
    inputs, outputs = set(), set()
    for conv in convs:
        dq = producer[conv.input[0]]
        inputs.add(producer[dq.input[0]].input[0])  # DQ <- Q <- the float tensor
        outputs.update(conv.output)
    quantized_tensors = {n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    # every quantized conv reads an INT8 input, and no Q/DQ sits anywhere else (a conv
    # output keeps its Q/DQ only where an INT8 conv reads it)
    assert inputs <= quantized_tensors <= inputs | outputs
    assert cpu_run.qdq["activation_qdq_pairs"] == len(quantized_tensors)
    constants = sum(1 for c in convs for t in c.input[1:]
                    if t and producer[t].op_type == "DequantizeLinear"
                    and producer[t].input[0] in inits)
    assert cpu_run.qdq["weight_dequantize"] == constants >= len(convs)


def test_weights_int8_per_channel_activations_uint8(cpu_run) -> None:
    model = onnx.load(cpu_run.path)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    conv = next(n for n in model.graph.node if n.name == cpu_run.quantized_nodes[0])
    weight_dq = producer[conv.input[1]]
    assert inits[weight_dq.input[0]].dtype == np.int8
    assert inits[weight_dq.input[1]].shape == (inits[weight_dq.input[0]].shape[0],)
    act_q = producer[producer[conv.input[0]].input[0]]
    assert inits[act_q.input[2]].dtype == np.uint8


def test_fragile_and_grouped_parts_stay_float(cpu_run, q_onnx_dir) -> None:
    model = onnx.load(cpu_run.path)
    nodes = {n.name: n for n in model.graph.node}
    int8 = set(cpu_run.quantized_nodes)
    for kind in ("se_gate", "superposition", "head", "cpu_int8_slower"):
        assert cpu_run.excluded[kind], kind
        for name in cpu_run.excluded[kind]:
            assert not _reads_dq(model, nodes[name], int8), f"{kind}: {name} reads a DQ output"
    producer = {o: n.op_type for n in model.graph.node for o in n.output}
    argmax = [n for n in model.graph.node if n.op_type == "ArgMax"]
    assert argmax and all(producer[n.input[0]] != "DequantizeLinear" for n in argmax)
    source = onnx.load(q_onnx_dir / "model.onnx")
    grouped = [n.name for n in source.graph.node
               if n.op_type == "Conv" and not _plain_or_depthwise(source, n)]
    assert grouped and set(grouped) == set(cpu_run.excluded["cpu_int8_slower"])


def test_figures_and_manifest(cpu_run, q_onnx_dir, calib_dir) -> None:
    recorded = read_manifest(cpu_run.path)
    assert recorded == cpu_run.manifest
    manifest = recorded.to_dict()
    assert cpu_run.manifest_path == cpu_run.path.with_name(cpu_run.path.name + ".json")
    assert manifest["parent"]["sha256"] == sha256_file(q_onnx_dir / "model.onnx")
    assert manifest["stage"] == "quantize" and manifest["precision"] == "int8"
    assert manifest["options"]["target"] == "cpu" and manifest["details"]["target"] == "cpu"
    # The lineage reaches back to the checkpoint the export recorded.
    assert manifest["checkpoint_sha256"] == read_manifest(
        q_onnx_dir / "model.onnx").checkpoint_sha256
    details = manifest["details"]
    calib = details["calibration"]
    total = len(list(calib_dir.glob("*.png")))
    assert calib["images"] + calib["held_out"] == total and len(calib["files"]) == calib["images"]
    assert all(len(f["sha256"]) == 64 for f in calib["files"])
    assert details["quantized_nodes"] == list(cpu_run.quantized_nodes)
    assert set(details["excluded_nodes"]) >= {"se_gate", "superposition", "head"}
    holdout = cpu_run.holdout
    assert holdout.samples == calib["held_out"] > 0
    assert 0.0 <= holdout.top1_agreement <= 1.0 and holdout.max_abs_diff >= holdout.mean_abs_diff
    assert 0.0 < holdout.cosine < 1.0 and holdout.sqnr_db > 0
    assert cpu_run.data.samples == 48 and cpu_run.fp32_top1 is not None
    figures = manifest["measurements"]
    assert figures["drop_points"] == pytest.approx(
        100 * (cpu_run.fp32_top1 - cpu_run.int8_top1), abs=1e-3)
    assert manifest["versions"]["onnxruntime"]


def test_int8_output_runs_close_to_fp32(cpu_run) -> None:
    # quantization error is non-zero but bounded: the graph really is INT8 and still sane
    assert 0.0 < cpu_run.holdout.mean_abs_diff < 1.0


def test_cache_is_reused_and_no_cache_recomputes(q_onnx: Path, calib_dir: Path) -> None:
    opts = QuantizeOptions(target=Target.CPU, method="max")
    first = quantize_onnx(q_onnx, calib_dir, opts, q_onnx.with_name("a.onnx"))
    assert not first.cache_hit and first.cache_path.is_file()
    assert first.cache_path.parent == q_onnx.parent / ".cache"
    second = quantize_onnx(q_onnx, calib_dir, opts, q_onnx.with_name("b.onnx"))
    assert second.cache_hit and second.cache_path == first.cache_path
    a, b = (_activation_scales(onnx.load(r.path)) for r in (first, second))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    third = quantize_onnx(q_onnx, calib_dir, QuantizeOptions(target=Target.CPU, method="max",
                                                             cache=False),
                          q_onnx.with_name("c.onnx"))
    assert not third.cache_hit
    # another method is another key
    fourth = quantize_onnx(q_onnx, calib_dir, QuantizeOptions(target=Target.CPU,
                                                              method="percentile"),
                           q_onnx.with_name("d.onnx"))
    assert not fourth.cache_hit and fourth.cache_path != first.cache_path


def test_quantize_fragile_and_user_excludes(q_onnx: Path, calib_dir: Path) -> None:
    source = onnx.load(q_onnx)
    head = graph.find_fragile(source)["head"]
    stem = next(n.name for n in source.graph.node if n.op_type == "Conv")
    result = quantize_onnx(q_onnx, calib_dir,
                           QuantizeOptions(target=Target.CPU, method="max",
                                           keep_fragile_float=False, exclude=(stem,)))
    assert result.path == q_onnx.with_name("model.int8.cpu.onnx")
    assert "head" not in result.excluded and result.excluded[f"user:{stem}"] == [stem]
    assert set(head) <= set(result.quantized_nodes)  # the classifier Gemm is INT8 now
    assert stem not in result.quantized_nodes


def test_existing_output_needs_force(cpu_run, q_onnx_dir, calib_dir) -> None:
    with pytest.raises(OutputExistsError, match="--force"):
        quantize_onnx(q_onnx_dir / "model.onnx", calib_dir, QuantizeOptions(target=Target.CPU),
                      cpu_run.path)


def test_already_quantized_source_is_refused(cpu_run, calib_dir, tmp_path) -> None:
    with pytest.raises(QuantizationError, match="already quantized"):
        quantize_onnx(cpu_run.path, calib_dir, QuantizeOptions(target=Target.CPU),
                      tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_cli_json_report(q_onnx: Path, calib_dir: Path) -> None:
    result = CliRunner().invoke(app, ["quantize", str(q_onnx), "--calib", str(calib_dir),
                                      "--target", "cpu", "--method", "max", "--json", "-"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert Path(report["output"]).is_file() and Path(report["manifest"]).is_file()
    assert report["qdq"]["activation_qdq_pairs"] > 0
    assert report["figures"]["holdout_vs_fp32"]["samples"] > 0


def test_cli_table_report_and_bad_folder(q_onnx: Path, calib_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["quantize", str(q_onnx), "--calib", str(calib_dir), "--target",
                             "cpu", "--method", "max", "-o", str(tmp_path / "t.onnx")])
    assert ok.exit_code == 0, ok.output
    assert "held out" in ok.output and "Q/DQ:" in ok.output and "wrote" in ok.output
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = runner.invoke(app, ["quantize", str(q_onnx), "--calib", str(empty), "--target", "cpu",
                              "-o", str(tmp_path / "u.onnx")])
    assert bad.exit_code == 1 and "holds no images" in bad.output
    assert "Traceback" not in bad.output and not (tmp_path / "u.onnx").exists()
    text = tmp_path / "model.onnx"
    text.write_text("hello")
    notonnx = runner.invoke(app, ["quantize", str(text), "--calib", str(calib_dir)])
    assert notonnx.exit_code == 2 and "is not a readable ONNX model" in notonnx.output


def test_exclude_takes_unit_block_and_stage_names(q_onnx: Path, calib_dir: Path) -> None:
    import onnx

    from spartan_deploy.debug import block_map_of
    block_map = block_map_of(onnx.load(q_onnx))
    unit = next(u.name for u in block_map.units if u.name.endswith("cmixer"))
    result = quantize_onnx(q_onnx, calib_dir, QuantizeOptions(target=Target.TENSORRT,
                                                              method="max", exclude=(unit,)),
                           q_onnx.with_name("x.onnx"))
    kept = result.excluded[f"user:{unit}"]
    assert kept == list(block_map.nodes[unit]) and kept
    assert not set(kept) & set(result.quantized_nodes)
