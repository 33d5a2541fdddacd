"""What `--fixed-tasks` changes: meta-training on a published split's own support/query tasks
against drawing a new query at every step (the default), 3 seeds.

    PYTHONPATH=. python benchmarks/fixed_tasks.py                           # MovieLens 100K, seeds 0-2
    PYTHONPATH=. python benchmarks/fixed_tasks.py --dataset synthetic --steps 100 --seeds 0   # a smoke run

For each seed, the library's own MeLU-protocol split of the dataset is written as a generic
split file (``user, item, rating, partition, role``; in every partition each user's ratings
are shuffled with the seed and the last 10 are the query), then the default MAML (MeLU,
5 inner steps, ``--steps`` meta-steps, no pretraining) is meta-trained twice on it, with and
without ``train.fixed_tasks``, and scored on the same evaluation tasks. Paired sign-flip tests
over the tasks of each seed. Writes ``benchmarks/results/fixed_tasks/`` (per-task CSV and
``fixed_tasks.md``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd

QUERY = 10
SCENARIOS = ("warm", "user_cold", "item_cold", "user_item_cold")


def split_file(prepared, seed: int, path: Path) -> Path:
    """The prepared split as a generic split file with a support/query role on every row."""
    rng = np.random.default_rng(seed)
    parts = {"meta_train": prepared.split.meta_train, **prepared.split.partitions}
    frames = []
    for partition, frame in parts.items():
        frame = frame[["user", "item", "rating"]].sample(frac=1.0, random_state=int(rng.integers(2**31)))
        position = frame.groupby("user").cumcount(ascending=False)  # 0 = the user's last row
        frames.append(frame.assign(partition=partition, role=np.where(position < QUERY, "query", "support")))
    pd.concat(frames, ignore_index=True).to_csv(path, index=False)
    return path


def run_seed(dataset: str, seed: int, steps: int) -> pd.DataFrame:
    from tfmetarec.config import ExperimentConfig, TrainConfig
    from tfmetarec.evaluation.protocol import per_task_table, predict_scenarios
    from tfmetarec.workflows.prepare import prepare
    from tfmetarec.workflows.train import train

    started = time.time()
    base = ExperimentConfig(dataset=dataset, train=TrainConfig(meta_steps=steps, pretrain_steps=0, seed=seed,
                                                               finetune_lr=0.05))
    base = dataclasses.replace(base, split=dataclasses.replace(base.split, seed=seed))
    folder = Path(tempfile.mkdtemp(prefix="fixed_tasks_"))
    path = split_file(prepare(base), seed, folder / "split.csv")
    frames = []
    for fixed in (False, True):
        config = dataclasses.replace(base, split_file=str(path),
                                     train=dataclasses.replace(base.train, fixed_tasks=fixed))
        run = train(config, folder / f"run-{fixed}", verbose=0)
        scenarios = {s: run.prepared.scenarios[s] for s in SCENARIOS if len(run.prepared.scenarios[s])}
        predictions = predict_scenarios({"fixed" if fixed else "drawn": run.learner}, run.prepared.encoded,
                                        scenarios, jit_compile=False, item_warmup=config.train.item_warmup)
        frames.append(per_task_table(predictions, scenarios))
        print(f"[{dataset} seed {seed}] fixed_tasks={fixed} done ({time.time() - started:.0f} s)", flush=True)
    return pd.concat(frames, ignore_index=True).assign(dataset=dataset, seed=seed)


def summarise(per_task: pd.DataFrame) -> str:
    from common import mean_ci_lines

    from tfmetarec.evaluation.stats import compare, to_markdown_tests

    lines = ["# --fixed-tasks against drawn queries", "", "| scenario | meta-training | MAE | nDCG@3 |",
             "|---|---|---:|---:|", *mean_ci_lines(per_task, ["scenario", "method"])]
    tests = pd.concat([compare(g, "fixed", "drawn", seed=int(seed)).assign(seed=seed)
                       for seed, g in per_task.groupby("seed")], ignore_index=True)
    lines += ["", "Paired tests per seed, fixed - drawn:", "", to_markdown_tests(tests), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    from common import add_group_arguments, run_groups

    parser.add_argument("--dataset", default="movielens-100k")
    add_group_arguments(parser, "benchmarks/results/fixed_tasks")
    args = parser.parse_args(argv)

    started = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    per_task = run_groups(run_seed, [(args.dataset, seed) for seed in args.seeds], args.steps,
                          saved=out / "per_task.csv.gz", resume=args.resume)
    page = summarise(per_task) + f"\n{args.dataset}, {args.steps} steps. Total time {time.time() - started:.0f} s.\n"
    (out / "fixed_tasks.md").write_text(page, encoding="utf-8")
    print(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
