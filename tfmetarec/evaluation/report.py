"""Cold-start report tables: printable text, Markdown and CSV."""

from __future__ import annotations

import pandas as pd

from tfmetarec.data.splits import SCENARIOS

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
