"""Do item vectors pay? New-item ranking with and without a vector field, 3 seeds; and the memory
of a 100,000 x 384 vector table through training, export and serving.

    PYTHONPATH=. python benchmarks/item_vectors.py                   # quality: synthetic + MovieLens 100K
    PYTHONPATH=. python benchmarks/item_vectors.py --memory          # memory: 100,000 items x 384 dims
    PYTHONPATH=. python benchmarks/item_vectors.py --datasets synthetic --seeds 0 --steps 100   # smoke run

**Quality.** For each dataset and seed (a fresh process each), the library's default run (MeLU,
32-wide field embeddings, decision layers 64-64, MAML with 5 inner steps, the MeLU protocol
split, two-sided adaptation on; ``--steps`` meta-steps, no pretraining) is meta-trained twice
on the same split: with the dataset's fields only, and with a vector field besides. Vectors:

* synthetic: ``make_synthetic(vector_dim=32)``: 16 dimensions are a random map of each item's
  true factors and bias plus noise, 16 are pure noise;
* MovieLens 100K: made here without a network: TF-IDF of each title's words and the item's
  genres, reduced to 32 dimensions by an SVD (numpy), so they restate content the model
  partly has already (genres) and add the title's words.

Both runs are scored per task on the cold scenarios; paired sign-flip tests over the tasks of
each seed compare ``vectors`` with ``no vectors``.

**Memory.** Synthetic data with 100,000 items (2,000 users) and 384-dimensional vectors
(146 MB as float32): peak resident memory after preparing the data, after 50 meta-training
steps (MeLU, 5 inner steps, batch 32, XLA), after writing the SavedModel, and in a separate
process that loads it through the ``serve``-tag v1 session (as TF Serving does) and answers
100 ``adapt_and_score`` requests (support 16, query 32).
Results go to ``benchmarks/results/item_vectors/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd

SCENARIOS = ("item_cold", "user_item_cold", "user_cold")
DIM = 32


def title_genre_vectors(data, dim: int = DIM) -> pd.DataFrame:
    """``item, vector``: TF-IDF of title words and genres, reduced by an SVD to ``dim`` dimensions."""
    docs = []
    for title, genres in zip(data.items["title"], data.items["genres"]):
        words = re.findall(r"[a-z]+", re.sub(r"\(\d{4}\)", "", str(title).lower()))
        docs.append([w for w in words if len(w) > 2] + [f"genre:{g}" for g in genres])
    vocab = sorted({t for d in docs for t in d})
    index = {t: k for k, t in enumerate(vocab)}
    counts = np.zeros((len(docs), len(vocab)), np.float32)
    for row, doc in enumerate(docs):
        for token in doc:
            counts[row, index[token]] += 1.0
    idf = np.log((1 + len(docs)) / (1 + (counts > 0).sum(0))) + 1.0
    tfidf = counts * idf
    tfidf /= np.maximum(np.linalg.norm(tfidf, axis=1, keepdims=True), 1e-12)
    u, s, _ = np.linalg.svd(tfidf - tfidf.mean(0), full_matrices=False)
    return pd.DataFrame({"item": data.items["item"].to_numpy(), "vector": list((u[:, :dim] * s[:dim]).astype(np.float32))})


def run_group(dataset: str, seed: int, steps: int) -> pd.DataFrame:
    from tfmetarec.config import ExperimentConfig, TrainConfig
    from tfmetarec.data import load_dataset, make_synthetic
    from tfmetarec.evaluation.protocol import per_task_table, predict_scenarios
    from tfmetarec.workflows import build_learner, build_model, fit_learner, prepare

    started = time.time()
    config = ExperimentConfig(dataset=dataset, train=TrainConfig(meta_steps=steps, pretrain_steps=0, seed=seed,
                                                                 finetune_lr=0.05))
    config = dataclasses.replace(config, split=dataclasses.replace(config.split, seed=seed))
    if dataset == "synthetic":
        with_vectors = make_synthetic(seed=seed, vector_dim=DIM)
        plain = with_vectors.with_fields([f for f in with_vectors.fields if f.kind != "vector"])
    else:
        plain = load_dataset(dataset)
        with_vectors = plain.with_item_vectors(title_genre_vectors(plain))
    frames = []
    for name, data in (("no vectors", plain), ("vectors", with_vectors)):
        prepared = prepare(config, data)
        learner = build_learner(config, build_model(config, prepared.encoded), prepared)
        fit_learner(learner, prepared, steps)
        scenarios = {s: prepared.scenarios[s] for s in SCENARIOS if len(prepared.scenarios[s])}
        predictions = predict_scenarios({name: learner}, prepared.encoded, scenarios, jit_compile=False,
                                        item_warmup=config.train.item_warmup)
        frames.append(per_task_table(predictions, scenarios))
        print(f"[{dataset} seed {seed}] {name} ({time.time() - started:.0f} s)", flush=True)
    return pd.concat(frames, ignore_index=True).assign(dataset=dataset, seed=seed)


def summarise(per_task: pd.DataFrame) -> str:
    from common import mean_ci_lines

    from tfmetarec.evaluation.stats import compare, to_markdown_tests

    lines = ["# Item vectors: new-item ranking with and without", ""]
    for dataset, d in per_task.groupby("dataset", sort=False):
        lines += [f"## {dataset} (mean ± 95 % interval over the tasks of all seeds)", "",
                  "| scenario | method | MAE | nDCG@3 |", "|---|---|---:|---:|",
                  *mean_ci_lines(d, ["scenario", "method"])]
        tests = pd.concat([compare(g, "vectors", "no vectors", seed=int(seed)).assign(seed=seed)
                           for seed, g in d.groupby("seed")], ignore_index=True)
        lines += ["", "Paired tests per seed, vectors - no vectors:", "", to_markdown_tests(tests), ""]
    return "\n".join(lines)


SERVE = r"""
import os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import numpy as np, tensorflow as tf
folder, items = sys.argv[1], int(sys.argv[2])
def rss():  # VmHWM: this process's own peak (ru_maxrss carries the parent's over exec)
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM"))
    return int(line.split()[1]) / 1024
graph = tf.Graph()
with graph.as_default():
    session = tf.compat.v1.Session(graph=graph)
    meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], folder)
    sig = meta.signature_def["adapt_and_score"]
    rng = np.random.default_rng(0)
    feeds = {}
    for name, spec in sig.inputs.items():
        shape = [d.size for d in spec.tensor_shape.dim]
        feeds[name] = (spec.name, shape, spec.dtype)
    fetch = sig.outputs["scores"].name
    def request():
        out = {}
        for name, (tensor, shape, dtype) in feeds.items():
            shape = [1 if d < 0 and k == 0 else (16 if "support" in name else 32) if d < 0 else d
                     for k, d in enumerate(shape)]
            if "item_id" in name:
                out[tensor] = rng.integers(1, items + 1, shape).astype(np.int64)
            elif "rating" in name:
                out[tensor] = rng.integers(1, 6, shape).astype(np.float32)
            elif "mask" in name:
                out[tensor] = np.ones(shape, np.float32)
            elif dtype == tf.string.as_datatype_enum:
                out[tensor] = np.full(shape, "", object)
            else:
                out[tensor] = np.full(shape, 10**9, tf.dtypes.as_dtype(dtype).as_numpy_dtype)
        return out
    start = time.perf_counter()
    for _ in range(100):
        session.run(fetch, feed_dict=request())
    print(f"served 100 requests in {time.perf_counter() - start:.2f} s; peak RSS {rss():.0f} MB")
"""


def memory(items: int = 100_000, dim: int = 384, steps: int = 50) -> str:
    import resource

    from tfmetarec.config import ExperimentConfig, ModelConfig, TrainConfig
    from tfmetarec.data import make_synthetic
    from tfmetarec.export import export_saved_model
    from tfmetarec.workflows import build_learner, build_model, fit_learner, prepare

    def rss() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    lines = [f"# Memory: {items:,} items x {dim} dims ({items * dim * 4 / 2**20:.0f} MB as float32)", ""]
    started = time.time()
    data = make_synthetic(num_users=2000, num_items=items, seed=0, vector_dim=dim, ratings_per_user=(20, 60))
    data = data.with_fields([dataclasses.replace(f, transform="l2_normalize") if f.kind == "vector" else f
                             for f in data.fields])  # as --item-vectors does
    config = ExperimentConfig(model=ModelConfig("melu"), train=TrainConfig(meta_steps=steps, pretrain_steps=0))
    prepared = prepare(config, data)
    del data
    lines.append(f"- prepared ({len(prepared.encoded.ratings):,} ratings): peak RSS {rss():.0f} MB "
                 f"({time.time() - started:.0f} s)")
    learner = build_learner(config, build_model(config, prepared.encoded), prepared)
    fit_learner(learner, prepared, steps)
    lines.append(f"- {steps} meta-training steps (XLA): peak RSS {rss():.0f} MB ({time.time() - started:.0f} s)")
    folder = export_saved_model(learner, tempfile.mkdtemp(prefix="vectors_sm_"), encoder=prepared.encoder)
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    lines.append(f"- SavedModel written ({size / 2**20:.0f} MB on disk): peak RSS {rss():.0f} MB "
                 f"({time.time() - started:.0f} s)")
    served = subprocess.run([sys.executable, "-c", SERVE, str(folder), str(items)], capture_output=True, text=True,
                            check=False)
    lines.append(f"- serving process (v1 `serve` session): {served.stdout.strip() or served.stderr.strip()[-400:]}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    from common import add_group_arguments, run_groups

    parser.add_argument("--datasets", nargs="+", default=["synthetic", "movielens-100k"])
    parser.add_argument("--memory", action="store_true", help="measure the 100,000 x 384 table instead")
    add_group_arguments(parser, "benchmarks/results/item_vectors")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.memory:
        page = memory()
        (out / "memory.md").write_text(page, encoding="utf-8")
        print(page)
        return 0
    started = time.time()
    per_task = run_groups(run_group, [(d, s) for d in args.datasets for s in args.seeds], args.steps,
                          saved=out / "per_task.csv.gz", resume=args.resume)
    page = summarise(per_task) + f"\n{args.steps} steps. Total {time.time() - started:.0f} s.\n"
    (out / "item_vectors.md").write_text(page, encoding="utf-8")
    print(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
