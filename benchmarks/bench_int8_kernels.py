"""ONNX Runtime CPU kernels behind the INT8 speed ceiling of spartan-t (issue 5).

profile_int8.py says where the INT8 graph spends its time; this script measures, one kernel
at a time on stage-1 tensors (batch 32, 56x56, 128 channels: the largest of the network),
the alternatives that could have removed the float/INT8 boundaries:

1. GELU on a uint8 tensor. Today it runs as DequantizeLinear -> Gelu -> QuantizeLinear.
   Between a DQ and a Q any elementwise chain is a 256-entry table, but ONNX Runtime's only
   table kernels are QLinearSigmoid / QLinearLeakyRelu (their own functions); a table for
   GELU has to be a Cast + Gather or Cast + GatherElements over the whole tensor.
2. GELU feeding a float consumer (the squeeze-excitation and the superposition): DQ + Gelu
   against the QuickGELU approximation x * sigmoid(1.702 x) in QLinear kernels, then DQ.
3. The channel-pair convolutions the wave mixer needs (2 channels per group) and the
   depthwise ones, in float against ONNX Runtime's INT8 convolution (Q -> QLinearConv ->
   DQ, with the NHWC transposes it brings).

    python3 benchmarks/bench_int8_kernels.py --write /tmp/kernels.md
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
from pathlib import Path

import numpy as np

from spartan_deploy._io import run_conditions
from spartan_deploy.bench.timing import time_interleaved
from spartan_deploy.runtime.ort_session import GraphOptimization, SessionSpec, open_session

NHWC = [32, 56, 56, 128]
SCALE, ZERO = 0.05, 128


def _session(graph, threads: int):
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21),
                                                    helper.make_opsetid("com.microsoft", 1)])
    # spinning: each kernel is timed back to back, as ONNX Runtime's default does
    return open_session(model, SessionSpec(threads=threads, optimization=GraphOptimization.ALL,
                                           spinning=True))


def median_ms(graph, feed: np.ndarray, threads: int, rounds: int) -> tuple[float, np.ndarray]:
    session = _session(graph, threads)
    out = session.run(None, {"x": feed})[0]  # also the warm-up
    timed = time_interleaved({"graph": lambda: session.run(None, {"x": feed})}, rounds, warmup=0)
    return 1000 * timed.summary()["graph"]["median"], out


def _consts(**values) -> list:
    from onnx import numpy_helper

    return [numpy_helper.from_array(np.asarray(v), k) for k, v in values.items()]


def gelu_graphs() -> tuple[dict[str, object], np.ndarray]:
    """uint8 -> uint8 GELU: today's DQ/Gelu/Q, the same as a table, a table kernel's speed."""
    from onnx import TensorProto, helper


    grid = SCALE * (np.arange(256, dtype=np.float32) - ZERO)
    gelu = 0.5 * grid * (1 + np.vectorize(math.erf)(grid / math.sqrt(2)))
    table = np.clip(np.round(gelu / SCALE) + ZERO, 0, 255).astype(np.uint8)
    consts = _consts(s=np.float32(SCALE), z=np.uint8(ZERO), table=table,
                     flat=np.array([-1], np.int64), shape=np.array(NHWC, np.int64))
    x = helper.make_tensor_value_info("x", TensorProto.UINT8, NHWC)
    y = helper.make_tensor_value_info("y", TensorProto.UINT8, NHWC)

    def graph(nodes):
        return helper.make_graph(nodes, "g", [x], [y], consts)

    return {
        "DequantizeLinear -> Gelu -> QuantizeLinear (today)": graph([
            helper.make_node("DequantizeLinear", ["x", "s", "z"], ["f"]),
            helper.make_node("Gelu", ["f"], ["g"], domain="com.microsoft"),
            helper.make_node("QuantizeLinear", ["g", "s", "z"], ["y"])]),
        "GELU table: Cast + Gather": graph([
            helper.make_node("Cast", ["x"], ["i"], to=TensorProto.INT32),
            helper.make_node("Gather", ["table", "i"], ["y"])]),
        "GELU table: Reshape + Cast + GatherElements": graph([
            helper.make_node("Reshape", ["x", "flat"], ["xf"]),
            helper.make_node("Cast", ["xf"], ["i"], to=TensorProto.INT32),
            helper.make_node("GatherElements", ["table", "i"], ["yf"], axis=0),
            helper.make_node("Reshape", ["yf", "shape"], ["y"])]),
        "QLinearSigmoid (a table kernel, not GELU: speed reference)": graph([
            helper.make_node("QLinearSigmoid", ["x", "s", "z", "s", "z"], ["y"],
                        domain="com.microsoft")]),
    }, table


def gelu_float_graphs() -> dict[str, object]:
    """uint8 -> float GELU for a float consumer: exact, and the QuickGELU approximation."""
    from onnx import TensorProto, helper


    consts = _consts(s=np.float32(SCALE), z=np.uint8(ZERO), s_sig=np.float32(SCALE * 1.702),
                     s_gate=np.float32(1 / 255), z_gate=np.uint8(0), s_out=np.float32(0.03),
                     z_out=np.uint8(10))
    x = helper.make_tensor_value_info("x", TensorProto.UINT8, NHWC)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, NHWC)
    return {
        "DequantizeLinear -> Gelu (today, exact)": helper.make_graph([
            helper.make_node("DequantizeLinear", ["x", "s", "z"], ["f"]),
            helper.make_node("Gelu", ["f"], ["y"], domain="com.microsoft")], "g", [x], [y], consts),
        "QLinearSigmoid(1.702x) -> QLinearMul -> DequantizeLinear (approximate)":
            helper.make_graph([
                helper.make_node("QLinearSigmoid", ["x", "s_sig", "z", "s_gate", "z_gate"], ["g"],
                            domain="com.microsoft"),
                helper.make_node("QLinearMul", ["x", "s", "z", "g", "s_gate", "z_gate", "s_out",
                                           "z_out"], ["m"], domain="com.microsoft"),
                helper.make_node("DequantizeLinear", ["m", "s_out", "z_out"], ["y"])],
                "g", [x], [y], consts),
    }


def conv_graphs(channels: int, size: int, kernel: int, per_group: int) -> dict[str, object]:
    """One grouped convolution in float and as Q/DQ (ONNX Runtime fuses it to QLinearConv)."""
    from onnx import TensorProto, helper


    rng = np.random.default_rng(0)
    weight = rng.standard_normal((channels, per_group, kernel, kernel)).astype(np.float32)
    consts = _consts(W=weight, Wq=np.clip(np.round(weight / 0.01), -127, 127).astype(np.int8),
                     ws=np.full(channels, 0.01, np.float32), wz=np.zeros(channels, np.int8),
                     s=np.float32(0.01), z=np.uint8(ZERO), so=np.float32(0.05))
    shape = [32, channels, size, size]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    conv = {"group": channels // per_group, "pads": [kernel // 2] * 4}
    return {
        "float Conv": helper.make_graph([helper.make_node("Conv", ["x", "W"], ["y"], **conv)],
                                        "f", [x], [y], consts),
        "Q -> QLinearConv -> DQ": helper.make_graph([
            helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
            helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
            helper.make_node("DequantizeLinear", ["Wq", "ws", "wz"], ["Wd"], axis=0),
            helper.make_node("Conv", ["xd", "Wd"], ["c"], **conv),
            helper.make_node("QuantizeLinear", ["c", "so", "z"], ["cq"]),
            helper.make_node("DequantizeLinear", ["cq", "so", "z"], ["y"])], "q", [x], [y], consts),
    }


def run(args: argparse.Namespace) -> str:
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, NHWC, dtype=np.uint8)
    load_before = os.getloadavg()[0]
    rows: list[tuple[str, str, float]] = []
    graphs, table = gelu_graphs()
    for name, graph in graphs.items():
        ms, out = median_ms(graph, codes, args.threads, args.rounds)
        if name.startswith("GELU table") or name.endswith("(today)"):
            # the tables must give today's codes exactly, or their times would mean nothing
            assert np.array_equal(out, table[codes]), name
        rows.append(("uint8 GELU, uint8 out", name, ms))
    for name, graph in gelu_float_graphs().items():
        rows.append(("uint8 GELU, float out", name, median_ms(graph, codes, args.threads,
                                                             args.rounds)[0]))
    for channels, size, kernel, per_group in ((128, 56, 1, 2), (128, 56, 3, 2), (128, 56, 3, 1),
                                              (512, 14, 3, 2), (512, 14, 3, 1)):
        feed = rng.standard_normal((32, channels, size, size), dtype=np.float32)
        case = f"conv {kernel}x{kernel}, {channels} ch at {size}x{size}, {per_group} per group"
        for name, graph in conv_graphs(channels, size, kernel, per_group).items():
            rows.append((case, name, median_ms(graph, feed, args.threads, args.rounds)[0]))
    lines = [f"## INT8 kernel alternatives ({datetime.date.today().isoformat()})", "",
             run_conditions((load_before, os.getloadavg()[0]), f"{args.threads} intra-op "
                            f"thread(s), median of {args.rounds} runs"), "",
             "| case | graph | ms |", "|---|---|---:|"]
    lines += [f"| {case} | {name} | {ms:.1f} |" for case, name, ms in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    text = run(args)
    print(text)
    if args.write:
        args.write.write_text(text + "\n")


if __name__ == "__main__":
    main()
