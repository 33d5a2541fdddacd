"""Every learner x model on the synthetic generator and MovieLens 100K: one results table.

    python benchmarks/zoo_table.py                       # full table (slow: ~1 h on 2 cores)
    python benchmarks/zoo_table.py --seeds 0 --steps 300 # a quicker look

Writes ``benchmarks/results/zoo/zoo_table.md`` (the README's table), ``zoo_table.csv``
(mean and sd of every metric) and ``zoo_runs.csv`` (every seed).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfmetarec.config import TrainConfig  # noqa: E402
from tfmetarec.data.paths import movielens_100k_dir  # noqa: E402
from tfmetarec.models import available as available_models  # noqa: E402
from tfmetarec.workflows.zoo import ZooSettings, run_zoo  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["synthetic", "movielens-100k"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=None, help="default: melu first, then every other registered model")
    parser.add_argument("--steps", type=int, default=800, help="meta-training (and pretraining) steps per pair")
    parser.add_argument("--inner-steps", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/zoo")
    args = parser.parse_args(argv)
    datasets = list(args.datasets)
    if "movielens-100k" in datasets and not (movielens_100k_dir() / "u.data").exists():
        print(f"MovieLens 100K not found at {movielens_100k_dir()} (set TFMETAREC_DATA_DIR); running without it.")
        datasets.remove("movielens-100k")
    models = args.models or ["melu", *[m for m in available_models() if m != "melu"]]
    settings = ZooSettings(
        datasets=tuple(datasets),
        seeds=tuple(args.seeds),
        models=tuple(models),
        model_options=(("embedding_dim", 16), ("hidden_units", (64, 32))),
        train=dataclasses.replace(TrainConfig(), meta_steps=args.steps, pretrain_steps=args.steps),
        inner_steps=args.inner_steps,
    )
    started = time.time()
    run_zoo(settings, Path(args.out), isolate=True)
    print((Path(args.out) / "zoo_table.md").read_text())
    print(f"Done in {time.time() - started:.0f} s; tables in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
