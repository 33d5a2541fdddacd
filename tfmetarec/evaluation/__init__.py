"""Cold-start evaluation: per-task metrics, scenario runs and report tables."""

from __future__ import annotations

from tfmetarec.evaluation.metrics import average_metrics, ndcg_at_k, task_metrics
from tfmetarec.evaluation.protocol import evaluate_scenarios, evaluate_tasks, predict_tasks
from tfmetarec.evaluation.report import to_markdown, to_text, tidy

__all__ = [
    "average_metrics",
    "evaluate_scenarios",
    "evaluate_tasks",
    "ndcg_at_k",
    "predict_tasks",
    "task_metrics",
    "tidy",
    "to_markdown",
    "to_text",
]
