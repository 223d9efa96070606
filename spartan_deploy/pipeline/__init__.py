"""The end-to-end job: every stage on one model, one report (see ``run.py``).

Names are imported on first use (see :mod:`spartan_deploy._lazy`).
"""

from spartan_deploy._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "PipelineResult": "run", "run_pipeline": "run",
    "PipelineOptions": "stages", "StageRecord": "stages", "Status": "stages",
})
