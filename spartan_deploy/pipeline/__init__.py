"""The end-to-end job: every stage on one model, one report (see ``run.py``)."""

from spartan_deploy.pipeline.run import PipelineResult, run_pipeline
from spartan_deploy.pipeline.stages import PipelineOptions, StageRecord, Status

__all__ = ["PipelineOptions", "PipelineResult", "StageRecord", "Status", "run_pipeline"]
