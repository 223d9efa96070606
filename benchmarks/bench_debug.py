"""Benchmark ``spartan debug``: wall time of the whole command on an INT8 graph, 64 images.

Two models, each exported and quantized (``--target tensorrt``, Model Optimizer) first:

- the bundled default (digits-trained spartan-t, 32x32), also its FP16 graph (AutoCast);
- spartan-t at 224 with random-but-scaled weights: the official random initialisation with
  the layer scales (``scale_1``/``scale_2``, official init 1e-5) set to 0.3 and the spatial
  mixers' ``gamma`` to 0.5, so every block contributes to the residual stream as in a
  trained network (at 1e-5 each block is nearly the identity and would lose nothing).
  Calibrated on 32 images of calib/ (the figures here are about time, not accuracy).

Each debug run is the console command in a fresh process (Python start and imports
included), ``--limit 64`` on the digits test split (resized to the model's input), default
what-if count, ``--json`` to read back the ranking. Target: under 2 minutes per INT8 run on
the 2-core development machine.

    python3 benchmarks/bench_debug.py                      # Markdown to stdout
    python3 benchmarks/bench_debug.py --write /tmp/debug.md --keep runs/bench-debug
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGES = 64
LAYER_SCALE, GAMMA = 0.3, 0.5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="write the Markdown section here")
    parser.add_argument("--keep", type=Path, help="build the artefacts in this folder "
                                                  "(kept) instead of a temporary one")
    parser.add_argument("--skip-224", action="store_true", help="only the bundled model")
    return parser.parse_args()


def export_bundled(folder: Path) -> Path:
    from spartan_deploy.export import ExportOptions, export_onnx
    from spartan_deploy.model import load_model

    return export_onnx(load_model(None), folder / "model.onnx", ExportOptions(),
                       force=True).path


def export_scaled_224(folder: Path) -> Path:
    """spartan-t at 224, random official init with layer scales and gamma raised."""
    import torch

    from spartan_deploy.export import ExportOptions, export_onnx
    from spartan_deploy.model import load_model

    torch.manual_seed(0)
    loaded = load_model("spartan-t", allow_random=True)
    with torch.no_grad():
        for name, param in loaded.model.named_parameters():
            if name.endswith(("scale_1", "scale_2")):
                param.fill_(LAYER_SCALE)
            elif name.endswith("gamma"):
                param.fill_(GAMMA)
    return export_onnx(loaded, folder / "model.onnx", ExportOptions(img_size=224),
                       force=True).path


def quantize(source: Path, calib_count: int | None) -> Path:
    from spartan_deploy.paths import bundled_calib_dir
    from spartan_deploy.quantize import QuantizeOptions, Target, quantize_onnx

    options = QuantizeOptions(target=Target.TENSORRT, calib_count=calib_count)
    return quantize_onnx(source, bundled_calib_dir(), options,
                         source.with_name("model.int8.trt.onnx"), force=True).path


def fp16(source: Path) -> Path:
    import onnx

    from spartan_deploy.engine.precision import convert_to_fp16

    out = source.with_name("model.fp16.onnx")
    onnx.save(convert_to_fp16(onnx.load(source)).model, out)
    return out


def time_debug(graph: Path) -> dict:
    """The whole ``spartan debug`` command in a fresh process: wall seconds and results."""
    out = graph.with_name(graph.name + ".debug.json")
    command = [sys.executable, "-m", "spartan_deploy", "debug", str(graph), "--limit",
               str(IMAGES), "--json", str(out), "--force"]
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    data = json.loads(out.read_text())
    return {"graph": graph, "wall": wall, "library": data["seconds"], "data": data}


def main() -> None:
    args = parse_args()
    loads = [os.getloadavg()[0]]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-debug-") as tmp:
        base = args.keep or Path(tmp)
        bundled = export_bundled(base / "digits")
        rows.append(("bundled default (digits, 32x32)", "int8 (tensorrt target)",
                     time_debug(quantize(bundled, None))))
        rows.append(("bundled default (digits, 32x32)", "fp16 (AutoCast, emulated)",
                     time_debug(fp16(bundled))))
        if not args.skip_224:
            scaled = export_scaled_224(base / "t224")
            rows.append(("spartan-t 224, random-but-scaled", "int8 (tensorrt target)",
                         time_debug(quantize(scaled, 32))))
    loads.append(os.getloadavg()[0])
    report = render(rows, loads)
    print(report)
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(report)


def render(rows: list, loads: list[float]) -> str:
    sys.path.insert(0, str(REPO))
    from spartan_deploy._io import run_conditions

    lines = [
        f"## Measured run, {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        "", run_conditions((loads[0], loads[-1]),
                           f"{IMAGES} digits test images per run, default what-if count"),
        "",
        "| model | graph | `spartan debug` wall s (whole command) | in library s | "
        "what-if units | worst units (local SQNR) | logits SQNR dB | agreement |",
        "|---|---|---:|---:|---:|---|---:|---:|",
    ]
    for model, graph, r in rows:
        data = r["data"]
        local = {u["unit"]: u["local"]["sqnr_db"] for u in data["units"] if u["local"]}
        worst = ", ".join(f"{n} ({_db(local[n])})" for n in data["ranking"][:3])
        lines.append(f"| {model} | {graph} | **{r['wall']:.1f}** | {r['library']:.1f} | "
                     f"{len(data['what_if'])} | {worst} | {_db(data['logits']['sqnr_db'])} | "
                     f"{data['logits']['top1_agreement']:.2%} |")
    return "\n".join(lines + [""])


def _db(value) -> str:
    return value if isinstance(value, str) else f"{value:.1f}"


if __name__ == "__main__":
    main()
