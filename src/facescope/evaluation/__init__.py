"""Evaluation: metrics overall and per group, calibration, and the report folder."""

from facescope.evaluation.metrics import EvaluationResult, evaluate, map_truth_races
from facescope.evaluation.report import write_report

__all__ = ["EvaluationResult", "evaluate", "map_truth_races", "write_report"]
