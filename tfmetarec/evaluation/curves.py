"""Adaptation curves: a metric against the support size and against inner steps."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Literal

import pandas as pd

from tfmetarec.data.features import EncodedData
from tfmetarec.evaluation.protocol import adapt_and_score_fn, evaluate_tasks
from tfmetarec.learners.base import MetaLearner
from tfmetarec.tasks.episode import TaskSet, limit_support

SUPPORT_SIZES = (1, 3, 5, 10, 20)
INNER_STEPS = (0, 1, 2, 5, 10)


def adaptation_curve(
    learners: Mapping[str, MetaLearner],
    encoded: EncodedData,
    tasks: TaskSet,
    over: Literal["support", "inner_steps"],
    points: Sequence[int] | None = None,
    seed: int = 0,
    batch_size: int = 32,
) -> pd.DataFrame:
    """Metrics of each learner at each point of a curve, one row per (method, point):

    * ``over="support"``: every task keeps only ``n`` support ratings (``points`` default
      :data:`SUPPORT_SIZES`); only tasks with at least ``max(points)`` of them take part, so
      every point averages over the same tasks and queries;
    * ``over="inner_steps"``: each gradient-based learner adapts with ``k`` steps (default
      :data:`INNER_STEPS`; its own trained count is always a point), its step count set for the
      measurement and restored after.
    """
    rows = []
    if over == "support":
        sizes = tuple(points or SUPPORT_SIZES)
        fns = {name: adapt_and_score_fn(learner) for name, learner in learners.items()}  # one trace per learner
        for n in sizes:
            limited = limit_support(tasks, n, seed=seed, min_tasks_support=max(sizes))
            if len(limited) == 0:
                raise ValueError(f"No task of {tasks.name!r} has {max(sizes)} support ratings; use smaller sizes.")
            for name, learner in learners.items():
                metrics = evaluate_tasks(learner, encoded, limited, batch_size=batch_size, fn=fns[name])
                rows.append({"method": name, "support": n, **metrics})
        return pd.DataFrame(rows)
    if over != "inner_steps":
        raise ValueError(f"over must be 'support' or 'inner_steps', got {over!r}.")
    for name, learner in learners.items():
        trained = learner.adaptation_steps
        if trained is None:
            raise ValueError(f"{type(learner).__name__} does not adapt by gradient steps; it has no inner-step curve.")
        for k in sorted(set(points or INNER_STEPS) | {trained}):
            with learner.adaptation_steps_set(k):
                metrics = evaluate_tasks(learner, encoded, tasks, batch_size=batch_size, jit_compile=False)
            rows.append({"method": name, "inner_steps": k, **metrics})
    return pd.DataFrame(rows)


def plot_curve(curve: pd.DataFrame, x: str, metric: str, path: str | os.PathLike, title: str = "") -> None:
    """Save one line per method of ``metric`` against ``x`` as a PNG (and the CSV beside it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for method, group in curve.groupby("method", sort=False):
        group = group.sort_values(x)
        ax.plot(group[x], group[metric], marker="o", label=method)
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    curve.to_csv(os.path.splitext(os.fspath(path))[0] + ".csv", index=False)
