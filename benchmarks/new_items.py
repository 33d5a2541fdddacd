"""What makes new items rank: an ablation on the item-cold and user+item-cold scenarios, 3 seeds.

    PYTHONPATH=. python benchmarks/new_items.py                      # synthetic + MovieLens 100K, seeds 0-2
    PYTHONPATH=. python benchmarks/new_items.py --datasets synthetic --seeds 0 --steps 100   # a smoke run

For each dataset and seed (each in a fresh process), the library's default run (MeLU,
32-wide field embeddings, decision layers 64-64; MAML with 5 inner steps on the decision
layers; the MeLU protocol split; ``train.meta_steps`` / ``pretrain_steps`` = ``--steps``):

* **levers that need no retraining**: two-sided adaptation (new items warmed up from their
  first raters' support ratings, :mod:`tfmetarec.learners.item_warmup`) off and at shrinkage
  1 / 3 / 10, applied to every model-based method alike;
* **levers that retrain MAML**: a ranking-aware query loss (``ranking_weight`` 0.5, pairwise),
  item-ID embeddings (``use_ids``), sum pooling of list fields, and the memory-augmented
  learner (``mamo``), each evaluated with the default warm-up;
* **baselines**: no adaptation and fine-tuning (the run's pretrained model, step size chosen on
  validation users), item-mean and popularity. The item statistics are indexed by item table
  row and, in the "+warm" variants, also count the scenario's support ratings, so every
  method sees exactly the same revealed ratings.

Every method is scored per task. The summary gives mean ± 95 % interval over tasks pooled over
seeds; paired sign-flip tests over the tasks *of each seed* compare the default
(``maml+warm``: MAML with the default warm-up) with every other method. Writes
``benchmarks/results/new_items/``: ``per_task.csv.gz``, ``tests.csv`` and ``new_items.md``.
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

SCENARIOS = ("item_cold", "user_item_cold", "user_cold")
DEFAULT = "maml+warm"
WARMUPS = (1.0, 3.0, 10.0)


def _levers(config):
    """(name, config) of each MAML variant that is trained again."""
    from tfmetarec.objectives import QueryLoss

    learner, model = config.learner, config.model
    return [
        ("maml-ranking", dataclasses.replace(config, learner=learner.replace(
            query_loss=QueryLoss(ranking_weight=0.5, ranking_loss="pairwise")))),
        ("maml-ids", dataclasses.replace(config, model=model.replace(use_ids=True))),
        ("maml-sum-pooling", dataclasses.replace(config, model=model.replace(list_pooling="sum"))),
        ("mamo", dataclasses.replace(config, learner=learner.replace(name="mamo"))),
    ]


def _item_statistics(name: str, model, prepared, support=None):
    """Item-mean or popularity indexed by item table row, from the training ratings plus ``support``."""
    from tfmetarec.learners import ItemMean, Popularity

    rows = model.num_table_items
    learner = (ItemMean if name == "item-mean" else Popularity)(model, num_items=rows)
    ratings = prepared.train_ratings
    items = prepared.encoded.item_rows(ratings["item"])
    values = ratings["rating"].to_numpy(np.float64)
    if support is not None:
        items, values = np.concatenate([items, support.item_row]), np.concatenate([values, support.rating])
    learner.set_statistics(np.bincount(items, minlength=rows).astype(np.float64),
                           np.bincount(items, weights=values, minlength=rows),
                           float(ratings["rating"].mean()))
    return learner


def run_group(dataset: str, seed: int, steps: int, levers: bool = True, settings: tuple[str, ...] = ()) -> pd.DataFrame:
    """Per-task metrics of every method on one (dataset, seed); ``settings`` (``KEY=VALUE``, as the
    CLI's ``--set``) change the base config of every method."""
    from tfmetarec.config import ExperimentConfig, TrainConfig, apply_settings, parse_settings
    from tfmetarec.evaluation.protocol import per_task_table, predict_scenarios
    from tfmetarec.workflows import build_learner, build_model, fit_learner
    from tfmetarec.workflows.evaluate import compared_learners
    from tfmetarec.workflows.train import train

    started = time.time()
    config = ExperimentConfig(dataset=dataset, train=TrainConfig(meta_steps=steps, pretrain_steps=steps, seed=seed))
    config = dataclasses.replace(config, split=dataclasses.replace(config.split, seed=seed))
    config = apply_settings(config, parse_settings(list(settings)), from_text=True)
    default_warmup = config.train.item_warmup
    run = train(config, tempfile.mkdtemp(prefix="new_items_"), verbose=0)
    prepared = run.prepared
    scenarios = {s: prepared.scenarios[s] for s in SCENARIOS if len(prepared.scenarios[s])}
    print(f"[{dataset} seed {seed}] trained maml and the baseline ({time.time() - started:.0f} s)", flush=True)

    learners = compared_learners(run)
    if levers:
        for name, variant in _levers(config):
            learner = build_learner(variant, build_model(variant, prepared.encoded), prepared)
            fit_learner(learner, prepared, steps)
            learners[name] = learner
            print(f"[{dataset} seed {seed}] trained {name} ({time.time() - started:.0f} s)", flush=True)

    def scored(methods, warmup, suffix):
        predictions = predict_scenarios(methods, prepared.encoded, scenarios, batch_size=config.train.batch_size,
                                        jit_compile=False, item_warmup=warmup)
        return per_task_table(predictions, scenarios).assign(method=lambda f: f.method + suffix)

    frames = [scored({k: v for k, v in learners.items() if not k.startswith(("maml-", "mamo"))}, None, ""),
              scored(learners, default_warmup, "+warm")]
    item_scenarios = {s: t for s, t in scenarios.items() if s != "user_cold"}
    for warmup in WARMUPS:
        if warmup != default_warmup:
            predictions = predict_scenarios({"maml": run.learner}, prepared.encoded, item_scenarios,
                                            batch_size=config.train.batch_size, jit_compile=False, item_warmup=warmup)
            frames.append(per_task_table(predictions, item_scenarios).assign(method=f"maml+warm({warmup:g})"))
    for name in ("item-mean", "popularity"):
        for scenario, tasks in scenarios.items():
            for support, suffix in ((None, ""), (tasks.support, "+warm")):
                stats = _item_statistics(name, run.learner.model, prepared, support)
                predictions = predict_scenarios({name + suffix: stats}, prepared.encoded, {scenario: tasks},
                                                batch_size=config.train.batch_size, jit_compile=False)
                frames.append(per_task_table(predictions, {scenario: tasks}))
    print(f"[{dataset} seed {seed}] evaluated ({time.time() - started:.0f} s)", flush=True)
    return pd.concat(frames, ignore_index=True).assign(dataset=dataset, seed=seed)


def summarise(per_task: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Mean ± 95 % interval over (seed, task), per-seed paired tests against the default, the page."""
    from tfmetarec.evaluation.stats import compare, mean_ci

    rows = []
    for (dataset, scenario, method), g in per_task.groupby(["dataset", "scenario", "method"], sort=False):
        row = {"dataset": dataset, "scenario": scenario, "method": method, "tasks": len(g)}
        for metric in ("MAE", "nDCG@3"):
            row[metric], row[f"{metric}_ci"] = mean_ci(g[metric].to_numpy())
        rows.append(row)
    summary = pd.DataFrame(rows)
    tests = []
    for (dataset, seed), g in per_task.groupby(["dataset", "seed"]):
        for other in sorted(set(g.method) - {DEFAULT}):
            tests.append(compare(g, DEFAULT, other, seed=int(seed)).assign(dataset=dataset, seed=seed))
    tests = pd.concat(tests, ignore_index=True)
    lines = ["# New items: ablation", ""]
    for dataset in summary.dataset.unique():
        s = summary[summary.dataset == dataset]
        t = tests[tests.dataset == dataset]
        seeds = sorted(per_task[per_task.dataset == dataset].seed.unique())
        lines += [f"## {dataset} (seeds {', '.join(map(str, seeds))}; mean ± 95 % interval over tasks of all seeds)",
                  "", "Paired p: the largest per-seed p of " + DEFAULT + " against the method (sign-flip test over "
                  "the tasks of one seed); wins: seeds where " + DEFAULT + " is significantly better (p < 0.05).", ""]
        for scenario in SCENARIOS:
            part = s[s.scenario == scenario]
            if not len(part):
                continue
            lines += [f"### {scenario}", "", "| method | MAE | nDCG@3 | nDCG@3 p (max over seeds) | nDCG@3 wins | "
                      "MAE p (max) | MAE wins |", "|---|---:|---:|---:|---:|---:|---:|"]
            for _, r in part.sort_values("nDCG@3", ascending=False).iterrows():
                cells = []
                for metric in ("nDCG@3", "MAE"):
                    x = t[(t.scenario == scenario) & (t.baseline == r.method) & (t.metric == metric)]
                    cells += ["—", "—"] if r.method == DEFAULT or not len(x) else [
                        f"{x.p.max():.3g}", f"{int((x.verdict == 'better').sum())}/{len(x)}"]
                lines.append(f"| {r.method} | {r.MAE:.4f} ± {r.MAE_ci:.4f} | {r['nDCG@3']:.4f} ± "
                             f"{r['nDCG@3_ci']:.4f} | " + " | ".join(cells) + " |")
            lines.append("")
    return summary, tests, "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    from common import add_group_arguments, run_groups

    parser.add_argument("--datasets", nargs="+", default=["synthetic", "movielens-100k"])
    parser.add_argument("--no-levers", action="store_true", help="skip the retrained MAML variants")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting of the base config of every method, as tfmetarec's --set (e.g. "
                             "train.select_every=100); repeatable")
    add_group_arguments(parser, "benchmarks/results/new_items")
    args = parser.parse_args(argv)

    started = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    per_task = run_groups(run_group, [(d, s) for d in args.datasets for s in args.seeds], args.steps,
                          not args.no_levers, tuple(args.settings), saved=out / "per_task.csv.gz", resume=args.resume)
    summary, tests, page = summarise(per_task)
    summary.to_csv(out / "summary.csv", index=False)
    tests.to_csv(out / "tests.csv", index=False)
    (out / "new_items.md").write_text(page + f"\nTotal time {time.time() - started:.0f} s.\n", encoding="utf-8")
    print(page)
    print(f"Done in {time.time() - started:.0f} s; files in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
