"""Meta-training throughput of MAML on MeLU: XLA vs graph, vectorised vs per task, and wide content.

    python benchmarks/meta_train_throughput.py [--rounds 5] [--steps 10] [--quick] [--only SECTION]
    python benchmarks/meta_train_throughput.py --only versus --against ../before [--rounds 3]

The model is MeLU at the paper's size: 8 fields (4 user + 4 item) embedded in 32
dimensions, concatenated (256), decision MLP 256-64-64-1, MeLU's local update (only the
decision layers adapt); 32 tasks per batch, query 10. Each figure is the median over
rounds of the whole meta-step, outer Adam update included.

"vectorised" section: 4 user and 4 item *categorical* fields, support padded to 32
rows (and 64); the library's vectorised inner loop against a per-task loop.

"wide" section (per-field embeddings on rich item content): the 4 item fields are *list*
fields (genres, directors, actors, keywords: 2, 1, 5 and 2 values per item drawn with a
long-tailed popularity from 25, 2,500, 9,000 and 2,500 values; the vocabularies fitted on
the training items total ~10,000 values), against the same MeLU whose 4 item fields are
small categorical ones. Episodes come from ``EpisodeSampler`` over a synthetic population
of 2,000 users with 13..100 ratings (supports of 3..90, bucketed to 8/16/32/64/128 rows)
and 4,000 items. It times pre-built batches, the ``tf.data`` path, and several
meta-steps per compiled call.

FLOP count (what GFLOP/s divides by). One decision-MLP forward on one row costs
``F = 2 * (256*64 + 64*64 + 64*1)`` FLOP. An inner step is a
forward plus a backward on the support (about ``3 F S``); the query forward is ``F Q``.
First order: ``k * 3FS`` for the inner loop plus ``3FQ`` for the query loss and its
gradient. Second order: the outer backward pass runs through the whole unrolled graph,
about twice its forward cost, so ``3 * (k * 3FS + FQ)``. Embedding gathers and the
optimizer update are left out (small), so the GFLOP/s figures are slight underestimates.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from common import markdown_table, matmul_gflops, median_rate, peak_rss_mb, write_report  # noqa: E402

from tfmetarec.learners import MAML, MetaTrainer  # noqa: E402
from tfmetarec.learners.adaptation import inner_loop  # noqa: E402
from tfmetarec.models import MeLU  # noqa: E402
from tfmetarec.types import CATEGORICAL, FieldSpec  # noqa: E402

USER_FIELDS = tuple(FieldSpec(n, CATEGORICAL, v) for n, v in zip(("gender", "age", "occupation", "zip"),
                                                                  (3, 8, 22, 40)))
ITEM_FIELDS = tuple(FieldSpec(n, CATEGORICAL, v) for n, v in zip(("year", "rate", "studio", "country"),
                                                                  (20, 30, 50, 100)))
HIDDEN = (64, 64)  # after the 8 x 32 = 256-wide concatenation: 256-64-64-1, as in MeLU
WIDTH = 8 * 32
BATCH, QUERY = 32, 10
NUM_ITEMS = 100


class PerTaskMAML(MAML):
    """The same MAML, adapting the tasks of a batch one at a time (the baseline)."""

    def adapt(self, support):
        params = self.model.variable_values()
        rates = self.adaptation_rates()
        per_task = []
        for t in range(support["mask"].shape[0]):
            one = {k: v[t : t + 1] for k, v in support.items()}
            fast, _ = inner_loop(self.model, params, self.adapt_names, one, self.inner_steps, rates, self.first_order)
            per_task.append(fast)
        return {n: tf.concat([f[n] for f in per_task], axis=0) for n in self.adapt_names}


def episode(support: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)

    def part(rows: int) -> dict:
        return {
            "user_id": np.zeros((BATCH, rows), "int32"),
            "item_id": rng.integers(1, NUM_ITEMS, (BATCH, rows)).astype("int32"),
            "user_fields": np.stack([rng.integers(0, f.vocab_size, (BATCH, rows)) for f in USER_FIELDS],
                                    -1).astype("int32"),
            "rating": rng.integers(1, 6, (BATCH, rows)).astype("float32"),
            "mask": np.ones((BATCH, rows), "float32"),
        }

    return {k: tf.constant(v) if not isinstance(v, dict) else {a: tf.constant(b) for a, b in v.items()}
            for k, v in {"support": part(support), "query": part(QUERY), "task_mask": np.ones(BATCH, "float32")}.items()}


def step_flops(support: int, steps: int, first_order: bool) -> float:
    f = 2 * (WIDTH * 64 + 64 * 64 + 64)
    inner = steps * 3 * f * support
    per_task = inner + 3 * f * QUERY if first_order else 3 * (inner + f * QUERY)
    return BATCH * per_task


def item_table() -> np.ndarray:
    rng = np.random.default_rng(5)
    return np.stack([rng.integers(1, f.vocab_size, NUM_ITEMS) for f in ITEM_FIELDS], -1).astype("int32")


def build(cls, steps: int, first_order: bool, jit: bool):
    model = MeLU(user_fields=USER_FIELDS, item_fields=ITEM_FIELDS, embedding_dim=32, hidden_units=HIDDEN, num_items=NUM_ITEMS, seed=0)
    model.set_item_table(item_table())
    learner = cls(model, inner_steps=steps, inner_lr=0.01, first_order=first_order, adapt="decision")
    return MetaTrainer(learner, keras.optimizers.Adam(1e-4), jit_compile=jit)


def measure(cls, steps, first_order, jit, support, calls, rounds) -> dict:
    trainer = build(cls, steps, first_order, jit)
    ep = episode(support)
    started = time.perf_counter()
    trainer._compiled(ep)  # trace + compile + one step
    first = time.perf_counter() - started
    trainer._compiled(ep)
    seconds, _ = median_rate(lambda: trainer._compiled(ep)["loss"].numpy(), calls, rounds)
    return {"first_call_s": first, "step_ms": seconds * 1e3, "tasks_per_s": BATCH / seconds,
            "gflops": step_flops(support, steps, first_order) / seconds / 1e9}


def check_same_gradients() -> float:
    """Largest difference between vectorised and per-task meta-gradients (fair comparison)."""
    ep = episode(32, seed=1)
    a = build(MAML, 2, False, False).learner
    b = build(PerTaskMAML, 2, False, False).learner
    b.set_weights(a.get_weights())
    ga, _ = a.meta_gradients(ep)
    gb, _ = b.meta_gradients(ep)
    return max(float(tf.reduce_max(tf.abs(x - y))) for x, y in zip(ga, gb))


def memory_probe() -> float:
    """Peak RSS (MB) of a fresh process that only meta-trains the vectorised XLA step (5 steps, 2nd order)."""
    import subprocess

    code = (
        "import sys; sys.argv=['x']; sys.path.insert(0, %r);"
        "import meta_train_throughput as b; r=b.measure(b.MAML, 5, False, True, 32, 10, 3);"
        "print('RSS', b.peak_rss_mb(), r['first_call_s'])" % str(Path(__file__).resolve().parent)
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    line = [ln for ln in out.splitlines() if ln.startswith("RSS")][-1]
    return float(line.split()[1])


# -- the wide-content section -------------------------------------------------------------------------
WIDE_VOCABS = {"genres": 25, "directors": 2500, "actors": 9000, "keywords": 2500}
WIDE_PER_ITEM = {"genres": 2, "directors": 1, "actors": 5, "keywords": 2}  # 10 values per item
NARROW_VOCABS = {"rate": 30, "studio": 50, "country": 100}  # + the release-year bucket


def content_data(wide: bool, num_users: int = 2000, num_items: int = 4000, seed: int = 0):
    """A synthetic population (users with 13..100 ratings) whose 4 item fields are wide list
    fields (Zipf-distributed values) or small categorical ones."""
    from tfmetarec.data import Field, InteractionData, make_synthetic

    base = make_synthetic(num_users=num_users, num_items=num_items, ratings_per_user=(13, 100), seed=seed)
    rng = np.random.default_rng(seed)
    items = base.items[["item", "title", "year"]].copy()
    users = tuple(Field(c, "user", transform={"age": "age_bucket", "zip": "zip_prefix"}.get(c))
                  for c in ("gender", "age", "occupation", "zip"))
    if wide:
        for name, vocab in WIDE_VOCABS.items():
            p = 1.0 / np.arange(1, vocab + 1) ** 0.5  # a long tail, as casts and crews have
            p /= p.sum()
            items[name] = [[f"{name}{v}" for v in rng.choice(vocab, WIDE_PER_ITEM[name], replace=False, p=p)]
                           for _ in range(len(items))]
        fields = users + tuple(Field(n, "item", "list") for n in WIDE_VOCABS)
    else:
        for name, vocab in NARROW_VOCABS.items():
            items[name] = [f"{name}{v}" for v in rng.integers(0, vocab, len(items))]
        fields = users + (Field("year", "item", transform="year_bucket"),) + tuple(
            Field(n, "item") for n in NARROW_VOCABS)
    return InteractionData("synthetic", base.ratings, base.users, items, fields=fields)


def content_trainer(wide: bool, k: int = 1, inner: int = 5, batch: int = BATCH, fit_buckets: bool = False,
                    trim_supports: bool = False, task_chunks: int | None = None):
    from tfmetarec.data import FeatureEncoder, SplitConfig, cold_start_split
    from tfmetarec.tasks import EpisodeSampler

    data = content_data(wide)
    split = cold_start_split(data, SplitConfig(seed=0))
    encoder = FeatureEncoder().fit(data, train_users=split.existing_users, train_items=split.existing_items)
    encoded = encoder.transform(data)
    fit = {"fit_buckets": True} if fit_buckets else {}  # (a checkout from before the option has no such argument)
    fit.update({"trim_supports": True} if trim_supports else {})
    sampler = EpisodeSampler(encoded, split.meta_train, batch_size=batch, query_size=QUERY, max_support=128, seed=0,
                             **fit)
    model = MeLU.from_spec(encoded.spec, item_table=encoded.item_table, embedding_dim=32, hidden_units=HIDDEN, seed=0)
    learner = MAML(model, inner_steps=inner, inner_lr=0.01, adapt="decision")
    chunks = {} if task_chunks is None else {"task_chunks": task_chunks}  # (older checkouts: no such argument)
    trainer = MetaTrainer(learner, keras.optimizers.Adam(1e-4), jit_compile=True, steps_per_execution=k, **chunks)
    return trainer, sampler, encoded


def _warm(trainer, sampler, k: int) -> None:
    """Compile every support bucket (and its grouped form) before timing."""
    for b, cap in enumerate(sampler.buckets):
        for index in range(10_000):
            episode = sampler.sample(index)
            if episode["support"]["mask"].shape[1] == cap:
                trainer.train_step(episode)
                if k > 1:
                    trainer.train_steps(tf.nest.map_structure(lambda a: np.stack([a] * k), episode))
                break


def wide_section(rounds: int, steps: int) -> tuple[list[dict], dict]:
    """Step time of MeLU on narrow and on wide content: pre-built batches, the tf.data
    path, and 4 / 8 meta-steps per compiled call (median ms per meta-step over rounds)."""
    n = max(8, steps - steps % 8)
    rows, facts = [], {}
    for wide in (False, True):
        for k in (1, 4, 8):
            trainer, sampler, encoded = content_trainer(wide, k)
            started = time.perf_counter()
            _warm(trainer, sampler, k)
            warm_s = time.perf_counter() - started
            label = "wide lists" if wide else "narrow categorical"
            if wide and k == 1:
                facts["item_table"] = encoded.item_table.shape
                facts["item_vocab"] = sum(f.vocab_size - 1 for f in encoded.spec.item_fields)
                facts["values_per_item"] = float((encoded.item_table[1:] > 0).sum(1).mean())
            per_step = []
            if k == 1:
                prebuilt = [tf.nest.map_structure(tf.constant, sampler.sample(i)) for i in range(n)]
                streamed = []
                for r in range(rounds):
                    t0 = time.perf_counter()
                    for episode in prebuilt:
                        trainer.train_step(episode)
                    per_step.append((time.perf_counter() - t0) / n)
                    it = iter(sampler.dataset(start=100_000 + r * n))
                    next(it)  # the pipeline's start-up is not a step
                    t0 = time.perf_counter()
                    for _ in range(n):
                        trainer.train_step(next(it))
                    streamed.append((time.perf_counter() - t0) / n)
                rows.append({"content": label, "input": "tf.data (EpisodeSampler.dataset)", "steps per call": 1,
                             "step_ms": float(np.median(streamed)) * 1e3, "compile_s": warm_s})
            else:
                groups = [tf.nest.map_structure(tf.constant, sampler.sample_group(g, k)) for g in range(n // k)]
                for _ in range(rounds):
                    t0 = time.perf_counter()
                    for group in groups:
                        trainer.train_steps(group)
                    per_step.append((time.perf_counter() - t0) / n)
            rows.append({"content": label, "input": "pre-built batches", "steps per call": k,
                         "step_ms": float(np.median(per_step)) * 1e3, "compile_s": warm_s})
            print(rows[-1], flush=True)
            del trainer
    base = {(r["content"], r["input"], r["steps per call"]): r["step_ms"] for r in rows}
    narrow = base[("narrow categorical", "pre-built batches", 1)]
    for r in rows:
        r["tasks_per_s"] = BATCH / r["step_ms"] * 1e3
        r["vs narrow, 1 step/call"] = r["step_ms"] / narrow
    return rows, facts


def overhead_section(rounds: int, steps: int) -> list[dict]:
    """The fixed cost of a meta-step: a near-empty step (1 task, 1 inner step, support 8,
    a 4-dim MeLU) timed at 1, 4 and 8 steps per call."""
    from tfmetarec.types import CATEGORICAL as CAT

    out = []
    for k in (1, 4, 8):
        model = MeLU(user_fields=(FieldSpec("gender", CAT, 3),), item_fields=(FieldSpec("year", CAT, 5),), embedding_dim=4, hidden_units=(4,),
                     num_items=5, seed=0)
        model.set_item_table(np.arange(5)[:, None].astype("int32"))
        trainer = MetaTrainer(MAML(model, inner_steps=1, inner_lr=0.01), keras.optimizers.Adam(1e-3), True, k)
        rng = np.random.default_rng(0)

        def part(rows):
            return {"user_id": np.zeros((1, rows), "int32"), "item_id": rng.integers(0, 5, (1, rows)).astype("int32"),
                    "user_fields": rng.integers(0, 3, (1, rows, 1)).astype("int32"),
                    "rating": np.full((1, rows), 3.0, "float32"), "mask": np.ones((1, rows), "float32")}

        episode = {"support": part(8), "query": part(QUERY), "task_mask": np.ones(1, "float32")}
        n = max(8, steps * 8)
        if k == 1:
            batch = tf.nest.map_structure(tf.constant, episode)
            call = lambda: trainer.train_step(batch)  # noqa: E731
        else:
            batch = tf.nest.map_structure(lambda a: tf.constant(np.stack([a] * k)), episode)
            call = lambda: trainer.train_steps(batch)  # noqa: E731
        call()
        seconds, _ = median_rate(call, n // k, rounds)
        out.append({"steps per call": k, "ms per meta-step": seconds / k * 1e3})
        print(out[-1], flush=True)
    return out


INNER_LOOPS = ("forward every step", "represent once", "represent once, low-rank first layer")


def hoist_section(rounds: int, steps: int) -> list[dict]:
    """Three inner loops side by side in one process, narrow and wide content, 5 inner steps,
    second order, XLA, pre-built batches from ``EpisodeSampler``, rounds interleaved:
    the whole forward pass at every step (the library before issue 24; ``represent`` switched
    off), what does not adapt computed once per task (``MetaModel.represent``; the low-rank form
    switched off), and that plus the first decision layer's update kept as a low-rank product
    with the support's representation (``LowRankKernel``, the default). Also: cores busy
    (process CPU time / wall time over the timed steps) and the share of real (unpadded) support
    rows in the batches."""
    out = []
    for wide in (False, True):
        label = "wide lists" if wide else "narrow categorical"
        trainers = {}
        for loop in INNER_LOOPS:
            trainer, sampler, _ = content_trainer(wide)
            if loop == INNER_LOOPS[0]:
                trainer.learner.model.represent = lambda *args: None
            if loop == INNER_LOOPS[1]:
                trainer.learner.model.first_decision_layer = lambda: None
            _warm(trainer, sampler, 1)
            trainers[loop] = trainer
        batches = [tf.nest.map_structure(tf.constant, sampler.sample(i)) for i in range(steps)]
        real = real_share(batches)
        times = {loop: [] for loop in INNER_LOOPS}
        cpu = {loop: [] for loop in INNER_LOOPS}
        for _ in range(rounds):
            for loop in INNER_LOOPS:
                ms, busy = timed_steps(trainers[loop], batches)
                times[loop].append(ms)
                cpu[loop].append(busy)
        before = float(np.median(times[INNER_LOOPS[0]]))
        for loop in INNER_LOOPS:
            ms = float(np.median(times[loop]))
            out.append({"content": label, "inner loop": loop, "step_ms": ms, "tasks_per_s": BATCH / ms * 1e3,
                        "speed-up": before / ms, "cores busy": float(np.median(cpu[loop])),
                        "real support rows": real})
        print(out[-len(INNER_LOOPS):], flush=True)
        del trainers
    return out


def real_share(batches: list) -> float:
    """The share of support slots that hold a rating."""
    masks = [np.asarray(b["support"]["mask"]) for b in batches]
    return float(sum(m.sum() for m in masks) / sum(m.size for m in masks))


def timed_steps(trainer, batches: list) -> tuple[float, float]:
    """(ms per meta-step, cores busy) over one pass of ``trainer`` through ``batches``."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for batch in batches:
        trainer.train_step(batch)
    wall = time.perf_counter() - wall0
    return wall / len(batches) * 1e3, (time.process_time() - cpu0) / wall


def worker(steps: int, repeats: int, fit_buckets: bool, trim_supports: bool = False,
           task_chunks: int | None = None) -> dict:
    """One process's measurement for ``versus_section``: the wide configuration, every bucket
    compiled first (timed: ``compile_s``), then ``repeats`` passes through ``steps`` pre-built batches."""
    trainer, sampler, _ = content_trainer(True, fit_buckets=fit_buckets, trim_supports=trim_supports,
                                          task_chunks=task_chunks)
    started = time.perf_counter()
    _warm(trainer, sampler, 1)
    compile_s = time.perf_counter() - started
    batches = [tf.nest.map_structure(tf.constant, sampler.sample(i)) for i in range(steps)]
    runs = [timed_steps(trainer, batches) for _ in range(repeats)]
    return {"step_ms": float(np.median([r[0] for r in runs])), "cores busy": float(np.median([r[1] for r in runs])),
            "real support rows": real_share(batches), "compile_s": compile_s}


def versus_section(against: str, rounds: int, steps: int) -> list[dict]:
    """The wide configuration (MeLU's eight fields, MAML, 5 second-order steps) measured in fresh
    processes, alternating between the library in ``against`` (another checkout, e.g. the commit
    before a change) and this one, round by round; the same script and batches in both."""
    import json
    import subprocess

    trees = {"before (" + against + ")": (str(Path(against).resolve()), []),
             "this checkout, supports padded to powers of two": (str(ROOT), []),
             "this checkout, trimmed, whole task batch (--task-chunks 1)": (str(ROOT), ["--trim-supports",
                                                                                      "--task-chunks", "1"]),
             "this checkout, trimmed, 2 task slices at once (the default)": (str(ROOT), ["--trim-supports"])}
    results: dict[str, list[dict]] = {label: [] for label in trees}
    for _ in range(rounds):
        for label, (tree, extra) in trees.items():
            env = {**os.environ, "PYTHONPATH": tree}
            done = subprocess.run([sys.executable, __file__, "--worker", str(steps), *extra], env=env, check=True,
                                  capture_output=True, text=True)
            results[label].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(label, results[label][-1], flush=True)
    rows = []
    for label, runs in results.items():
        ms = float(np.median([r["step_ms"] for r in runs]))
        rows.append({"library": label, "step_ms": ms, "tasks_per_s": BATCH / ms * 1e3,
                     "cores busy": float(np.median([r["cores busy"] for r in runs])),
                     "real support rows": runs[0]["real support rows"],
                     "compile_s": float(np.median([r["compile_s"] for r in runs]))})
    for row in rows:
        row["vs before"] = rows[0]["step_ms"] / row["step_ms"]
    return rows


def training_padding(dataset: str, prepared) -> list[dict]:
    """The meta-training sampler's share of real support rows with supports trimmed to their
    buckets (the default); padded (``--no-trim-supports``) to buckets fitted to the supports until
    85 % of the rows are real (that stream's default), to powers of two (``--padded-min-real off``)
    and to as many fitted buckets (``--fit-buckets --padded-min-real off``): each task is drawn
    equally often, so the share is its supports' rows over their buckets' rows."""
    from tfmetarec.tasks.samplers import filled_bucket, fitted_buckets, padded_share
    from tfmetarec.workflows.train import sampler_for

    def sampler(trim: bool, floor: float | None = 0.85):
        train = dataclasses.replace(prepared.config.train, trim_supports=trim, padded_min_real=floor)
        return sampler_for(dataclasses.replace(prepared, config=dataclasses.replace(prepared.config, train=train)))

    powers, trimmed = sampler(False, None), sampler(True)
    sizes = powers.support_sizes()
    out = []
    buckets = np.asarray(trimmed.buckets)
    caps = buckets[filled_bucket(sizes, buckets)]
    out.append({"data": dataset, "scenario": "meta-training", "batches": "trimmed to the buckets (the default)",
                "calls": f"{len(buckets)} shapes",
                "real support rows": float(np.minimum(sizes, caps).sum() / caps.sum()),
                "task slots filled": 1.0, "buckets": " ".join(map(str, trimmed.buckets))})
    for how, buckets in (("padded, fitted until 85 % real (--no-trim-supports)", sampler(False).buckets),
                         ("padded to powers of two (--padded-min-real off)", powers.buckets),
                         ("padded, fitted (--fit-buckets --padded-min-real off)",
                          fitted_buckets(sizes, len(powers.buckets)))):
        out.append({"data": dataset, "scenario": "meta-training", "batches": how, "calls": f"{len(buckets)} shapes",
                    "real support rows": padded_share(sizes, buckets), "task slots filled": 1.0,
                    "buckets": " ".join(map(str, buckets))})
    print(out, flush=True)
    return out


def padding_section(batch_size: int = 32, rounds: int = 5) -> list[dict]:
    """How much of the evaluation batches is real (support rows holding a rating, task slots
    holding a task) and how long one evaluation takes, over the quickstart's split (synthetic;
    ML-100K too when ``TFMETAREC_DATA_DIR`` holds it): the four scenarios of the report, and the two
    validation task sets of the checkpoint choice. Two ways: every set alone, packed with the fewest
    padded rows plus a cost per call (the commit before); the sets of a group in one pass, each row
    carrying its set's item offsets, packed with at least 85 % real support rows (the library's
    evaluation now; an XLA evaluation's power-of-two buckets were the third way until they went).
    Time: the default MeLU + MAML (untrained; the time does not depend on the weights), one graph
    per way traced beforehand, ``rounds`` rounds taking turns, median seconds for both groups."""
    from tfmetarec.config import ExperimentConfig
    from tfmetarec.data.paths import movielens_100k_dir
    from tfmetarec.evaluation.protocol import adapt_and_score_fn
    from tfmetarec.tasks import join_task_sets
    from tfmetarec.tasks.samplers import eval_batches
    from tfmetarec.types import ITEM_ID, ITEM_OFFSET, QUERY, SUPPORT
    from tfmetarec.workflows import build_learner, build_model, prepare

    datasets = ["synthetic"] + (["movielens-100k"] if (movielens_100k_dir() / "u.data").exists() else [])
    before = "each set alone, packed (before)"
    now = "one pass, packed, >= 85 % real (now)"
    ways = (before, now)
    rows = []
    for dataset in datasets:
        config = ExperimentConfig(dataset=dataset)
        prepared = prepare(config)
        rows += training_padding(dataset, prepared)
        learner = build_learner(config, build_model(config, prepared.encoded), prepared)
        offsets = np.zeros(learner.model.num_table_items, np.float32)

        def with_offsets(episode: dict) -> dict:
            for part in (SUPPORT, QUERY):
                episode[part][ITEM_OFFSET] = offsets[episode[part][ITEM_ID]]
            return episode

        batches = {how: [] for how in ways}
        for group, sets in (("report", prepared.scenarios), ("checkpoint choice", prepared.validation_sets())):
            alone = list(sets.values())
            made = {before: [list(eval_batches(prepared.encoded, t, batch_size, min_real=0.0)) for t in alone],
                    now: [list(eval_batches(prepared.encoded, join_task_sets(alone), batch_size))]}
            for how in ways:
                labels = list(sets) if len(made[how]) > 1 else [" + ".join(sets)]
                for label, passed in zip(labels, made[how]):
                    masks = [episode[SUPPORT]["mask"] for episode, _ in passed]
                    rows.append({"data": dataset, "scenario": f"{group}: {label}", "batches": how,
                                 "calls": len(passed),
                                 "real support rows": float(sum(m.sum() for m in masks) / sum(m.size for m in masks)),
                                 "task slots filled": sum(len(i) for _, i in passed) / sum(m.shape[0] for m in masks)})
                    batches[how] += [with_offsets(e) if how == now else e for e, _ in passed]
            print([r for r in rows if r["scenario"].startswith(group)], flush=True)
        fns = {how: adapt_and_score_fn(learner) for how in ways}
        seconds = {how: [] for how in ways}
        for r in range(rounds + 1):  # round 0 traces
            for how in ways:
                start = time.perf_counter()
                for episode in batches[how]:
                    fns[how](episode).numpy()
                if r:
                    seconds[how].append(time.perf_counter() - start)
        base = float(np.median(seconds[before]))
        for how in ways:
            t = float(np.median(seconds[how]))
            rows.append({"data": dataset, "scenario": "both groups", "batches": how, "calls": len(batches[how]),
                         "seconds": t, "vs before": base / t})
        print(rows[-len(ways):], flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="meta-steps per round")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 rounds of 2 steps, fewer variants")
    parser.add_argument("--out", default="benchmarks/results/meta_train_throughput.md")
    parser.add_argument("--only", choices=("wide", "vectorised", "hoist", "padding", "versus"),
                        help="run one section")
    parser.add_argument("--against", help="for --only versus: another checkout of the library (its root folder)")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--fit-buckets", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--trim-supports", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--task-chunks", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        import json

        print(json.dumps(worker(args.worker, 3, args.fit_buckets, args.trim_supports, args.task_chunks)))
        return 0
    if args.only == "versus":
        if not args.against:
            parser.error("--only versus needs --against PATH (another checkout of the library)")
        rows = versus_section(args.against, args.rounds, 8 if args.quick else 32)
        return write_report(args.out, [
            "## The wide configuration against another checkout, fresh processes alternating", "",
            markdown_table(rows, ["library", "step_ms", "tasks_per_s", "vs before", "cores busy",
                                  "real support rows", "compile_s"]), ""])
    rounds, calls = (2, 2) if args.quick else (args.rounds, args.steps)
    sections = []
    if args.only in (None, "padding"):
        padding = padding_section(rounds=2 if args.quick else args.rounds)
        sections += [
            ("## Padding: the meta-training sampler's buckets (trimmed, padded to fitted buckets or powers of two) "
             "and the evaluation passes' batches (packed, 32 tasks a batch at most), and their time"), "",
            markdown_table(padding, ["data", "scenario", "batches", "calls", "real support rows",
                                     "task slots filled", "buckets", "seconds", "vs before"]), ""]
    if args.only == "padding":
        return write_report(args.out, sections)
    if args.only in (None, "hoist"):
        hoist = hoist_section(rounds, 8 if args.quick else 32)
        sections += [
            ("## Three inner loops: the forward pass at every step, what does not adapt once per task, and "
             "the low-rank first layer (MeLU 8x32 -> 64-64-1, MAML, 5 second-order inner steps, decision "
             "layers adapt, XLA, 32 tasks)"), "",
            markdown_table(hoist, ["content", "inner loop", "step_ms", "tasks_per_s", "speed-up", "cores busy",
                                   "real support rows"]), ""]
    if args.only == "hoist":
        return write_report(args.out, sections)
    if args.only in (None, "wide"):
        wide_rows, facts = wide_section(rounds, 16 if args.quick else 32)
        overhead = overhead_section(rounds, 4 if args.quick else 25)
        sections += [
            "## Wide content (per-field embeddings), MeLU 8x32 -> 64-64-1, 5 second-order inner steps",
            f"Item table {facts['item_table']}, {facts['item_vocab']} item-field values fitted, "
            f"{facts['values_per_item']:.1f} values per item on average.", "",
            markdown_table(wide_rows, ["content", "input", "steps per call", "step_ms", "tasks_per_s",
                                       "vs narrow, 1 step/call", "compile_s"]), "",
            "Fixed per-step overhead (a near-empty step: 1 task, 1 inner step, support 8):", "",
            markdown_table(overhead, ["steps per call", "ms per meta-step"]), ""]
    if args.only == "wide":
        return write_report(args.out, sections)
    alone_mb = memory_probe()
    print(f"peak RSS of the vectorised XLA step alone: {alone_mb:.0f} MB")
    diff = check_same_gradients()
    print(f"vectorised vs per-task meta-gradient max |diff| = {diff:.2e}")
    roofline = matmul_gflops()
    print(f"roofline: 2048x2048 float32 matmul {roofline:.1f} GFLOP/s")
    rows = []
    variants = [(1, False), (1, True), (5, False), (5, True)]
    for inner, first_order in variants:
        order = "first" if first_order else "second"
        for support in (32,) if args.quick else (32, 64):
            combos = [("vectorised", MAML, True), ("vectorised", MAML, False), ("per-task loop", PerTaskMAML, False)]
            if inner == 1:
                combos.append(("per-task loop", PerTaskMAML, True))
            results = {}
            for name, cls, jit in combos:
                r = measure(cls, inner, first_order, jit, support, calls, rounds)
                results[(name, jit)] = r
                row = {"inner steps": inner, "order": order, "support": support, "variant": name,
                       "XLA": "yes" if jit else "no", **r, "% of matmul": 100 * r["gflops"] / roofline}
                rows.append(row)
                print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
            base = results[("per-task loop", False)]["step_ms"]
            for row in rows[-len(combos):]:
                row["speed-up vs per-task (no XLA)"] = base / row["step_ms"]
    columns = ["inner steps", "order", "support", "variant", "XLA", "tasks_per_s", "step_ms", "gflops",
               "% of matmul", "speed-up vs per-task (no XLA)", "first_call_s"]
    table = markdown_table(rows, columns)
    return write_report(args.out, [
        *sections,
        f"Roofline (2048² float32 matmul): {roofline:.1f} GFLOP/s; vectorised vs per-task gradient max |diff| {diff:.1e}",
        f"Peak resident memory: {alone_mb:.0f} MB for a process running only the vectorised XLA step "
        f"(5 second-order steps); {peak_rss_mb():.0f} MB for this whole benchmark process", "", table, ""])


if __name__ == "__main__":
    sys.exit(main())
