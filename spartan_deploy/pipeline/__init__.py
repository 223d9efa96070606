"""Chains of stages: ``spartan pipeline`` (every stage, one report) and ``spartan
build-engine`` (checkpoint or ONNX to engine), both through one orchestration.

Names are imported on first use (see :mod:`spartan_deploy._lazy`).
"""

from spartan_deploy._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "EngineChainResult": "engine_chain", "EngineRequest": "engine_chain",
    "build_engine_chain": "engine_chain",
    "Orchestrator": "orchestrate", "RunInputs": "orchestrate", "StageRecord": "orchestrate",
    "Status": "orchestrate",
    "PipelineResult": "run", "run_pipeline": "run",
    "PipelineOptions": "stages",
})
