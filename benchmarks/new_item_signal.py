"""How much can any method know about a new item's rank beyond its own first ratings?

    PYTHONPATH=. python benchmarks/new_item_signal.py                      # synthetic + MovieLens 100K, seeds 0-2
    PYTHONPATH=. python benchmarks/new_item_signal.py --per-task benchmarks/results/new_items/per_task.csv.gz

Issue 20 asks the default learner to rank new items better than the warmed item mean (and the
other warmed baselines) with p < 0.05 over the tasks of each of 3 seeds. This script measures
the two things that decide whether that is possible on a dataset, without training a model:

* **the collaborative signal there is**: on the item-cold and user+item-cold tasks of the
  library's default split, the warmed item mean (each item's mean over the training ratings
  and the scenario's *support* ratings, shrunk toward the global mean with a pseudo-count of 5,
  as :class:`~tfmetarec.learners.ItemMean`) against a user-kNN correction of it from the same
  revealed ratings: a query item's first raters (the other tasks' support rows) vote with
  their mean-centred rating of it, weighted by their similarity to the task's user (cosine of
  mean-centred rating vectors over the training and support ratings, shrunk by co-rated count
  ``c / (c + kappa)``). It uses everything a service knows, the user's whole history included,
  which the meta-learned models of the library do not;
* with ``--per-task`` (a ``per_task.csv.gz`` written by ``benchmarks/new_items.py``), **the
  smallest nDCG@3 difference a seed's tasks can show**: for ``maml+warm`` against each warmed
  baseline, the per-task spread of the paired difference and the half-width of its 95 %
  interval (a difference must exceed it to reach p < 0.05 in that seed).

Writes ``benchmarks/results/new_item_signal/signal.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd

SCENARIOS = ("item_cold", "user_item_cold")
KAPPAS = (5.0, 25.0)
ITEM_MEAN_SHRINKAGE = 5.0
MEMORY_LIMIT = 4 * 2**30  # bytes of dense matrices knn_scores may hold
BASELINES = ("item-mean+warm", "no-adaptation+warm", "fine-tune+warm", "popularity+warm")


def knn_scores(train: tuple[np.ndarray, np.ndarray, np.ndarray], support: tuple[np.ndarray, np.ndarray, np.ndarray],
               shape: tuple[int, int], kappa: float) -> tuple[np.ndarray, np.ndarray]:
    """``(item mean [items], correction [users, items])``: the warmed item mean and the user-kNN
    correction of it from the support ratings (see the module), from flat ``(user, item, rating)``
    rows of the training ratings and the scenario's supports."""
    users, items = shape
    need = 4 * (users * users + 4 * users * items)  # dense float32 similarities and rating matrices
    if need > MEMORY_LIMIT:
        raise ValueError(f"the kNN holds dense [users, users] and [users, items] matrices: {users:,} users x "
                         f"{items:,} items need ~{need / 2**30:.1f} GiB (limit {MEMORY_LIMIT / 2**30:.0f} GiB); "
                         "run it on MovieLens 100K / 1M or the synthetic data.")
    u = np.concatenate([train[0], support[0]])
    i = np.concatenate([train[1], support[1]])
    r = np.concatenate([train[2], support[2]]).astype(np.float64)
    mean = r.mean()
    count, total = np.bincount(i, minlength=items), np.bincount(i, weights=r, minlength=items)
    item_mean = (total + ITEM_MEAN_SHRINKAGE * mean) / (count + ITEM_MEAN_SHRINKAGE)
    user_count, user_total = np.bincount(u, minlength=users), np.bincount(u, weights=r, minlength=users)
    user_mean = np.where(user_count > 0, user_total / np.maximum(user_count, 1), mean)
    centred = np.zeros(shape, np.float32)
    centred[u, i] = r - user_mean[u]
    rated = np.zeros(shape, np.float32)
    rated[u, i] = 1.0
    norms = np.sqrt((centred * centred).sum(1))
    co = rated @ rated.T
    similarity = (centred @ centred.T) / (np.outer(norms, norms) + 1e-9) * co / (co + kappa)
    np.fill_diagonal(similarity, 0.0)
    votes = np.zeros(shape, np.float32)  # a first rater's mean-centred rating of the new item
    voted = np.zeros(shape, np.float32)
    su, si, sr = support
    votes[su, si] = sr - user_mean[su]
    voted[su, si] = 1.0
    correction = (similarity @ votes) / (np.abs(similarity) @ voted + 1.0)
    return item_mean, correction


def signal_group(dataset: str, seed: int) -> pd.DataFrame:
    """Per-task nDCG@3 of the warmed item mean and its kNN corrections on one (dataset, seed)."""
    from tfmetarec.config import ExperimentConfig, TrainConfig
    from tfmetarec.evaluation.metrics import ndcg_at_k
    from tfmetarec.workflows.prepare import prepare

    config = ExperimentConfig(dataset=dataset, train=TrainConfig(seed=seed))
    prepared = prepare(dataclasses.replace(config, split=dataclasses.replace(config.split, seed=seed)))
    encoded, ratings = prepared.encoded, prepared.train_ratings
    train = (encoded.user_index.get_indexer(ratings["user"]).astype(np.int64),
             encoded.item_rows(ratings["item"]).astype(np.int64), ratings["rating"].to_numpy(np.float64))
    if (train[0] < 0).any():
        raise ValueError(f"{dataset}: training ratings name users outside the encoded data.")
    rows = []
    for scenario in SCENARIOS:
        tasks = prepared.scenarios[scenario]
        if not len(tasks):
            continue
        support = (tasks.support.user_row.astype(np.int64), tasks.support.item_row.astype(np.int64),
                   tasks.support.rating.astype(np.float64))
        shape = (len(encoded.user_ids), encoded.num_table_items)
        scored = {kappa: knn_scores(train, support, shape, kappa) for kappa in KAPPAS}
        for t in range(len(tasks)):
            user, item, rating = tasks.query.task(t)
            item_mean = scored[KAPPAS[0]][0][item]
            row = {"dataset": dataset, "seed": seed, "scenario": scenario, "task": t,
                   "item-mean+warm": ndcg_at_k(item_mean, rating, 3)}
            for kappa, (_, correction) in scored.items():
                row[f"knn+warm (kappa {kappa:g})"] = ndcg_at_k(item_mean + correction[user, item], rating, 3)
            rows.append(row)
    return pd.DataFrame(rows)


def signal_table(per_task: pd.DataFrame) -> list[str]:
    from tfmetarec.evaluation.stats import paired_test

    methods = [c for c in per_task.columns if c.startswith("knn")]
    lines = ["| dataset | scenario | seed | tasks | item-mean+warm | " + " | ".join(
        f"{m}: difference [95 % CI], p" for m in methods) + " |", "|---|---|---:|---:|---:|" + "---:|" * len(methods)]
    for (dataset, scenario, seed), g in per_task.groupby(["dataset", "scenario", "seed"], sort=False):
        cells = []
        for m in methods:
            r = paired_test(g[m].to_numpy(), g["item-mean+warm"].to_numpy(), seed=int(seed))
            cells.append(f"{r['diff']:+.4f} [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}], {r['p']:.3g}")
        lines.append(f"| {dataset} | {scenario} | {seed} | {len(g)} | {g['item-mean+warm'].mean():.4f} | "
                     + " | ".join(cells) + " |")
    return lines


def resolution_table(per_task: pd.DataFrame) -> list[str]:
    """For ``maml+warm`` against each warmed baseline: per seed, the paired difference, its
    per-task spread and the 95 % half-width a difference must exceed to reach p < 0.05."""
    from tfmetarec.evaluation.stats import t975

    per_task = per_task[per_task.scenario.isin(SCENARIOS)]
    lines = ["| dataset | scenario | seed | tasks | vs | difference | SD of the per-task difference | "
             "smallest significant difference |", "|---|---|---:|---:|---|---:|---:|---:|"]
    for (dataset, scenario, seed), g in per_task.groupby(["dataset", "scenario", "seed"], sort=False):
        mine = g[g.method == "maml+warm"].set_index("task")["nDCG@3"]
        for baseline in BASELINES:
            theirs = g[g.method == baseline].set_index("task")["nDCG@3"]
            d = (mine - theirs.reindex(mine.index)).dropna().to_numpy()
            if len(d) < 2:
                continue
            sd = d.std(ddof=1)
            lines.append(f"| {dataset} | {scenario} | {seed} | {len(d)} | {baseline} | {d.mean():+.4f} | {sd:.3f} | "
                         f"{t975(len(d) - 1) * sd / np.sqrt(len(d)):.4f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    from common import datasets_present, machine

    parser.add_argument("--datasets", nargs="+", default=["synthetic", "movielens-100k"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--per-task", nargs="*", default=[], metavar="CSV",
                        help="per_task.csv.gz files of benchmarks/new_items.py: adds the resolution table")
    parser.add_argument("--out", default="benchmarks/results/new_item_signal/signal.md")
    args = parser.parse_args(argv)
    started = time.time()
    per_task = pd.concat([signal_group(d, s) for d in datasets_present(args.datasets) for s in args.seeds],
                         ignore_index=True)
    page = [f"Machine: {machine()}", "", "## The warmed item mean against its user-kNN correction (nDCG@3; "
            "paired over the tasks of each seed, knn minus item mean)", "", *signal_table(per_task), ""]
    if args.per_task:
        runs = pd.concat([pd.read_csv(p) for p in args.per_task], ignore_index=True)
        page += ["## maml+warm against the warmed baselines: what a seed's tasks can resolve (nDCG@3)", "",
                 *resolution_table(runs), ""]
    page.append(f"Total time {time.time() - started:.0f} s.")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(page) + "\n", encoding="utf-8")
    print("\n".join(page))
    return 0


if __name__ == "__main__":
    sys.exit(main())
