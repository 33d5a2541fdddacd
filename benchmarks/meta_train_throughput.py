"""Meta-training throughput of MAML on a MeLU-sized model: XLA vs graph, vectorised vs per task.

    python benchmarks/meta_train_throughput.py [--rounds 5] [--steps 10] [--quick]

The model: 8 categorical fields (4 user + 4 item) embedded in 32 dimensions, decision
MLP 256-64-64-1, MeLU's local update (only the decision layers adapt); 32 tasks per
batch, support padded to 32 rows (and 64), query 10. Each figure is the median over
rounds of the whole meta-step, outer Adam update included.

FLOP count (what GFLOP/s divides by). One decision-MLP forward on one row costs
``F = 2 * (256*256 + 256*64 + 64*64 + 64*1)`` multiply-adds x 2. An inner step is a
forward plus a backward on the support (about ``3 F S``); the query forward is ``F Q``.
First order: ``k * 3FS`` for the inner loop plus ``3FQ`` for the query loss and its
gradient. Second order: the outer backward pass runs through the whole unrolled graph,
about twice its forward cost, so ``3 * (k * 3FS + FQ)``. Embedding gathers and the
optimizer update are left out (small), so the GFLOP/s figures are slight underestimates.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from common import machine, markdown_table, matmul_gflops, median_rate, peak_rss_mb  # noqa: E402

from tfmetarec.learners import MAML, MetaTrainer  # noqa: E402
from tfmetarec.learners.adaptation import inner_loop  # noqa: E402
from tfmetarec.models import MeLU  # noqa: E402

USER_VOCABS = (3, 8, 22, 40)
ITEM_VOCABS = (20, 30, 50, 100)
HIDDEN = (256, 64, 64)
BATCH, QUERY = 32, 10


class PerTaskMAML(MAML):
    """The same MAML, adapting the tasks of a batch one at a time (the baseline)."""

    def adapt(self, support):
        params = self.model.variable_values()
        rates = self.inner_learning_rates()
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
            "item_id": np.zeros((BATCH, rows), "int32"),
            "user_cat": np.stack([rng.integers(0, v, (BATCH, rows)) for v in USER_VOCABS], -1).astype("int32"),
            "item_cat": np.stack([rng.integers(0, v, (BATCH, rows)) for v in ITEM_VOCABS], -1).astype("int32"),
            "item_multi": np.zeros((BATCH, rows, 0), "float32"),
            "rating": rng.integers(1, 6, (BATCH, rows)).astype("float32"),
            "mask": np.ones((BATCH, rows), "float32"),
        }

    return {k: tf.constant(v) if not isinstance(v, dict) else {a: tf.constant(b) for a, b in v.items()}
            for k, v in {"support": part(support), "query": part(QUERY), "task_mask": np.ones(BATCH, "float32")}.items()}


def step_flops(support: int, steps: int, first_order: bool) -> float:
    f = 2 * (256 * 256 + 256 * 64 + 64 * 64 + 64)
    inner = steps * 3 * f * support
    per_task = inner + 3 * f * QUERY if first_order else 3 * (inner + f * QUERY)
    return BATCH * per_task


def build(cls, steps: int, first_order: bool, jit: bool):
    model = MeLU(USER_VOCABS, ITEM_VOCABS, 0, embedding_dim=32, hidden_units=HIDDEN, seed=0)
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="meta-steps per round")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 rounds of 2 steps, fewer variants")
    parser.add_argument("--out", default="benchmarks/results/meta_train_throughput.md")
    args = parser.parse_args(argv)
    rounds, calls = (2, 2) if args.quick else (args.rounds, args.steps)
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
    text = "\n".join([
        f"Machine: {machine()}",
        f"Roofline (2048² float32 matmul): {roofline:.1f} GFLOP/s; vectorised vs per-task gradient max |diff| {diff:.1e}",
        f"Peak resident memory: {alone_mb:.0f} MB for a process running only the vectorised XLA step "
        f"(5 second-order steps); {peak_rss_mb():.0f} MB for this whole benchmark process", "", table, ""])
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
