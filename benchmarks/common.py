"""Timing, memory and roofline helpers shared by the benchmark scripts."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import subprocess
import time
from collections.abc import Callable

import tensorflow as tf


def median_rate(fn: Callable[[], object], calls: int, rounds: int) -> tuple[float, list[float]]:
    """Median seconds per call over ``rounds`` rounds of ``calls`` calls (after the caller's warm-up)."""
    per_call = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        per_call.append((time.perf_counter() - start) / calls)
    return statistics.median(per_call), per_call


def matmul_gflops(n: int = 2048, calls: int = 5, rounds: int = 5) -> float:
    """The machine's float32 matmul throughput (GFLOP/s), our roofline."""
    a = tf.random.normal([n, n])
    b = tf.random.normal([n, n])
    mm = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    mm()
    seconds, _ = median_rate(lambda: mm().numpy(), calls, rounds)
    return 2 * n**3 / seconds / 1e9


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> str:
    """CPU model, core count, Python and TensorFlow versions, one line."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, TensorFlow {tf.__version__}"


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    """A Markdown table of ``rows`` restricted to ``columns``."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        cells = []
        for c in columns:
            v = row.get(c, "")
            cells.append(f"{v:.3g}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(path: str, sections: list[str]) -> int:
    """Print ``sections`` under the machine's description and write them to ``path``; 0 (an exit status)."""
    from pathlib import Path

    text = "\n".join([f"Machine: {machine()}", "", *sections])
    print(text)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return 0


def datasets_present(datasets: list[str]) -> list[str]:
    """``datasets`` without MovieLens 100K when its files are missing (saying so)."""
    from tfmetarec.data.paths import movielens_100k_dir

    out = list(datasets)
    if "movielens-100k" in out and not (movielens_100k_dir() / "u.data").exists():
        print(f"MovieLens 100K not found at {movielens_100k_dir()} (set TFMETAREC_DATA_DIR); running without it.")
        out.remove("movielens-100k")
    return out


def write_mean_sd_table(results, keys: list[str], metrics: list[str], caption: str, out: str) -> str:
    """Mean ± sd over seeds of ``metrics`` for each ``keys`` group, as Markdown written to
    ``out`` (and returned); ``caption`` goes above the table."""
    from pathlib import Path

    grouped = results.groupby(keys, sort=False)[metrics]
    mean, std = grouped.mean(), grouped.std(ddof=1).fillna(0.0)
    lines = [caption, "", "| " + " | ".join([*keys, *metrics]) + " |",
             "|" + "---|" * len(keys) + "---:|" * len(metrics)]
    for key in mean.index:
        key = key if isinstance(key, tuple) else (key,)
        cells = [f"{k:g}" if isinstance(k, float) else str(k) for k in key]
        cells += [f"{mean.loc[key, m]:.4f} ± {std.loc[key, m]:.4f}" for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(table, encoding="utf-8")
    return table


def run_groups(fn, groups, *args, saved=None, resume: bool = False):
    """``fn(dataset, seed, *args)`` (a per-task frame with ``dataset`` and ``seed`` columns) for every
    ``(dataset, seed)`` of ``groups``, each in a fresh spawned process (its own XLA state), all rows
    concatenated. With ``saved`` (a ``.csv.gz`` path) the rows so far are written after each group;
    with ``resume`` the groups already there are kept, not run again."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from pathlib import Path

    import pandas as pd

    saved = None if saved is None else Path(saved)
    frames = [pd.read_csv(saved)] if resume and saved is not None and saved.is_file() else []
    context = multiprocessing.get_context("spawn")
    for dataset, seed in groups:
        if any(((f.dataset == dataset) & (f.seed == seed)).any() for f in frames):
            continue
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            frames.append(pool.submit(fn, dataset, seed, *args).result())
        if saved is not None:
            saved.parent.mkdir(parents=True, exist_ok=True)
            pd.concat(frames, ignore_index=True).to_csv(saved, index=False)
    return pd.concat(frames, ignore_index=True)


def mean_ci_lines(per_task, by: list[str], metrics=("MAE", "nDCG@3")) -> list[str]:
    """Markdown rows ``| <by values> | mean ± 95 % interval per metric |`` over the tasks of each group."""
    from tfmetarec.evaluation.stats import mean_ci

    lines = []
    for key, g in per_task.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        cells = [str(k) for k in key]
        for metric in metrics:
            mean, ci = mean_ci(g[metric].to_numpy())
            cells.append(f"{mean:.4f} ± {ci:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def add_group_arguments(parser, out: str, steps: int = 1500) -> None:
    """The options every per-(dataset, seed) benchmark takes: ``--seeds``, ``--steps``, ``--out``, ``--resume``."""
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=steps, help="meta-training (and pretraining) steps")
    parser.add_argument("--out", default=out)
    parser.add_argument("--resume", action="store_true", help="keep the (dataset, seed) groups already in --out")
