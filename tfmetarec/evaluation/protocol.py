"""Run a learner over the tasks of each cold-start scenario and score it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import tensorflow as tf

from tfmetarec.data.features import EncodedData
from tfmetarec.evaluation.metrics import average_metrics, task_metrics
from tfmetarec.learners.base import MetaLearner
from tfmetarec.tasks.episode import TaskSet
from tfmetarec.tasks.samplers import eval_batches
from tfmetarec.types import MASK, QUERY, RATING


def adapt_and_score_fn(learner: MetaLearner, jit_compile: bool = True):
    """A compiled ``episode -> [T, Q]`` function: adapt on support, score query."""
    return tf.function(lambda episode: learner(episode), jit_compile=jit_compile)


def predict_tasks(
    learner: MetaLearner,
    encoded: EncodedData,
    tasks: TaskSet,
    batch_size: int = 32,
    jit_compile: bool = True,
    fn=None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(predicted, true) query ratings of every task, in ``tasks`` order."""
    fn = fn or adapt_and_score_fn(learner, jit_compile)
    out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(tasks)
    for episode, idx in eval_batches(encoded, tasks, batch_size):
        pred = fn(episode).numpy()
        query = episode[QUERY]
        for row, t in enumerate(idx):
            real = query[MASK][row] > 0
            out[int(t)] = (pred[row][real], query[RATING][row][real])
    return out  # type: ignore[return-value]


def evaluate_tasks(
    learner: MetaLearner,
    encoded: EncodedData,
    tasks: TaskSet,
    ks: Sequence[int] = (1, 3, 5),
    batch_size: int = 32,
    jit_compile: bool = True,
    fn=None,
) -> dict[str, float]:
    """Per-task metrics averaged over the tasks of one scenario."""
    results = predict_tasks(learner, encoded, tasks, batch_size, jit_compile, fn)
    metrics = average_metrics([task_metrics(p, t, ks) for p, t in results])
    return {"tasks": len(tasks), **metrics}


def evaluate_scenarios(
    learners: Mapping[str, MetaLearner],
    encoded: EncodedData,
    scenarios: Mapping[str, TaskSet],
    ks: Sequence[int] = (1, 3, 5),
    batch_size: int = 32,
    jit_compile: bool = True,
) -> pd.DataFrame:
    """One row per (method, scenario) with the task count and each metric."""
    rows = []
    for method, learner in learners.items():
        fn = adapt_and_score_fn(learner, jit_compile)
        for scenario, tasks in scenarios.items():
            if len(tasks) == 0:
                continue
            metrics = evaluate_tasks(learner, encoded, tasks, ks, batch_size, jit_compile, fn)
            rows.append({"method": method, "scenario": scenario, **metrics})
    return pd.DataFrame(rows)
