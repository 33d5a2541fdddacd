"""Cold-start report tables: printable text, Markdown and CSV."""

from __future__ import annotations

import pandas as pd

from tfmetarec.config import SCENARIOS
from tfmetarec.evaluation.stats import mean_ci

METRIC_ORDER = ("tasks", "MAE", "RMSE", "nDCG@1", "nDCG@3", "nDCG@5")


def tidy(report: pd.DataFrame) -> pd.DataFrame:
    """Scenario-major ordering, known metrics first, numbers rounded to 4 places."""
    df = report.copy()
    order = {s: i for i, s in enumerate(SCENARIOS)}
    df["_s"] = df["scenario"].map(lambda s: order.get(s, len(order)))
    df = df.sort_values(["_s", "method"], kind="stable").drop(columns="_s")
    metrics = [c for c in METRIC_ORDER if c in df.columns] + [
        c for c in df.columns if c not in METRIC_ORDER and c not in ("scenario", "method")
    ]
    df = df[["scenario", "method", *metrics]].reset_index(drop=True)
    if "tasks" in df.columns:
        df["tasks"] = df["tasks"].astype(int)
    return df.round(4)


def to_markdown(report: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of the report."""
    df = tidy(report)
    header = "| " + " | ".join(df.columns) + " |"
    rule = "|" + "|".join("---" if c in ("scenario", "method") else "---:" for c in df.columns) + "|"
    lines = [header, rule]
    for _, row in df.iterrows():
        cells = [f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.tolist()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_text(report: pd.DataFrame) -> str:
    """A fixed-width table for the terminal."""
    return tidy(report).to_string(index=False, float_format=lambda v: f"{v:.4f}")


def aggregate_seeds(reports: list[pd.DataFrame]) -> pd.DataFrame:
    """Mean, standard deviation and 95 % confidence interval over seeds of each (scenario, method) metric.

    Returns the tidy layout with a ``seeds`` column and, for each metric ``m``,
    columns ``m`` (the mean), ``m_std`` (sample standard deviation; 0 for
    one seed) and ``m_ci`` (half-width of the 95 % Student-t interval of the mean; NaN for one seed).
    """
    if not reports:
        raise ValueError("No reports to aggregate.")
    frames = [tidy(r).assign(_seed=i) for i, r in enumerate(reports)]
    both = pd.concat(frames, ignore_index=True)
    metrics = [c for c in both.columns if c not in ("scenario", "method", "_seed", "tasks")]
    grouped = both.groupby(["scenario", "method"], sort=False)
    mean = grouped[metrics].mean()
    std = grouped[metrics].std(ddof=1).fillna(0.0).add_suffix("_std")
    ci = grouped[metrics].agg(lambda v: mean_ci(v.to_numpy())[1]).add_suffix("_ci")
    out = pd.concat([grouped["tasks"].mean().rename("tasks"), grouped["_seed"].count().rename("seeds"), mean, std, ci],
                    axis=1)
    ordered = ["tasks", "seeds"] + [c for m in metrics for c in (m, f"{m}_std", f"{m}_ci")]
    return out[ordered].reset_index()


def to_markdown_with_spread(aggregated: pd.DataFrame, metrics: tuple[str, ...] | None = None,
                            spread: str = "ci") -> str:
    """Markdown table of ``mean ± spread`` cells from :func:`aggregate_seeds`: the 95 %
    confidence interval's half-width (``spread="ci"``) or the standard deviation (``"std"``)."""
    if spread not in ("ci", "std"):
        raise ValueError(f"spread must be 'ci' or 'std', got {spread!r}.")
    metrics = metrics or tuple(c for c in aggregated.columns if f"{c}_std" in aggregated.columns)
    cols = ["scenario", "method", "seeds", *metrics]
    lines = ["| " + " | ".join(cols) + " |", "|---|---|---:|" + "|".join("---:" for _ in metrics) + "|"]
    for _, row in aggregated.iterrows():
        cells = [str(row["scenario"]), str(row["method"]), str(int(row["seeds"]))]
        cells += [f"{row[m]:.4f} ± {row[f'{m}_{spread}']:.4f}" for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
