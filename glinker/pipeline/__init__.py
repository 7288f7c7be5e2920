"""Pipelines declared in YAML: schema, stage registry, DAG and runner."""

from glinker.pipeline.registry import register_stage, registry
from glinker.pipeline.runner import BatchResult, Pipeline, RunStats
from glinker.pipeline.spec import PipelineSpec, load_spec, loads_spec
from glinker.pipeline.stage import DOCUMENTS, PipelineContext, Stage, StageParams

__all__ = ["Pipeline", "PipelineSpec", "PipelineContext", "Stage", "StageParams", "BatchResult", "RunStats",
           "load_spec", "loads_spec", "register_stage", "registry", "DOCUMENTS"]
