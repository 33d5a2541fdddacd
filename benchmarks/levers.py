"""Levers against the library's defaults on new items, paired per task, 3 seeds.

    PYTHONPATH=. python benchmarks/levers.py                        # the levers below, synthetic + ML-100K
    PYTHONPATH=. python benchmarks/levers.py --only default ids-dropout   # some of the runs (e.g. in 2 shells)
    PYTHONPATH=. python benchmarks/levers.py --report               # the tables from the runs made so far
    PYTHONPATH=. python benchmarks/levers.py --datasets synthetic --seeds 0 --steps 200   # a smoke run

A *lever* is a set of config settings (as the CLI's ``--set``) applied to every method of a run:
the meta-learner and the pretrained baseline behind no adaptation and fine-tuning. Each run is
:func:`new_items.run_group` without its retrained variants, once per (dataset, seed) in a fresh
process: the defaults (``default``) and each lever. The scenario tasks are the same in every run
(same split seed), so each method is compared with itself task by task: paired sign-flip tests
over the tasks of each seed. Writes ``benchmarks/results/levers/``: ``<run>/per_task.csv.gz`` and
``<run>/new_items.md`` (issue 20's table of ``maml+warm`` against the baselines within that run),
``paired.csv`` and ``levers.md`` (every lever against ``default``, per method).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

LEVERS = {
    "ndcg-selection": ("train.select_metric=nDCG@3",),
    "ids": ("model.use_ids=true",),
    "ids-dropout": ("model.use_ids=true", "train.id_dropout=0.5"),
    "padded": ("train.trim_supports=false", "train.padded_min_real=none"),
}
"""The levers this script measures by default: checkpoint choice by validation nDCG@3 instead of
MAE; user and item ID embeddings; ID embeddings with ID dropout (DropoutNet), 0.5; meta-training
supports padded to their power-of-two bucket instead of trimmed (the default before trimming; BENCHMARKS.md's
run measured trimming as the lever, ``trim-supports``, when padding was the default)."""
METHODS = ("maml+warm", "no-adaptation+warm", "fine-tune+warm", "item-mean+warm", "popularity+warm")


def paired(base: pd.DataFrame, variant: pd.DataFrame, methods=METHODS) -> pd.DataFrame:
    """Per (method, dataset, scenario, metric): means of ``base`` and ``variant`` over the tasks of
    all seeds, and the seeds where the variant is significantly better / worse (p < 0.05)."""
    from tfmetarec.evaluation.stats import paired_test

    rows = []
    for method in methods:
        for (dataset, scenario), g in variant[variant.method == method].groupby(["dataset", "scenario"], sort=False):
            before = base[(base.method == method) & (base.dataset == dataset) & (base.scenario == scenario)]
            for metric in ("MAE", "nDCG@3"):
                with_lever, without, better, worse = [], [], 0, 0
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
                    with_lever += a[common].tolist()
                    without += b[common].tolist()
                if with_lever:
                    rows.append({"method": method, "dataset": dataset, "scenario": scenario, "metric": metric,
                                 "base": np.mean(without), "variant": np.mean(with_lever),
                                 "diff": np.mean(with_lever) - np.mean(without), "better": better, "worse": worse,
                                 "seeds": g.seed.nunique()})
    return pd.DataFrame(rows)


def page(table: pd.DataFrame, title: str, base: str, variant: str) -> str:
    """``paired``'s table as Markdown, the columns named ``base`` and ``variant``."""
    lines = [f"# {title}", "",
             f"Mean over the tasks of all seeds; better / worse: seeds where {variant} is significantly better / "
             "worse for that method (paired sign-flip test over the seed's tasks, p < 0.05).",
             "", f"| method | dataset | scenario | metric | {base} | {variant} | difference | better | worse |",
             "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for _, r in table.iterrows():
        lines.append(f"| {r.method} | {r.dataset} | {r.scenario} | {r.metric} | {r.base:.4f} | {r.variant:.4f} | "
                     f"{r['diff']:+.4f} | {r.better}/{r.seeds} | {r.worse}/{r.seeds} |")
    return "\n".join(lines) + "\n"


def parse_lever(text: str) -> tuple[str, tuple[str, ...]]:
    """``name=KEY=VALUE[,KEY=VALUE...]`` -> ``(name, settings)``."""
    name, _, settings = text.partition("=")
    if not name or "=" not in settings:
        raise argparse.ArgumentTypeError(f"a lever is NAME=KEY=VALUE[,KEY=VALUE...]; got {text!r}")
    return name, tuple(s for s in settings.split(",") if s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    from common import add_group_arguments, datasets_present, run_groups
    from new_items import run_group, summarise

    parser.add_argument("--datasets", nargs="+", default=["synthetic", "movielens-100k"])
    parser.add_argument("--lever", dest="levers", action="append", type=parse_lever, default=[],
                        metavar="NAME=KEY=VALUE[,KEY=VALUE]", help="a lever to measure instead of the built-in ones; "
                        "repeatable")
    parser.add_argument("--only", nargs="+", metavar="RUN", help="run only these (default and/or lever names)")
    parser.add_argument("--base", nargs="+", default=[], metavar="KEY=VALUE",
                        help="settings applied to every run, the defaults' included (e.g. model.name=cf)")
    parser.add_argument("--report", action="store_true", help="only write the tables from the runs in --out")
    add_group_arguments(parser, "benchmarks/results/levers")
    args = parser.parse_args(argv)
    levers = dict(args.levers) if args.levers else dict(LEVERS)
    runs = {name: (*args.base, *settings) for name, settings in {"default": (), **levers}.items()}
    unknown = sorted(set(args.only or ()) - set(runs))
    if unknown:
        parser.error(f"unknown runs {unknown}; choose from {sorted(runs)}")
    started = time.time()
    out = Path(args.out)
    groups = [(d, s) for d in datasets_present(args.datasets) for s in args.seeds]
    frames = {}
    for name, settings in runs.items():
        folder = out / name
        if not args.report and (args.only is None or name in args.only):
            folder.mkdir(parents=True, exist_ok=True)
            frame = run_groups(run_group, groups, args.steps, False, settings, saved=folder / "per_task.csv.gz",
                               resume=args.resume)
            (folder / "new_items.md").write_text(summarise(frame)[2] + "\n", encoding="utf-8")
        if (folder / "per_task.csv.gz").is_file():
            frames[name] = pd.read_csv(folder / "per_task.csv.gz")
    if "default" not in frames or len(frames) < 2:
        print(f"Runs so far in {out}: {sorted(frames)}; the report needs 'default' and a lever.")
        return 0
    tables = []
    for name in frames:
        if name != "default":
            settings = " ".join(runs.get(name, ()))
            tables.append(paired(frames["default"], frames[name]).assign(lever=name, settings=settings))
    table = pd.concat(tables, ignore_index=True)
    table.to_csv(out / "paired.csv", index=False)
    text = "\n".join(page(t.drop(columns=["lever", "settings"]), f"{lever}: {t.settings.iloc[0]}", "default", lever)
                     for lever, t in table.groupby("lever", sort=False))
    (out / "levers.md").write_text(text + f"\nTotal time {time.time() - started:.0f} s.\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
