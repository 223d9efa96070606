"""Serving with Triton Inference Server: write a model repository, start the real server on
loopback, and measure it from outside under closed-loop load.

Names are imported on first use (see :mod:`spartan_deploy._lazy`).
"""

from spartan_deploy._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "BatchingRequest": "batching", "BatchingPolicy": "batching",
    "RepositoryOptions": "repository", "RepositoryResult": "repository",
    "write_repository": "repository",
    "ServeOptions": "server", "TritonServer": "server", "find_server": "server",
    "LoadOptions": "loadtest", "LoadReport": "loadtest", "run_loadtest": "loadtest",
    "TritonStageResult": "pipeline", "triton_stage": "pipeline",
})
