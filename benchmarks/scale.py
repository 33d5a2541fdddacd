"""How time and memory grow with the data: 1M to 50M ratings, stage by stage; and 1 vs 2 replicas.

    python benchmarks/scale.py                      # sizes 1M 5M 20M 50M, then the replica comparison
    python benchmarks/scale.py --quick              # sizes 0.2M 1M, short replica runs (a smoke run)
    python benchmarks/scale.py --sizes 1 5 --skip-replicas

Population: ``make_synthetic(method="sampled")`` with users = ratings / 50 (20-80 ratings
each) and items = ratings / 500 (at least 500), written once as MovieLens 20M/25M's
``ratings.csv`` + ``movies.csv`` (not timed). Each size runs in a fresh subprocess:

1. **load**: ``load_movielens_25m`` of that folder (pandas' C reader; validation);
2. **split**: ``cold_start_split`` (MeLU protocol, new items from 1998);
3. **encode**: ``FeatureEncoder`` fitted on the existing users and items, ``transform``;
4. **train pass**: ``EpisodeSampler`` over the meta-training ratings and one pass over
   its tasks (``ceil(tasks / 64)`` meta-steps of MAML, 1 second-order inner step, on a
   MeLU with 8-dim embeddings and a 32-unit layer, XLA, 4 steps per call);
5. **evaluate**: ``build_tasks`` of the user-cold scenario and ``evaluate_tasks`` on it.

Per stage: wall seconds and the peak resident memory (RSS sampled every 20 ms). The
exponent ``b`` of ``time ~ ratings^b`` is the least-squares slope on log-log axes (1 means a
constant cost per rating). The replica section trains the same MAML for a fixed number of
steps at batch 64 on one process, on 2 logical CPU devices (``MirroredStrategy``) and on 2
worker processes on 127.0.0.1 (``MultiWorkerMirroredStrategy``), medians of rounds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results" / "scale"
BATCH = 64
PAGE = os.sysconf("SC_PAGE_SIZE")


class RssPeak:
    """The peak resident memory of this process while a ``with`` block runs (MB)."""

    def __enter__(self) -> RssPeak:
        self.peak = self._now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        self.started = time.perf_counter()
        return self

    @staticmethod
    def _now() -> float:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * PAGE / 2**20

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._now())

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.started
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._now())


def population(ratings: int) -> dict:
    users = max(ratings // 50, 100)
    return {"num_users": users, "num_items": max(ratings // 500, 500), "ratings_per_user": (20, 80)}


def write_dataset(millions: float, folder: Path) -> dict:
    """The synthetic population of ``millions`` ratings as ratings.csv + movies.csv (cached)."""
    import numpy as np

    from tfmetarec.data import make_synthetic

    done = folder / "done.json"
    if done.exists():
        return json.loads(done.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    sizes = population(int(millions * 1e6))
    started = time.perf_counter()
    data = make_synthetic(**sizes, seed=0, method="sampled")
    made = time.perf_counter() - started
    r = data.ratings
    with open(folder / "ratings.csv", "w", encoding="utf-8") as fh:
        fh.write("userId,movieId,rating,timestamp\n")
        step = 2_000_000
        for a in range(0, len(r), step):
            part = r.iloc[a:a + step]
            lines = (part["user"].astype(str) + "," + part["item"].astype(str) + ","
                     + np.char.mod("%.1f", part["rating"].to_numpy()) + "," + part["timestamp"].astype(str))
            fh.write("\n".join(lines) + "\n")
    items = data.items
    movies = items[["item", "title"]].rename(columns={"item": "movieId"})
    movies["genres"] = ["|".join(g) if g else "(no genres listed)" for g in items["genres"]]
    movies.to_csv(folder / "movies.csv", index=False)
    info = {"ratings": len(r), "users": len(data.users), "items": len(items), "generate_s": made,
            "csv_mb": (folder / "ratings.csv").stat().st_size / 2**20}
    done.write_text(json.dumps(info))
    return info


def run_stages(folder: Path) -> dict:
    """The pipeline on one folder, in this process: seconds and peak RSS per stage."""
    import numpy as np

    from tfmetarec.data import FeatureEncoder, SplitConfig, cold_start_split, load_dataset
    from tfmetarec.tasks.episode import build_tasks
    from tfmetarec.tasks.samplers import EpisodeSampler

    out: dict = {}
    with RssPeak() as m:
        data = load_dataset("movielens-25m", folder)
    out["load"] = (m.seconds, m.peak)
    with RssPeak() as m:
        config = SplitConfig(new_item_year=1998, seed=0)
        split = cold_start_split(data, config)
    out["split"] = (m.seconds, m.peak)
    with RssPeak() as m:
        encoder = FeatureEncoder().fit(data, train_users=split.existing_users, train_items=split.existing_items)
        encoded = encoder.transform(data)
    out["encode"] = (m.seconds, m.peak)

    import keras

    from tfmetarec.evaluation.protocol import evaluate_tasks
    from tfmetarec.learners import MAML, MetaTrainer
    from tfmetarec.models import MeLU

    model = MeLU.from_spec(encoded.spec, item_table=encoded.item_table, embedding_dim=8, hidden_units=(32,), seed=0)
    learner = MAML(model, inner_steps=1, inner_lr=0.05)
    trainer = MetaTrainer(learner, keras.optimizers.Adam(1e-3), jit_compile=True, steps_per_execution=4)
    with RssPeak() as m:
        sampler = EpisodeSampler(encoded, split.meta_train, batch_size=BATCH, query_size=config.query_size,
                                 max_support=64, seed=0)
        steps = 4 * math.ceil(len(sampler) / BATCH / 4)
        warm = time.perf_counter()
        trainer.fit(sampler, 8, verbose=0)  # compiles every support bucket once (kept out of the rate)
        compile_s = time.perf_counter() - warm
        timed = time.perf_counter()
        trainer.fit(sampler, 8 + steps, verbose=0)
        train_s = time.perf_counter() - timed
    out["train pass"] = (m.seconds - compile_s, m.peak)  # the one-off XLA compiles are reported apart
    out["tasks"] = len(sampler)
    out["tasks_per_s"] = steps * BATCH / train_s
    out["compile_s"] = compile_s
    with RssPeak() as m:
        tasks = build_tasks(encoded, split.partitions["user_cold"], query_size=config.query_size,
                            min_support=config.min_support, max_support=64, seed=0, name="user_cold")
        report = evaluate_tasks(learner, encoded, tasks, batch_size=256, jit_compile=True)  # XLA, as in the table
    out["evaluate"] = (m.seconds, m.peak)
    out["eval_tasks"] = len(tasks)
    out["eval_mae"] = float(report["MAE"])
    out["ratings"] = int(len(data.ratings))
    out["train_ratings"] = int(len(split.meta_train))
    out["peak_mb"] = max(v[1] for v in out.values() if isinstance(v, tuple))
    del np
    return out


STAGES = ("load", "split", "encode", "train pass", "evaluate")


def exponent(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log(y) on log(x)."""
    lx, ly = [math.log(x) for x in xs], [math.log(max(y, 1e-9)) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


# -- replicas -------------------------------------------------------------------------------------
def replica_worker(mode: str, steps: int, rounds: int, out: str) -> None:
    """One training process of the replica comparison (mode: single, mirrored, worker)."""
    if mode == "mirrored":
        from tfmetarec.learners import split_cpu

        devices = split_cpu(2)
    from tfmetarec.learners.distribute import is_chief, make_strategy

    strategy = {"single": lambda: None, "mirrored": lambda: make_strategy("mirrored", devices=devices),
                "worker": lambda: make_strategy("multi_worker", timeout_seconds=600)}[mode]()
    import contextlib

    from tfmetarec.data import FeatureEncoder, SplitConfig, cold_start_split, make_synthetic
    from tfmetarec.learners import MAML, MetaTrainer
    from tfmetarec.models import MeLU
    from tfmetarec.tasks.samplers import EpisodeSampler

    data = make_synthetic(num_users=4000, num_items=1000, ratings_per_user=(20, 80), seed=0)
    split = cold_start_split(data, SplitConfig(seed=0))
    encoded = FeatureEncoder().fit(data, split.existing_users, split.existing_items).transform(data)
    sampler = EpisodeSampler(encoded, split.meta_train, batch_size=BATCH, max_support=32, bucketed=False, seed=0)
    with strategy.scope() if strategy else contextlib.nullcontext():
        model = MeLU.from_spec(encoded.spec, item_table=encoded.item_table, embedding_dim=8, hidden_units=(32,),
                               seed=0)
        learner = MAML(model, inner_steps=1, inner_lr=0.05)
    trainer = MetaTrainer(learner, jit_compile=True, strategy=strategy)
    trainer.fit(sampler, 5, verbose=0)  # compile
    seconds = []
    for r in range(rounds):
        start = time.perf_counter()
        trainer.fit(sampler, 5 + (r + 1) * steps, verbose=0)
        seconds.append(time.perf_counter() - start)
    if is_chief(strategy):
        Path(out).write_text(json.dumps({"seconds": seconds, "steps": steps}))


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def replicas(steps: int, rounds: int) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    rows = []
    for mode in ("single", "mirrored", "worker"):
        out = RESULTS / f"replicas_{mode}.json"
        count = 2 if mode == "worker" else 1
        cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
        procs = []
        try:
            for i in range(count):
                extra = {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})} \
                    if mode == "worker" else {}
                procs.append(subprocess.Popen([sys.executable, __file__, "--replica-worker", mode, "--steps",
                                               str(steps), "--rounds", str(rounds), "--out", str(out)],
                                              env={**env, **extra}))
            for p in procs:
                p.wait(timeout=1800)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        result = json.loads(out.read_text())
        per_step = statistics.median(result["seconds"]) / steps
        rows.append({"setup": {"single": "1 process, 1 device", "mirrored": "MirroredStrategy, 2 logical CPUs",
                               "worker": "MultiWorkerMirroredStrategy, 2 processes"}[mode],
                     "replicas": 1 if mode == "single" else 2, "step ms": 1000 * per_step,
                     "tasks/s": BATCH / per_step, "rounds s": [round(s, 2) for s in result["seconds"]]})
    base = rows[0]["tasks/s"]
    for row in rows:
        row["vs 1 process"] = f"{row['tasks/s'] / base:.2f}x"
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=float, nargs="+", default=[1, 5, 20, 50], help="millions of ratings")
    parser.add_argument("--quick", action="store_true", help="sizes 0.2 and 1, short replica runs")
    parser.add_argument("--skip-replicas", action="store_true")
    parser.add_argument("--data", default="/tmp/tfmetarec-scale", help="where the generated CSV files go")
    parser.add_argument("--steps", type=int, default=40, help="replica comparison: meta-steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--stage-run", help=argparse.SUPPRESS)
    parser.add_argument("--replica-worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage_run:
        Path(args.out).write_text(json.dumps(run_stages(Path(args.stage_run))))
        return 0
    if args.replica_worker:
        replica_worker(args.replica_worker, args.steps, args.rounds, args.out)
        return 0
    from common import machine, markdown_table

    sizes = [0.2, 1.0] if args.quick else args.sizes
    if args.quick:
        args.steps, args.rounds = 10, 3
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows, runs = [], []
    for millions in sizes:
        folder = Path(args.data) / f"{millions:g}M"
        info = write_dataset(millions, folder)
        out = RESULTS / f"stages_{millions:g}M.json"
        started = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--stage-run", str(folder), "--out", str(out)], check=True,
                       timeout=7200)
        result = json.loads(out.read_text())
        result["wall_s"] = time.perf_counter() - started
        runs.append((millions, info, result))
        for stage in STAGES:
            seconds, peak = result[stage]
            rows.append({"ratings": f"{result['ratings'] / 1e6:.1f}M", "stage": stage, "seconds": seconds,
                         "us/rating": 1e6 * seconds / result["ratings"], "peak RSS MB": peak})
        print(f"{millions:g}M: {json.dumps(result)}", flush=True)
    lines = [f"Machine: {machine()}", f"Command: python benchmarks/scale.py {' '.join(sys.argv[1:])}", ""]
    lines += ["| ratings | users | items | train tasks | eval tasks | tasks/s (train) | total s | peak RSS MB |",
              "|---|---|---|---|---|---|---|---|"]
    for millions, info, r in runs:
        total = sum(r[s][0] for s in STAGES)
        lines.append(f"| {r['ratings'] / 1e6:.1f}M | {info['users']} | {info['items']} | {r['tasks']} | "
                     f"{r['eval_tasks']} | {r['tasks_per_s']:.0f} | {total:.1f} | {r['peak_mb']:.0f} |")
    lines += ["", markdown_table(rows, ["ratings", "stage", "seconds", "us/rating", "peak RSS MB"]), ""]
    if len(runs) > 1:
        xs = [r["ratings"] for _, _, r in runs]
        fits = {stage: exponent(xs, [r[stage][0] for _, _, r in runs]) for stage in STAGES}
        fits["peak RSS"] = exponent(xs, [r["peak_mb"] for _, _, r in runs])
        lines.append("Exponent b of seconds ~ ratings^b: " + ", ".join(f"{k} {v:.2f}" for k, v in fits.items()))
    if not args.skip_replicas:
        table = replicas(args.steps, args.rounds)
        lines += ["", f"Replicas: MAML (1 second-order step) on MeLU 8-dim/32 units, batch {BATCH}, support 32, "
                  f"median of {args.rounds} rounds of {args.steps} steps", "",
                  markdown_table(table, ["setup", "replicas", "step ms", "tasks/s", "vs 1 process", "rounds s"])]
    text = "\n".join(lines) + "\n"
    (RESULTS / ("scale_quick.md" if args.quick else "scale.md")).write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
