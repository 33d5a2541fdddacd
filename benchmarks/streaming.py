"""A user's next rating: quality as ratings arrive one at a time (the streaming protocol).

    PYTHONPATH=. python benchmarks/streaming.py                          # synthetic + ML-100K, seeds 0-2
    PYTHONPATH=. python benchmarks/streaming.py --datasets synthetic --seeds 0 --steps 200

For each (dataset, seed): MeLU (16-dim embeddings, 64-32 decision layers) is meta-trained
with MAML (3 inner steps on the decision layers, ``--steps`` meta-steps) beside the global
baseline; then every user-cold user with at least 30 ratings reveals 20 of them one at a
time (timestamp order; its query is 10 other ratings, fixed) and the query is scored
after each arrival by:

* ``incremental (history)``: MAML's ``update`` (the default ``update_mode="history"``):
  one SGD step from the cached state on the last 64 ratings, which the state keeps;
* ``incremental (new)``: ``update_mode="new"``: one step on the new rating only;
* ``re-adapt``: MAML's ``adapt`` (3 steps) on every rating so far, from scratch;
* ``fine-tune``: the global baseline fine-tuned on the ratings so far (step size chosen on
  validation users); ``no adaptation``: the baseline as it is.

Writes ``benchmarks/results/streaming.{csv,md}`` and ``streaming_<dataset>_MAE.png`` (mean
± sd over seeds).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pandas as pd  # noqa: E402
from common import datasets_present  # noqa: E402

from tfmetarec import experiment  # noqa: E402
from tfmetarec.config import ExperimentConfig, LearnerConfig, ModelConfig, TrainConfig  # noqa: E402
from tfmetarec.config import SplitConfig  # noqa: E402
from tfmetarec.evaluation.streaming import POINTS, StreamMethod, stream_tasks, streaming_curve  # noqa: E402
from tfmetarec.learners import MAML  # noqa: E402

METRICS = ("MAE", "RMSE", "nDCG@3", "ms_per_user")


def run(dataset: str, seed: int, steps: int) -> pd.DataFrame:
    config = ExperimentConfig(
        dataset=dataset, split=dataclasses.replace(SplitConfig(), seed=seed),
        model=ModelConfig(embedding_dim=16, hidden_units=(64, 32)),
        learner=LearnerConfig(name="maml", inner_steps=3),
        train=dataclasses.replace(TrainConfig(), meta_steps=steps, pretrain_steps=steps, seed=seed),
    )
    trained = experiment.train(config, verbose=0)
    prepared = trained.prepared
    tasks = stream_tasks(prepared.encoded, prepared.split.partitions["user_cold"], query_size=10,
                         reveal=max(POINTS), seed=seed, name="user_cold")
    new = MAML.from_config({**trained.learner.get_config(), "update_mode": "new"})
    new.set_weights(trained.learner.get_weights())  # the weights; the item table is data, copied apart
    model = trained.learner.model
    new.model.set_item_table(model.item_table, model.item_raw_ids)
    lr = experiment.tune_finetune_lr(trained.baseline, prepared, config.learner.inner_steps)
    methods = {
        "incremental (history)": StreamMethod(trained.learner, "incremental"),
        "incremental (new)": StreamMethod(new, "incremental"),
        "re-adapt": StreamMethod(trained.learner, "readapt"),
        "fine-tune": StreamMethod(trained.baseline.with_finetuning(config.learner.inner_steps, lr), "readapt"),
        "no adaptation": StreamMethod(trained.baseline, "readapt"),
    }
    curve = streaming_curve(methods, prepared.encoded, tasks, POINTS)
    print(f"[{dataset} seed {seed}] {len(tasks)} users", flush=True)
    print(curve.pivot(index="n", columns="method", values="MAE").round(4).to_string(), flush=True)
    return curve.assign(dataset=dataset, seed=seed)


def write(results: pd.DataFrame, out: Path) -> str:
    from tfmetarec.evaluation.curves import plot_curve

    grouped = results.groupby(["dataset", "method", "n"], sort=False)
    mean, sd = grouped[list(METRICS)].mean(), grouped[list(METRICS)].std(ddof=1).fillna(0.0)
    lines = []
    for dataset in results.dataset.unique():
        for metric in ("MAE", "nDCG@3", "ms_per_user"):
            m = mean.loc[dataset][metric].unstack("method")
            s = sd.loc[dataset][metric].unstack("method")
            seeds = results[results.dataset == dataset].seed.nunique()
            lines += [f"### {dataset}: {metric} after n ratings (mean ± sd over {seeds} seeds)", "",
                      "| n | " + " | ".join(m.columns) + " |", "|---:|" + "---:|" * len(m.columns)]
            for n in m.index:
                lines.append(f"| {n} | " + " | ".join(f"{m.loc[n, c]:.4f} ± {s.loc[n, c]:.4f}" for c in m.columns)
                             + " |")
            lines.append("")
        curve = mean.loc[dataset].reset_index()
        plot_curve(curve, "n", "MAE", out.parent / f"streaming_{dataset}_MAE.png",
                   f"{dataset}, user-cold: MAE as ratings arrive")
    text = "\n".join(lines)
    out.parent.mkdir(parents=True, exist_ok=True)
    results.to_csv(out.with_suffix(".csv"), index=False)
    out.write_text(text + "\n", encoding="utf-8")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["synthetic", "movielens-100k"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=800, help="meta-training and baseline steps")
    parser.add_argument("--out", default="benchmarks/results/streaming.md")
    args = parser.parse_args(argv)
    results = pd.concat([run(d, s, args.steps) for d in datasets_present(args.datasets) for s in args.seeds],
                        ignore_index=True)
    print(write(results, Path(args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
