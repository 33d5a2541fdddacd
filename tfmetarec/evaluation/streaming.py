"""The streaming protocol: a cold user's ratings arrive one at a time.

For every task (a cold user, or a new item with ``task_key="item"``) a fixed query of
``query_size`` ratings is held out and the rest is revealed one rating at a time, in
timestamp order when the data has timestamps and in a seeded random order otherwise.
After each arrival the query is scored again, by each method:

* ``incremental``: the learner's ``update`` on the new rating, from the state of the
  previous arrival (the state a service keeps);
* ``re-adapt``: the learner's ``adapt`` on every rating so far, from scratch;
* ``fine-tune`` and ``no adaptation``: the global baseline, fine-tuned on the ratings so
  far, or not at all.

Metrics (MAE, RMSE, nDCG@3 over the fixed query, averaged over tasks) are reported at
``n = 0, 1, 2, 3, 5, 10, 20`` ratings, with the milliseconds an update takes. Only tasks
with at least ``max(points)`` ratings to reveal take part, so every point of a curve
averages over the same tasks and queries.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import tensorflow as tf

from tfmetarec.data.features import EncodedData
from tfmetarec.evaluation.metrics import average_metrics, task_metrics
from tfmetarec.learners.base import MetaLearner
from tfmetarec.models.functional import graph_function
from tfmetarec.tasks.episode import Rows, TaskSet, group_tasks, pad_episode
from tfmetarec.types import MASK, QUERY, RATING, SUPPORT, features_of

POINTS = (0, 1, 2, 3, 5, 10, 20)
METRICS = ("MAE", "RMSE", "nDCG@3")


def stream_tasks(
    encoded: EncodedData,
    ratings: pd.DataFrame,
    *,
    task_key: str = "user",
    query_size: int = 10,
    reveal: int = max(POINTS),
    seed: int = 0,
    name: str = "stream",
) -> TaskSet:
    """Tasks whose support is the first ``reveal`` ratings to arrive, in arrival order.

    Each task's query is ``query_size`` of its ratings drawn at random (seeded); the rest
    arrive in timestamp order (ties broken by a seeded shuffle), or in a seeded random
    order when ``ratings`` has no ``timestamp``. Tasks with fewer than
    ``query_size + reveal`` ratings are left out.
    """
    rng = np.random.default_rng(seed)
    ids, rows = group_tasks(encoded, ratings, task_key, name)
    keys = ratings[task_key].to_numpy()
    order = np.argsort(keys, kind="stable")
    times = ratings["timestamp"].to_numpy()[order] if "timestamp" in ratings.columns else None
    kept, sup, qry = [], [], []
    for t, task_id in enumerate(ids.tolist()):
        lo, hi = rows.offsets[t], rows.offsets[t + 1]
        u, i, r = rows.task(t)
        if len(u) < query_size + reveal:
            continue
        perm = rng.permutation(len(u))
        q_idx, rest = perm[:query_size], perm[query_size:]
        if times is not None:
            rest = rest[np.argsort(times[lo:hi][rest], kind="stable")]
        s_idx = rest[:reveal]
        kept.append(task_id)
        sup.append((u[s_idx], i[s_idx], r[s_idx]))
        qry.append((u[q_idx], i[q_idx], r[q_idx]))
    return TaskSet(name, task_key, np.asarray(kept), Rows.from_groups(sup), Rows.from_groups(qry))


@dataclass
class StreamMethod:
    """A way of answering after each arrival: ``kind`` is ``"incremental"`` (``update``)
    or ``"readapt"`` (``adapt`` on every rating so far)."""

    learner: MetaLearner
    kind: str


def _prefix(part: Mapping[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """The support's first ``n`` rows (no padded row: every task reveals at least as many); for
    ``n = 0``, every row masked (the shape of the state an ``update`` starts from)."""
    if n > 0:
        return {k: v[:, :n] for k, v in part.items()}
    return {**part, MASK: np.zeros_like(part[MASK])}


def _row(part: Mapping[str, np.ndarray], j: int) -> dict[str, np.ndarray]:
    """Support row ``j`` alone (``[T, 1]``)."""
    return {k: v[:, j:j + 1] for k, v in part.items()}


def streaming_curve(
    methods: Mapping[str, StreamMethod],
    encoded: EncodedData,
    tasks: TaskSet,
    points: Sequence[int] = POINTS,
    batch_size: int = 64,
) -> pd.DataFrame:
    """One row per (method, n): the metrics after ``n`` arrivals and the mean milliseconds per
    user of the call that produced them (an update, or a re-adaptation on ``n`` ratings)."""
    if len(tasks) == 0:
        raise ValueError(f"No task of {tasks.name!r} has enough ratings to reveal {max(points)} of them.")
    last = max(points)
    if int(tasks.support_sizes().min()) < last:
        raise ValueError(f"Every task needs {last} ratings to reveal; build the tasks with stream_tasks(reveal={last}).")
    compiled = {}
    for name, method in methods.items():
        learner = method.learner
        if method.kind not in ("incremental", "readapt"):
            raise ValueError(f"{name}: kind must be 'incremental' or 'readapt', got {method.kind!r}.")
        compiled[name] = (graph_function(learner.adapt, reduce_retracing=True),  # supports of 1..last rows
                          graph_function(learner.update), graph_function(learner.score, reduce_retracing=True))
    warm = True  # the first batch runs once untimed, so tracing is not counted as update time
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    timing: dict[tuple[str, int], list[float]] = {}
    for lo in range(0, len(tasks), batch_size):
        idx = np.arange(lo, min(lo + batch_size, len(tasks)))
        support = [tasks.support.task(int(t)) for t in idx]
        query = [tasks.query.task(int(t)) for t in idx]
        q_size = int(max(len(q[0]) for q in query))
        episode = pad_episode(encoded, support, query, last, q_size)
        sup, q = episode[SUPPORT], episode[QUERY]
        features = features_of(q)
        truth = [(q[RATING][row][q[MASK][row] > 0]) for row in range(len(idx))]
        if warm:
            for adapt, update, score in compiled.values():
                score(update(adapt(_prefix(sup, 0)), _row(sup, 0)), features)
                score(adapt(_prefix(sup, 1)), features)
            warm = False
        for name, method in methods.items():
            adapt, update, score = compiled[name]
            state = adapt(_prefix(sup, 0))
            for n in range(0, last + 1):
                started = time.perf_counter()
                if method.kind == "incremental" and n > 0:
                    state = update(state, _row(sup, n - 1))
                elif method.kind == "readapt":
                    state = adapt(_prefix(sup, n))
                if n in points:
                    tf.nest.map_structure(lambda v: v.numpy(), state)  # finish the work before the clock stops
                    timing.setdefault((name, n), []).append((time.perf_counter() - started) * 1e3 / len(idx))
                    pred = score(state, features).numpy()
                    for row in range(len(idx)):
                        real = q[MASK][row] > 0
                        results.setdefault((name, n), []).append(task_metrics(pred[row][real], truth[row], (3,)))
    out = []
    for (name, n), rows in results.items():
        metrics = average_metrics(rows)
        out.append({"method": name, "n": n, "tasks": len(rows), **{m: metrics[m] for m in METRICS},
                    "ms_per_user": float(np.median(timing[(name, n)]))})
    return pd.DataFrame(out).sort_values(["method", "n"], kind="stable", ignore_index=True)


def to_markdown(curve: pd.DataFrame, metric: str = "MAE") -> str:
    """A table of ``metric`` with one column per method and one row per ``n``."""
    table = curve.pivot(index="n", columns="method", values=metric)
    lines = ["| n | " + " | ".join(table.columns) + " |", "|---:|" + "---:|" * len(table.columns)]
    for n, row in table.iterrows():
        lines.append(f"| {n} | " + " | ".join(f"{v:.4f}" for v in row.tolist()) + " |")
    return "\n".join(lines)


def write_streaming(curve: pd.DataFrame, folder: str | os.PathLike, title: str = "") -> list[str]:
    """``streaming.csv``, ``streaming.md`` and one PNG per metric (against n) in ``folder``."""
    from tfmetarec.evaluation.curves import plot_curve

    os.makedirs(folder, exist_ok=True)
    written = [os.path.join(folder, "streaming.csv")]
    curve.to_csv(written[0], index=False)
    text = "\n\n".join(f"### {m}\n\n" + to_markdown(curve, m) for m in (*METRICS, "ms_per_user"))
    with open(os.path.join(folder, "streaming.md"), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    written.append(os.path.join(folder, "streaming.md"))
    for metric in METRICS:
        path = os.path.join(folder, f"streaming_{metric.replace('@', '')}.png")
        plot_curve(curve, "n", metric, path, f"{title}{metric} as ratings arrive")
        written.append(path)
    return written


__all__ = ["POINTS", "StreamMethod", "stream_tasks", "streaming_curve", "to_markdown", "write_streaming"]
