"""TensorRT engines: precision graphs (CPU), build options, the TensorRT layer, engine
manifests, and the hand-off of builds and checks to NVIDIA's tools on a GPU machine.

Nothing here imports TensorRT at module load: :mod:`spartan_deploy.engine.trt` imports it
inside the functions that need it, so the CPU path works without it.

Names are imported on first use (see :mod:`spartan_deploy._lazy`).
"""

from spartan_deploy._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "EngineResult": "build", "build_engine": "build", "default_plan_path": "build",
    "BUDGET_POINTS": "precision_graph", "GraphResult": "precision_graph",
    "default_graph_path": "precision_graph", "make_precision_graph": "precision_graph",
    "RuntimeInfo": "compat", "check_compatible": "compat", "compatibility": "compat",
    "engine_manifest": "compat", "gpu_problem": "compat", "tensorrt_problem": "compat",
    "Handoff": "handoff", "check_handoff_outputs": "handoff", "gpu_instructions": "handoff",
    "write_handoff": "handoff",
    "FragilePart": "graph", "find_parts": "graph",
    "BatchProfile": "options", "BuildOptions": "options", "HardwareCompat": "options",
    "parse_size": "options",
    "Conversion": "precision", "DEFAULT_KEEP_FP32": "precision",
    "PrecisionOptions": "precision", "convert_to_fp16": "precision",
    "node_precisions": "precision",
    "EngineBuildError": "trt", "import_tensorrt": "trt", "save_engine": "trt",
})
