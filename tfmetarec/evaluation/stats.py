"""Honest comparisons: 95 % confidence intervals over seeds and paired tests over tasks.

* :func:`mean_ci` -- the mean of a few numbers (one per seed) and the half-width of its
  95 % Student-t confidence interval.
* :func:`paired_test` -- two methods scored on the *same* tasks: the mean per-task
  difference, its 95 % t interval and a two-sided sign-flip permutation p-value (no
  normality assumed; exact for up to 16 tasks, Monte Carlo with a fixed seed above).
* :func:`compare` -- :func:`paired_test` for every scenario of a per-task frame, with a
  verdict that says "better" or "worse" only when the difference is significant.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd

# Two-sided 95 % quantiles of Student's t (the 0.975 quantile) by degrees of freedom.
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
         20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
         29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}
LOWER_IS_BETTER = ("MAE", "RMSE")
ALPHA = 0.05


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (table, interpolated in 1/df)."""
    if df < 1:
        return float("nan")
    if df in _T975:
        return _T975[df]
    if df > 120:
        return 1.960 + (1.980 - 1.960) * 120 / df
    lo = max(k for k in _T975 if k < df)
    hi = min(k for k in _T975 if k > df)
    w = (1 / df - 1 / hi) / (1 / lo - 1 / hi)
    return _T975[hi] + w * (_T975[lo] - _T975[hi])


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """``(mean, half-width)`` of the 95 % t interval of the mean; the half-width is ``nan`` for one value."""
    x = np.asarray(values, dtype="float64")
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return float("nan"), float("nan")
    if len(x) == 1:
        return float(x[0]), float("nan")
    return float(x.mean()), float(t975(len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))


def paired_test(a: Sequence[float], b: Sequence[float], resamples: int = 20000, seed: int = 0) -> dict[str, float]:
    """Paired comparison of ``a`` and ``b`` (same tasks, same order): ``diff`` = mean(a - b),
    ``ci_low``/``ci_high`` its 95 % t interval, ``p`` the two-sided sign-flip permutation
    p-value of ``diff == 0``, ``n`` the number of pairs (pairs with a NaN are dropped)."""
    a, b = np.asarray(a, dtype="float64"), np.asarray(b, dtype="float64")
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired_test needs two 1-D arrays of the same length, got {a.shape} and {b.shape}.")
    d = (a - b)[np.isfinite(a) & np.isfinite(b)]
    n = len(d)
    if n == 0:
        return {"diff": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "p": float("nan"), "n": 0}
    observed = abs(d.mean())
    if n <= 16:  # every sign pattern
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        p = float(np.mean(np.abs(signs @ d) / n >= observed - 1e-12))
    else:
        rng = np.random.default_rng(seed)
        hits = 0
        for lo in range(0, resamples, 2000):
            signs = rng.choice((1.0, -1.0), size=(min(2000, resamples - lo), n))
            hits += int(np.sum(np.abs(signs @ d) / n >= observed - 1e-12))
        p = (hits + 1) / (resamples + 1)
    _, half = mean_ci(d)
    return {"diff": float(d.mean()), "ci_low": float(d.mean() - half), "ci_high": float(d.mean() + half),
            "p": float(p), "n": n}


def verdict(metric: str, diff: float, p: float, alpha: float = ALPHA) -> str:
    """``better`` / ``worse`` (for the first method) when significant at ``alpha``, else ``no significant difference``."""
    if not np.isfinite(p) or p >= alpha or diff == 0:
        return "no significant difference"
    lower_better = metric in LOWER_IS_BETTER
    return "better" if (diff < 0) == lower_better else "worse"


def compare(per_task: pd.DataFrame, method: str, baseline: str, metrics: Sequence[str] = ("MAE", "nDCG@3"),
            by: Sequence[str] = ("scenario",), seed: int = 0) -> pd.DataFrame:
    """Paired tests of ``method`` against ``baseline`` on every group of ``by`` and metric.

    ``per_task`` has one row per (method, task) with columns ``method``, ``task`` (any key
    that identifies a task within its group, e.g. ``seed``/``task_id``), the ``by``
    columns and the metrics. Tasks missing for either method are left out.
    """
    keys = [*by, "task"]
    rows = []
    mine = per_task[per_task.method == method].set_index(keys)
    theirs = per_task[per_task.method == baseline].set_index(keys)
    common = mine.index.intersection(theirs.index)
    for metric in metrics:
        a, b = mine.loc[common, metric], theirs.loc[common, metric]
        for group, index in pd.Series(range(len(common)), index=common).groupby(level=list(by)):
            idx = common[index.to_numpy()]
            result = paired_test(a.loc[idx].to_numpy(), b.loc[idx].to_numpy(), seed=seed)
            group = group if isinstance(group, tuple) else (group,)
            rows.append({**dict(zip(by, group)), "metric": metric, "method": method, "baseline": baseline,
                         **result, "verdict": verdict(metric, result["diff"], result["p"])})
    return pd.DataFrame(rows)


def to_markdown_tests(tests: pd.DataFrame) -> str:
    """A Markdown table of :func:`compare` rows: difference with its 95 % interval, p, verdict."""
    by = [c for c in tests.columns if c not in ("metric", "method", "baseline", "diff", "ci_low", "ci_high", "p", "n",
                                                 "verdict")]
    header = [*by, "metric", "method", "vs", "difference [95 % CI]", "p", "tasks", "verdict"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(by) + "---|---|---|---:|---:|---:|---|"]
    for _, r in tests.iterrows():
        cells = [str(r[c]) for c in by] + [r.metric, r.method, r.baseline,
                                           f"{r['diff']:+.4f} [{r.ci_low:+.4f}, {r.ci_high:+.4f}]", f"{r.p:.4f}",
                                           str(int(r.n)), r.verdict]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = ["compare", "mean_ci", "paired_test", "t975", "to_markdown_tests", "verdict"]
