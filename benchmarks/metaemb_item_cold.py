"""MetaEmb on new items: does a trained generator score an item well before and after it
gets its first ratings?

    PYTHONPATH=. python benchmarks/metaemb_item_cold.py                  # synthetic + ML-100K, 3 seeds
    PYTHONPATH=. python benchmarks/metaemb_item_cold.py --datasets synthetic --seeds 0

For each (dataset, seed): a MetaEmb model is trained by plain regression on the
meta-training ratings (``pretrain``: the generator gets no signal there, because every
training item has an ID). Then new items (the item-cold partition: new items rated by
existing users) are scored three ways, once with the untrained generator and once after
the ``metaemb_generator`` learner has trained it on item tasks drawn from the training items
(support and query of ``--arrived`` ratings each, through ``MetaTrainer``):

* cold: the generated embedding, no rating of the item seen (also the user-level MAE
  of the item-cold scenario, the zoo's protocol);
* warm-up: after one gradient step on the generated embedding from the item's first
  ``--arrived`` ratings, the MAE on up to 20 of its other ratings.

Writes ``benchmarks/results/metaemb_item_cold.md`` and prints it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402

from common import datasets_present, write_mean_sd_table  # noqa: E402

from tfmetarec.config import ExperimentConfig, ModelConfig, TrainConfig  # noqa: E402
from tfmetarec.config import SplitConfig  # noqa: E402
from tfmetarec.evaluation.protocol import evaluate_tasks  # noqa: E402
from tfmetarec.experiment import build_model, fit_learner, prepare  # noqa: E402
from tfmetarec.learners import MetaTrainer, Pretrain, create  # noqa: E402
from tfmetarec.tasks.samplers import EpisodeSampler  # noqa: E402
from tfmetarec.types import ITEM_ID, USER_FIELDS, USER_ID  # noqa: E402

EVAL_ROWS = 20


def row_features(encoded, ratings: pd.DataFrame) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Per-rating model inputs, the ratings and each row's item row (for grouping)."""
    users = encoded.user_index.get_indexer(ratings["user"].to_numpy())
    items = encoded.item_rows(ratings["item"].to_numpy())
    features = {USER_ID: encoded.user_ids[users], USER_FIELDS: encoded.user_fields[users], ITEM_ID: items}
    return features, ratings["rating"].to_numpy("float32"), items


def warm_up_mae(model, features, ratings, item_rows, arrived: int, warm_lr: float, seed: int) -> tuple[float, float, int]:
    """MAE on each new item's held-out ratings with the generated embedding, before and
    after one step on its first ``arrived`` ratings (items with > ``arrived`` ratings)."""
    rng = np.random.default_rng(seed)
    params = model.variable_values()
    before, after = [], []
    for row in np.unique(item_rows):
        idx = rng.permutation(np.flatnonzero(item_rows == row))
        if len(idx) <= arrived:
            continue
        seen, rest = idx[:arrived], idx[arrived : arrived + EVAL_ROWS]
        part = {k: tf.constant(v[None, seen]) for k, v in features.items()}
        held = {k: tf.constant(v[None, rest]) for k, v in features.items()}
        phi = model.generate_item_embedding(params, part)[:, 0, :]
        with tf.GradientTape() as tape:
            tape.watch(phi)
            loss = tf.reduce_mean(tf.square(model.forward_with_item_embedding(params, phi, part) - ratings[seen]))
        warmed = phi - warm_lr * tape.gradient(loss, phi)
        truth = ratings[rest]
        before += list(np.abs(model.forward_with_item_embedding(params, phi, held).numpy()[0] - truth))
        after += list(np.abs(model.forward_with_item_embedding(params, warmed, held).numpy()[0] - truth))
    return float(np.mean(before)), float(np.mean(after)), len(before)


def run(dataset: str, seed: int, args) -> list[dict]:
    config = ExperimentConfig(
        dataset=dataset, split=dataclasses.replace(SplitConfig(), seed=seed),
        model=ModelConfig(name="metaemb", embedding_dim=16, hidden_units=(64, 32)),
        train=dataclasses.replace(TrainConfig(), pretrain_steps=args.steps, seed=seed),
    )
    prepared = prepare(config)
    model = build_model(config, prepared.encoded)
    learner = Pretrain(model, 0)
    fit_learner(learner, prepared, args.steps)
    new_items = prepared.split.partitions["item_cold"]
    features, ratings, item_rows = row_features(prepared.encoded, new_items)
    rows = []
    for stage in ("untrained generator", "trained generator"):
        if stage == "trained generator":
            started = time.time()
            generator = create("metaemb_generator", model, warm_lr=args.warm_lr)
            items = EpisodeSampler(prepared.encoded, prepared.train_ratings, task_key="item", batch_size=16,
                                   query_size=args.arrived, max_support=args.arrived, seed=seed)
            MetaTrainer(generator, keras.optimizers.Adam(1e-3), jit_compile=True).fit(items, args.generator_steps,
                                                                                      verbose=0)
            print(f"[{dataset} seed {seed}] generator trained in {time.time() - started:.0f} s", flush=True)
        cold = {s: evaluate_tasks(learner, prepared.encoded, prepared.scenarios[s], jit_compile=False)["MAE"]
                for s in ("item_cold", "user_item_cold")}
        before, after, items = warm_up_mae(model, features, ratings, item_rows, args.arrived, args.warm_lr, seed)
        rows.append(dict(dataset=dataset, seed=seed, generator=stage, item_cold=cold["item_cold"],
                         user_item_cold=cold["user_item_cold"], new_item_cold=before, new_item_warm_up=after,
                         items=items))
        print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["synthetic", "movielens-100k"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=800, help="pretraining steps of the base model")
    parser.add_argument("--generator-steps", type=int, default=1500)
    parser.add_argument("--arrived", type=int, default=5, help="ratings a new item gets before the warm-up step")
    parser.add_argument("--warm-lr", type=float, default=0.03)
    parser.add_argument("--out", default="benchmarks/results/metaemb_item_cold.md")
    args = parser.parse_args(argv)
    datasets = datasets_present(args.datasets)
    results = pd.DataFrame([r for d in datasets for s in args.seeds for r in run(d, s, args)])
    metrics = ["item_cold", "user_item_cold", "new_item_cold", "new_item_warm_up"]
    caption = (f"MAE, mean ± sd over {len(args.seeds)} seeds; {args.arrived} ratings arrive before the warm-up step "
               f"(step size {args.warm_lr}). item_cold and user_item_cold are the zoo's user-level scenarios; "
               "new_item_cold and new_item_warm_up score each new item's held-out ratings.")
    print(write_mean_sd_table(results, ["dataset", "generator"], metrics, caption, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
