"""Keep the last step, or choose the checkpoint on validation tasks with new items? 3 seeds, paired.

    PYTHONPATH=. python benchmarks/checkpoint_choice.py                 # synthetic + MovieLens 100K, seeds 0-2
    PYTHONPATH=. python benchmarks/checkpoint_choice.py --datasets synthetic --seeds 0 --steps 200   # smoke

Runs :func:`new_items.run_group` (no retrained levers) twice per (dataset, seed), each group in a
fresh process: once as the library ran before checkpoint choice (``train.select_every=0``,
``split.validation_item_fraction=0``: both trainings keep their last step, every existing item
trains) and once with the defaults (a tenth of the existing items held out as pseudo-new items;
every 100 steps both trainings scored on the validation users and on the pseudo-new items' tasks,
the step with the lowest mean validation MAE kept). The scenario tasks are the same in both runs
(same split seed), so every method is compared with itself task by task: paired sign-flip tests
over the tasks of each seed. Writes ``benchmarks/results/checkpoint_choice/``: ``last/`` and
``chosen/`` (each run's ``per_task.csv.gz`` and ``new_items.md``, the latter's tests against
``maml+warm`` as in ``new_items.py``), ``paired.csv`` and ``checkpoint_choice.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

LAST = ("train.select_every=0", "split.validation_item_fraction=0")
METHODS = ("maml+warm", "no-adaptation+warm", "fine-tune+warm", "item-mean+warm", "popularity+warm")


def paired(last: pd.DataFrame, chosen: pd.DataFrame) -> pd.DataFrame:
    """Per (method, dataset, scenario, metric): means without and with checkpoint choice over the
    tasks of all seeds, and the seeds where the choice is significantly better / worse (p < 0.05)."""
    from tfmetarec.evaluation.stats import paired_test

    rows = []
    for method in METHODS:
        for (dataset, scenario), g in chosen[chosen.method == method].groupby(["dataset", "scenario"], sort=False):
            before = last[(last.method == method) & (last.dataset == dataset) & (last.scenario == scenario)]
            for metric in ("MAE", "nDCG@3"):
                with_choice, without, better, worse = [], [], 0, 0
                for seed in sorted(g.seed.unique()):
                    a = g[g.seed == seed].set_index("task_id")[metric]
                    b = before[before.seed == seed].set_index("task_id")[metric]
                    common = a.index.intersection(b.index)
                    if not len(common):
                        continue
                    test = paired_test(a[common].to_numpy(), b[common].to_numpy(), seed=int(seed))
                    gain = -test["diff"] if metric == "MAE" else test["diff"]
                    better += int(test["p"] < 0.05 and gain > 0)
                    worse += int(test["p"] < 0.05 and gain < 0)
                    with_choice += a[common].tolist()
                    without += b[common].tolist()
                if with_choice:
                    rows.append({"method": method, "dataset": dataset, "scenario": scenario, "metric": metric,
                                 "last": np.mean(without), "chosen": np.mean(with_choice),
                                 "diff": np.mean(with_choice) - np.mean(without), "better": better, "worse": worse,
                                 "seeds": g.seed.nunique()})
    return pd.DataFrame(rows)


def page(table: pd.DataFrame) -> str:
    lines = ["# Checkpoint choice against the last step", "",
             "Mean over the tasks of all seeds; better / worse: seeds where choosing the checkpoint is "
             "significantly better / worse for that method (paired sign-flip test over the seed's tasks, p < 0.05).",
             "", "| method | dataset | scenario | metric | last step | chosen | difference | better | worse |",
             "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for _, r in table.iterrows():
        lines.append(f"| {r.method} | {r.dataset} | {r.scenario} | {r.metric} | {r['last']:.4f} | {r.chosen:.4f} | "
                     f"{r['diff']:+.4f} | {r.better}/{r.seeds} | {r.worse}/{r.seeds} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    from common import add_group_arguments, run_groups
    from new_items import run_group, summarise

    parser.add_argument("--datasets", nargs="+", default=["synthetic", "movielens-100k"])
    add_group_arguments(parser, "benchmarks/results/checkpoint_choice")
    args = parser.parse_args(argv)
    started = time.time()
    out = Path(args.out)
    frames = {}
    for name, settings in (("last", LAST), ("chosen", ())):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        frames[name] = run_groups(run_group, [(d, s) for d in args.datasets for s in args.seeds], args.steps, False,
                                  settings, saved=folder / "per_task.csv.gz", resume=args.resume)
        (folder / "new_items.md").write_text(summarise(frames[name])[2] + "\n", encoding="utf-8")
    table = paired(frames["last"], frames["chosen"])
    table.to_csv(out / "paired.csv", index=False)
    text = page(table)
    (out / "checkpoint_choice.md").write_text(text + f"\nTotal time {time.time() - started:.0f} s.\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
