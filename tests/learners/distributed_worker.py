"""A worker process for the distributed-training tests (run as a script, never collected).

    python distributed_worker.py mirrored OUT.json WORKDIR
    python distributed_worker.py worker OUT.json WORKDIR META_STEPS PRETRAIN_STEPS [--die-at N | --stall-at N] [--timeout S]

``mirrored`` splits the CPU into 2 logical devices and compares ``MirroredStrategy`` over
them with one device. ``worker`` is one ``MultiWorkerMirroredStrategy`` worker (``TF_CONFIG``
set by the test) running ``experiment.train`` into WORKDIR; the chief writes the histories
and the learner's final weights to OUT.json. ``--die-at N``: worker 1 exits abruptly after
N meta-steps (a crashed machine), so worker 0 must fail with a clear error; ``--stall-at N``:
worker 1 hangs after N meta-steps, so worker 0 must fail once ``--timeout`` seconds pass.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def config(meta_steps: int, pretrain_steps: int, steps_per_execution: int = 1, jit_compile: bool = True):
    """The small experiment every distributed test trains (and the single-process reference)."""
    from tfmetarec.config import ExperimentConfig, LearnerConfig, ModelConfig, TrainConfig
    from tfmetarec.config import SplitConfig

    return ExperimentConfig(
        split=SplitConfig(seed=1),
        model=ModelConfig(embedding_dim=4, hidden_units=(8,)),
        learner=LearnerConfig(inner_steps=2, inner_lr=0.1),
        train=TrainConfig(meta_steps=meta_steps, pretrain_steps=pretrain_steps, batch_size=8, outer_lr=1e-2,
                          max_support=8, seed=1, steps_per_execution=steps_per_execution, jit_compile=jit_compile),
    )


def data():
    """A small synthetic population (supports capped at 8 rows: one episode shape, one compile)."""
    from tfmetarec.data import make_synthetic

    return make_synthetic(num_users=200, num_items=150, seed=1)


def weights(learner) -> list[list[float]]:
    return [v.numpy().ravel().tolist() for v in learner.meta_variables()]


def _mirrored(out: str, workdir: str) -> dict:
    """Two logical CPU devices against one: per-step losses, weights, K steps per call,
    the baseline's pretraining, a resumed run, the mirrored item table, and a batch the
    replicas cannot share."""
    from tfmetarec.learners import split_cpu

    devices = split_cpu(2)
    import numpy as np

    from tfmetarec import experiment
    from tfmetarec.learners.distribute import make_strategy

    strategy = make_strategy("mirrored", devices=devices)
    result: dict = {"replicas": strategy.num_replicas_in_sync}
    population = data()
    for k in (1, 2):
        conf = config(6, 4, k, jit_compile=False)  # XLA under a strategy: the two-worker run's
        prepared = experiment.prepare(conf, population)
        single = experiment.train(conf, None, verbose=0, data=prepared.data)
        both = experiment.train(conf, os.path.join(workdir, f"k{k}"), verbose=0, data=prepared.data,
                                strategy=strategy)
        result[f"k{k}"] = {
            "single": single.history, "mirrored": both.history,
            "single_weights": weights(single.learner), "mirrored_weights": weights(both.learner),
            "baseline_gap": max(float(np.abs(a - b).max()) for a, b in zip(
                [v.numpy() for v in single.baseline.meta_variables()],
                [v.numpy() for v in both.baseline.meta_variables()])),
        }
        table = both.learner.model._item_table
        result[f"k{k}"]["item_table"] = {
            "type": type(table).__name__,
            "same": bool(np.array_equal(both.learner.model.item_table, prepared.encoded.item_table)),
            "replicas_equal": all(np.array_equal(t.numpy(), prepared.encoded.item_table)
                                  for t in strategy.experimental_local_results(table)),
        }
    # A resumed run: 4 steps with checkpoints, a fresh build restored and trained to 6.
    conf = config(4, 0, jit_compile=False)
    experiment.train(conf, os.path.join(workdir, "resume"), verbose=0, data=population, strategy=strategy)
    resumed = experiment.train(config(6, 0, jit_compile=False), os.path.join(workdir, "resume"), verbose=0,
                               data=population,
                               strategy=strategy)
    result["resumed_weights"] = weights(resumed.learner)
    result["resumed_history"] = resumed.history["learner"]
    try:
        odd = dataclasses.replace(conf, train=dataclasses.replace(conf.train, batch_size=7))
        experiment.train(odd, None, verbose=0, data=population, strategy=strategy)
    except ValueError as err:
        result["odd_batch_error"] = str(err)
    return result


def _worker(args: argparse.Namespace) -> dict | None:
    from tfmetarec.learners.distribute import ClusterError, is_chief, make_strategy, worker_of

    strategy = make_strategy("multi_worker", timeout_seconds=args.timeout)  # before any other TensorFlow work
    import keras

    from tfmetarec import experiment

    index, count = worker_of(strategy)
    callbacks = []
    if (args.die_at or args.stall_at) and index == 1:
        class Fail(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if args.die_at and batch + 1 >= args.die_at:
                    sys.stdout.flush()
                    # Collectives pull their data (RecvBuf): let the peer finish reading this
                    # step before the crash, so the peer fails on the next step, not this one.
                    time.sleep(2.0)
                    os._exit(17)  # no cleanup, no goodbye: a crashed machine
                if args.stall_at and batch + 1 >= args.stall_at:
                    time.sleep(3600)  # alive but silent: a hung machine

        callbacks.append(Fail())
    try:
        conf = config(args.meta_steps, args.pretrain_steps, jit_compile=not args.no_xla)
        run = experiment.train(conf, args.workdir, verbose=0, data=data(),
                               strategy=strategy, callbacks=callbacks)
    except ClusterError as err:
        print(f"ClusterError: {err}", file=sys.stderr, flush=True)
        os._exit(3)  # TensorFlow's collective runtime can hold a normal exit while a peer hangs
    if not is_chief(strategy):
        return None
    return {"workers": count, "replicas": strategy.num_replicas_in_sync, "history": run.history,
            "weights": weights(run.learner)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("mirrored", "worker"))
    parser.add_argument("out")
    parser.add_argument("workdir")
    parser.add_argument("meta_steps", type=int, nargs="?", default=4)
    parser.add_argument("pretrain_steps", type=int, nargs="?", default=2)
    parser.add_argument("--die-at", type=int, default=0)
    parser.add_argument("--stall-at", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--no-xla", action="store_true", help="failure tests: what XLA compiles is not their subject")
    args = parser.parse_args()
    result = _mirrored(args.out, args.workdir) if args.mode == "mirrored" else _worker(args)
    if result is not None:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(result, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
