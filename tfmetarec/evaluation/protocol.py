"""Run a learner over the tasks of each cold-start scenario and score it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfmetarec.data.features import EncodedData
from tfmetarec.evaluation.metrics import average_metrics, binary_metrics, coverage_at_k, task_metrics
from tfmetarec.learners.base import MetaLearner
from tfmetarec.learners.item_warmup import item_offsets, new_item_rows
from tfmetarec.models.base import MetaModel
from tfmetarec.models.functional import graph_function
from tfmetarec.tasks.episode import Rows, TaskSet, join_task_sets
from tfmetarec.tasks.samplers import eval_batches
from tfmetarec.types import ITEM_ID, ITEM_OFFSET, MASK, QUERY, RATING, SUPPORT, USER_FIELDS, USER_ID


def rows_features(encoded: EncodedData, rows: Rows) -> dict[str, np.ndarray]:
    """The model inputs ``[N, ...]`` of flat rating rows."""
    return {USER_ID: encoded.user_ids[rows.user_row], USER_FIELDS: encoded.user_fields[rows.user_row],
            ITEM_ID: rows.item_row.astype(np.int32)}


def adapt_and_score_fn(learner: MetaLearner, jit_compile: bool = False):
    """A traced ``episode -> [T, Q]`` function: adapt on support, score query. Without XLA (the
    default) one graph with unknown batch and row counts serves every padded shape
    (``reduce_retracing``); XLA (opt-in) compiles each shape it meets: once per call of the first
    pass over a task set (25 programs for the quickstart's report), none on later passes through
    the same function (pass it as ``fn=``)."""
    return graph_function(lambda episode: learner(episode), jit_compile=jit_compile, reduce_retracing=not jit_compile)


def predict_tasks(
    learner: MetaLearner,
    encoded: EncodedData,
    tasks: TaskSet,
    batch_size: int = 32,
    jit_compile: bool = False,
    fn=None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(predicted, true) query ratings of every task, in ``tasks`` order."""
    return [(p, t) for p, t, _ in _predict(learner, encoded, tasks, batch_size, jit_compile, fn)]


ItemOffsets = tuple[np.ndarray, np.ndarray]
"""``(tables [K, item table rows], table of each task [T])``: the item offsets a pass runs with."""


def _predict(learner, encoded, tasks, batch_size, jit_compile, fn, offsets: ItemOffsets | None = None):
    """(predicted, true, item rows) of every task's query, in ``tasks`` order; with ``offsets``,
    every row carries its item offset from its task's table (``ITEM_OFFSET``)."""
    fn = fn or adapt_and_score_fn(learner, jit_compile)
    out: list = [None] * len(tasks)
    for episode, idx in eval_batches(encoded, tasks, batch_size):
        if offsets is not None:
            tables, which = offsets
            slot = which[idx]  # no empty task slot: row r is task idx[r]
            for part in (SUPPORT, QUERY):
                rows = episode[part][ITEM_ID]
                inside = (rows >= 0) & (rows < tables.shape[1])  # as the model: 0 outside its table
                episode[part][ITEM_OFFSET] = np.where(inside, tables[slot[:, None], np.where(inside, rows, 0)], 0.0)
        pred = fn(episode).numpy()
        query = episode[QUERY]
        for row, t in enumerate(idx):
            real = query[MASK][row] > 0
            item_rows = tasks.query.task(int(t))[1]
            out[int(t)] = (pred[row][real], query[RATING][row][real], item_rows)
    return out


def summarise_tasks(results: list[tuple[np.ndarray, np.ndarray, np.ndarray]], ks: Sequence[int] = (1, 3, 5),
                    binary: bool = False) -> dict[str, float]:
    """Per-task metrics of ``(predicted, true, item rows)`` triples averaged over the tasks (see
    :func:`evaluate_tasks`)."""
    metrics = average_metrics([task_metrics(p, t, ks) for p, t, _ in results])
    out = {"tasks": len(results), **metrics}
    if binary:
        out.update(binary_metrics([(p, t) for p, t, _ in results]))
        ranked = [rows[np.argsort(-p, kind="stable")] for p, _, rows in results]
        candidates = np.concatenate([rows for _, _, rows in results])
        for k in ks:
            out[f"coverage@{k}"] = coverage_at_k(ranked, candidates, k)
    return out


def evaluate_tasks(
    learner: MetaLearner,
    encoded: EncodedData,
    tasks: TaskSet,
    ks: Sequence[int] = (1, 3, 5),
    batch_size: int = 32,
    jit_compile: bool = False,
    fn=None,
    binary: bool = False,
) -> dict[str, float]:
    """Per-task metrics averaged over the tasks of one scenario.

    With ``binary``, also the liked-or-not view (precision, recall, F1, AUC)
    and ``coverage@k``: the share of the scenario's query items that reach
    some task's top-k.
    """
    return summarise_tasks(_predict(learner, encoded, tasks, batch_size, jit_compile, fn), ks, binary)


Predictions = dict[tuple[str, str], list]
"""``(method, scenario) -> [(predicted, true, item rows) per task]``."""


def scenario_offsets(model: MetaModel, encoded: EncodedData, scenarios: Mapping[str, TaskSet],
                     item_warmup: float | None = None) -> dict[str, np.ndarray]:
    """The item offsets each scenario is evaluated with: for a scenario whose supports rate new
    items (with ``item_warmup``), those items warmed up from its supports
    (:func:`~tfmetarec.learners.item_warmup.item_offsets`); for the others, the model's own."""
    out = {}
    for name, tasks in scenarios.items():
        support = tasks.support
        if item_warmup is not None and len(tasks) and new_item_rows(model, support.item_row).any():
            out[name] = item_offsets(model, rows_features(encoded, support), support.rating, item_warmup)
        else:
            out[name] = model.item_offsets
    return out


def predict_scenarios(
    learners: Mapping[str, MetaLearner],
    encoded: EncodedData,
    scenarios: Mapping[str, TaskSet],
    batch_size: int = 32,
    jit_compile: bool = False,
    item_warmup: float | None = None,
    fns: Mapping[str, Any] | None = None,
) -> Predictions:
    """Every learner's query predictions on every (non-empty) scenario, computed once for both
    the averaged report and the per-task table.

    With ``item_warmup`` (a shrinkage pseudo-count), a scenario whose supports rate new items
    first warms those items up from their support ratings (two-sided adaptation,
    :mod:`tfmetarec.learners.item_warmup`; query rows are never read), for every learner alike.
    Every learner runs one pass over all the scenarios' tasks (one per task key), packed into
    batches together: each row carries its scenario's item offset (:func:`scenario_offsets`), and
    the model is never changed. ``fns`` (method -> :func:`adapt_and_score_fn`) reuses functions already traced.
    """
    groups: dict[str, list[str]] = {}  # one pass per task key (user tasks, item tasks)
    for name, tasks in scenarios.items():
        if len(tasks):
            groups.setdefault(tasks.task_key, []).append(name)
    out: Predictions = {}
    for method, learner in learners.items():
        fn = (fns or {}).get(method) or adapt_and_score_fn(learner, jit_compile)
        results = {}
        for names in groups.values():
            sizes = [len(scenarios[n]) for n in names]
            offsets = None
            if item_warmup is not None:
                tables = scenario_offsets(learner.model, encoded, {n: scenarios[n] for n in names}, item_warmup)
                offsets = (np.stack([tables[n] for n in names]).astype(np.float32),
                           np.repeat(np.arange(len(names)), sizes))
            pooled = _predict(learner, encoded, join_task_sets([scenarios[n] for n in names]), batch_size,
                              jit_compile, fn, offsets)
            for name, lo, size in zip(names, np.cumsum([0] + sizes[:-1]), sizes):
                results[name] = pooled[lo: lo + size]
        out.update({(method, name): results[name] for name in scenarios if name in results})
    return out


def scenario_table(predictions: Predictions, ks: Sequence[int] = (1, 3, 5), binary: bool = False) -> pd.DataFrame:
    """One row per (method, scenario) with the task count and each metric."""
    return pd.DataFrame([{"method": method, "scenario": scenario, **summarise_tasks(results, ks, binary)}
                         for (method, scenario), results in predictions.items()])


def per_task_table(predictions: Predictions, scenarios: Mapping[str, TaskSet],
                   ks: Sequence[int] = (1, 3, 5)) -> pd.DataFrame:
    """One row per (method, scenario, task): ``task`` (its index in the scenario), ``task_id``
    and each metric, for paired tests between methods (:mod:`tfmetarec.evaluation.stats`)."""
    rows = []
    for (method, scenario), results in predictions.items():
        ids = scenarios[scenario].task_ids
        for t, (p, y, _) in enumerate(results):
            rows.append({"method": method, "scenario": scenario, "task": t, "task_id": ids[t],
                         **task_metrics(p, y, ks)})
    return pd.DataFrame(rows)


def evaluate_scenarios(
    learners: Mapping[str, MetaLearner],
    encoded: EncodedData,
    scenarios: Mapping[str, TaskSet],
    ks: Sequence[int] = (1, 3, 5),
    batch_size: int = 32,
    jit_compile: bool = False,
    binary: bool = False,
    per_task: bool = False,
    item_warmup: float | None = None,
) -> pd.DataFrame:
    """One row per (method, scenario) with the task count and each metric; with ``per_task``, one
    row per (method, scenario, task) instead (:func:`per_task_table`, for paired tests).
    ``item_warmup``: see :func:`predict_scenarios`."""
    predictions = predict_scenarios(learners, encoded, scenarios, batch_size, jit_compile, item_warmup)
    return per_task_table(predictions, scenarios, ks) if per_task else scenario_table(predictions, ks, binary)
