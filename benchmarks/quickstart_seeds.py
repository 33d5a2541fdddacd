"""The quickstart's comparison over seeds: mean ± 95 % CI and paired tests over tasks.

    PYTHONPATH=. python benchmarks/quickstart_seeds.py              # seeds 0-2, the quickstart's settings
    PYTHONPATH=. python benchmarks/quickstart_seeds.py --steps 100  # a quick look

Each seed runs what ``tfmetarec quickstart --seed S`` runs (synthetic data, MeLU 32-dim
embeddings and 64-64 decision layers, MAML with 5 inner steps, 1500 meta-steps, the global
baseline with 1500 steps, fine-tune step size chosen on validation users) and scores every
task. Writes ``benchmarks/results/quickstart/``: ``per_task.csv.gz``, ``summary.csv``,
``tests.csv`` and ``quickstart.md`` (the README's table).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pandas as pd  # noqa: E402

METRICS = ("MAE", "RMSE", "nDCG@1", "nDCG@3", "nDCG@5")


def run_seed(seed: int, steps: int) -> pd.DataFrame:
    """Per-task metrics of MAML, no adaptation and fine-tuning for one seed."""
    from tfmetarec.config import ExperimentConfig, TrainConfig
    from tfmetarec.config import SplitConfig
    from tfmetarec.evaluation.protocol import evaluate_scenarios
    from tfmetarec.experiment import compared_learners, train

    config = ExperimentConfig(split=dataclasses.replace(SplitConfig(), seed=seed),
                              train=dataclasses.replace(TrainConfig(), meta_steps=steps, pretrain_steps=steps,
                                                        seed=seed))
    run = train(config, verbose=0)
    learners = compared_learners(run)
    frame = evaluate_scenarios(learners, run.prepared.encoded, run.prepared.scenarios,
                              batch_size=config.train.batch_size, jit_compile=False, per_task=True)
    return frame.assign(seed=seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--out", default="benchmarks/results/quickstart")
    args = parser.parse_args(argv)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from tfmetarec.config import SCENARIOS
    from tfmetarec.evaluation.stats import compare, mean_ci, to_markdown_tests

    started = time.time()
    frames = []
    for seed in args.seeds:
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            frames.append(pool.submit(run_seed, seed, args.steps).result())
        print(f"seed {seed} done ({time.time() - started:.0f} s)", flush=True)
    per_task = pd.concat(frames, ignore_index=True)
    per_seed = per_task.groupby(["scenario", "method", "seed"])[list(METRICS)].mean().reset_index()
    rows = []
    for scenario in SCENARIOS:
        for method, g in per_seed[per_seed.scenario == scenario].groupby("method"):
            row = {"scenario": scenario, "method": method, "seeds": len(g),
                   "tasks": int(per_task[(per_task.scenario == scenario) & (per_task.method == method)].shape[0])}
            for metric in METRICS:
                row[metric], row[f"{metric}_ci"] = mean_ci(g[metric].to_numpy())
            rows.append(row)
    summary = pd.DataFrame(rows)
    keyed = per_task.assign(task=per_task.seed.astype(str) + ":" + per_task.task.astype(str))
    tests = pd.concat([compare(keyed, "maml", other, metrics=("MAE", "nDCG@3")) for other in
                       ("no-adaptation", "fine-tune")], ignore_index=True)
    header = ["scenario", "method", "tasks", *METRICS]
    lines = ["| " + " | ".join(header) + " |", "|---|---|---:|" + "---:|" * len(METRICS)]
    for _, r in summary.iterrows():
        cells = [r.scenario, r.method, str(r.tasks)] + [f"{r[m]:.4f} ± {r[m + '_ci']:.4f}" for m in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    page = "\n".join(lines) + "\n\nPaired tests over (seed, task) pairs:\n\n" + to_markdown_tests(tests) + "\n"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    per_task.to_csv(out / "per_task.csv.gz", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    tests.to_csv(out / "tests.csv", index=False)
    (out / "quickstart.md").write_text(page + f"\nSeeds {args.seeds}, {args.steps} steps, "
                                       f"{time.time() - started:.0f} s.\n", encoding="utf-8")
    print(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
