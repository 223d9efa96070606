"""Which FP32 ONNX an engine starts from: the one given, or the model's export under runs/.

``build-engine`` without an ONNX path uses ``runs/<model>/model.onnx``: reused when its
manifest says it was exported from the same weights, exported (and reported) when absent,
and never silently replaced when it came from other weights.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from spartan_deploy._io import read_manifest
from spartan_deploy.errors import OutputExistsError, UsageError

RUNS_DIR = Path("runs")


def default_onnx_path(model_name: str, runs: Path = RUNS_DIR) -> Path:
    return runs / model_name / "model.onnx"


def resolve_source(onnx: Path | None, model: str | None, weights: Path | None,
                   trust_checkpoint: bool = False, force: bool = False,
                   runs: Path = RUNS_DIR, log: Callable[[str], None] = lambda m: None
                   ) -> tuple[Path, list[Path]]:
    """(the FP32 ONNX to start from, files written to get it)."""
    if onnx is not None:
        if model is not None or weights is not None:
            raise UsageError("give either an ONNX file or --model/--weights, not both")
        return Path(onnx), []
    from spartan_deploy.export import ExportOptions, export_onnx
    from spartan_deploy.model import load_model

    loaded = load_model(model, weights, trust_checkpoint)
    path = default_onnx_path(loaded.name, runs)
    if path.exists() and not force:
        manifest = read_manifest(path) or {}
        exported_from = (manifest.get("source") or {}).get("sha256")
        if exported_from is not None and exported_from == loaded.weights_sha256:
            log(f"using {path} (exported from the same weights)")
            return path, []
        raise OutputExistsError(
            f"{path} exists but was not exported from these weights; pass --force to "
            "re-export it, or give that ONNX file as the argument")
    log(f"exporting {loaded.name} to {path} ...")
    result = export_onnx(loaded, path, ExportOptions(), force=force)
    return result.path, [result.path, result.manifest_path]
