"""Where a meta-step runs: on this process's device, or on the replicas of a ``tf.distribute`` strategy.

:class:`~tfmetarec.learners.MetaTrainer` owns the step logic (meta-gradients, the outer
update, the step count, checkpoints, callbacks); a runner owns placement:

* :class:`LocalRunner` compiles the whole step (inner loop, meta-gradient and optimizer
  update) into one function, XLA-compiled with ``jit_compile``;
* :class:`DistributedRunner` compiles each replica's meta-gradient of its share of the
  global task batch, all-reduces the gradients and applies one outer update everywhere
  (compiling the collectives with XLA fails on CPU); a failed peer becomes a
  :class:`~tfmetarec.learners.distribute.ClusterError`.

Both offer the same four operations: ``scope()``, ``compile(trainer)``, ``run(count,
episodes)`` for a global episode (``count=1``) or a ``[count, ...]`` stack, and ``calls(source,
start, group, n)`` streaming ``n`` compiled calls from an episode source.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import numpy as np
import tensorflow as tf

from tfmetarec.learners.distribute import ClusterError, is_chief, worker_of
from tfmetarec.models.functional import graph_function
from tfmetarec.types import TASK_MASK, Episode


Logs = dict[str, float]


class Trainer(Protocol):
    """What a runner reads of :class:`~tfmetarec.learners.MetaTrainer`."""

    learner: Any
    optimizer: Any
    variables: list
    step: Any
    jit_compile: bool
    sliced: bool

    def step_fn(self, episode: Episode) -> dict[str, tf.Tensor]: ...

    def group_fn(self, episodes: Episode) -> dict[str, tf.Tensor]: ...


class Source(Protocol):
    """An episode source (``tfmetarec.learners.trainer.EpisodeSource``)."""

    def dataset(self, prefetch: int = 2, start: int = 0, group: int = 1, shard: int = 0,
                num_shards: int = 1) -> tf.data.Dataset: ...


def _floats(logs: dict[str, tf.Tensor]) -> Logs:
    return {k: float(v) for k, v in logs.items()}


class LocalRunner:
    """One process, one device: the whole meta-step compiled into one function (or, for a
    sliced step, an uncompiled step around its compiled parts)."""

    chief = True

    def scope(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def compile(self, trainer: Trainer) -> None:
        self.trainer = trainer
        relax = not trainer.jit_compile  # without XLA, one graph serves every support bucket
        jit = trainer.jit_compile and not trainer.sliced  # a sliced step compiles its parts
        self._one = graph_function(trainer.step_fn, jit_compile=jit, reduce_retracing=relax)
        self._group = graph_function(trainer.group_fn, jit_compile=jit, reduce_retracing=relax)

    def run(self, count: int, episodes: Episode) -> Logs:
        """One meta-step on a global episode (``count`` 1) or one per episode of a stack."""
        return _floats(self._one(episodes) if count == 1 else self._group(episodes))

    def calls(self, source: Source, start: int, group: int, calls: int) -> Iterator[Callable[[], Logs]]:
        stream = iter(source.dataset(start=start, group=group))
        for _ in range(calls):
            batch = next(stream)
            yield lambda batch=batch: self.run(group, batch)

    def saver(self, checkpoint: tf.train.Checkpoint, directory: str) -> Callable[[int], None]:
        manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=3)
        return lambda step: manager.save(checkpoint_number=step) and None


class DistributedRunner:
    """The replicas of ``strategy``: per-replica meta-gradients (XLA-compiled with ``jit_compile``),
    weighted by each replica's share of the real tasks and summed by the optimizer's update."""

    def __init__(self, strategy: tf.distribute.Strategy):
        self.strategy = strategy
        self.chief = is_chief(strategy)
        self._functions: dict[tuple[int, str | None], Callable] = {}

    def scope(self) -> contextlib.AbstractContextManager:
        return self.strategy.scope()

    def compile(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self._replica_gradients = graph_function(trainer.learner.meta_gradients, jit_compile=trainer.jit_compile)

    def check_in_scope(self, variables: list, optimizer: Any) -> None:
        """The learner's variables (and the optimizer, if given) must come from the strategy's scope."""
        extended = self.strategy.extended
        outside = [getattr(v, "path", v.name) for v in variables
                   if not extended.variable_created_in_scope(getattr(v, "value", v))]
        if outside:
            raise ValueError(f"MetaTrainer(strategy=...) needs the learner built under strategy.scope(); "
                             f"{len(outside)} meta-variable(s) were created outside it (first: {outside[0]}). "
                             "Build the model and the learner inside `with strategy.scope():`.")
        if optimizer is not None and getattr(optimizer, "_distribution_strategy", self.strategy) is not self.strategy:
            raise ValueError("The optimizer given to MetaTrainer(strategy=...) was created outside "
                             "strategy.scope(); create it inside, or pass none (Adam 1e-3 is made there).")

    def _replica_step(self, episode: Episode) -> dict[str, tf.Tensor]:
        """One replica's share of a meta-step: its meta-gradient, weighted by its share of the
        global batch's real tasks, then the optimizer's update (which sums the replicas')."""
        trainer = self.trainer
        grads, logs = self._replica_gradients(episode)
        count = tf.reduce_sum(tf.cast(episode[TASK_MASK], tf.float32))
        total = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, count)
        share = tf.math.divide_no_nan(count, total)
        trainer.optimizer.apply([g * tf.cast(share, g.dtype) for g in grads], trainer.variables)
        return {k: v * tf.cast(share, v.dtype) for k, v in logs.items()}

    def _call(self, count: int, episodes: Any) -> dict[str, tf.Tensor]:
        """``count`` meta-steps of the whole replica group (the loop unrolled in the graph);
        each replica holds a ``[count, T/R, ...]`` stack (no leading axis when ``count`` is 1).
        Returns the global logs averaged over the steps."""
        keys: list[str] = []
        total = None
        for k in range(count):
            def replica(stack: Episode, k: int = k) -> tf.Tensor:
                logs = self._replica_step(stack if count == 1 else tf.nest.map_structure(lambda x: x[k], stack))
                keys[:] = sorted(logs)
                return tf.stack([tf.cast(logs[key], tf.float32) for key in keys])  # one reduction for all logs

            logs = self.strategy.reduce(tf.distribute.ReduceOp.SUM, self.strategy.run(replica, args=(episodes,)),
                                        axis=None)
            total = logs if total is None else total + logs
        return {key: total[i] / count for i, key in enumerate(keys)}

    def _function(self, count: int, spec: Any) -> Callable:
        key = (count, None if spec is None else str(spec))
        if key not in self._functions:
            self._functions[key] = graph_function(lambda episodes: self._call(count, episodes),
                                                  input_signature=None if spec is None else [spec])
        return self._functions[key]

    def _split(self, episode: Episode, axis: int = 0) -> Any:
        """A whole episode (or a ``[K, T, ...]`` stack, ``axis=1``) cut into the replicas'
        equal shares of its tasks."""
        count = self.strategy.num_replicas_in_sync
        tasks = int(np.shape(episode[TASK_MASK])[axis])
        if tasks % count:
            raise ValueError(f"The episode's {tasks} tasks do not split equally over {count} replicas; "
                             f"use a batch size that is a multiple of {count}.")
        size = tasks // count

        def share(context: tf.distribute.ValueContext) -> Episode:
            part = slice(context.replica_id_in_sync_group * size, (context.replica_id_in_sync_group + 1) * size)
            return tf.nest.map_structure(lambda x: tf.constant(np.asarray(x)[(slice(None),) * axis + (part,)]),
                                         episode)

        return self.strategy.experimental_distribute_values_from_function(share)

    def _guarded(self, fn: Callable, episodes: Callable[[], Any]) -> Logs:
        """``fn(episodes())`` as logs; a failed peer (seen by any collective: the input
        iterator's or the gradients') becomes a :class:`ClusterError`."""
        try:
            return _floats(fn(episodes()))
        except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError) as err:
            index, workers = worker_of(self.strategy)
            lines = [line.strip() for line in str(err).splitlines() if line.strip()]
            first = " ".join(lines[:2])[:400] if lines else type(err).__name__
            raise ClusterError(
                f"Distributed meta-training stopped at step {int(self.trainer.step.numpy())} on worker {index} of "
                f"{workers}: a peer worker died or stopped answering within the collective timeout "
                f"({type(err).__name__}: {first}). Restart every worker; training resumes from the last checkpoint."
            ) from err

    def run(self, count: int, episodes: Episode) -> Logs:
        return self._guarded(self._function(count, None), lambda: self._split(episodes, axis=0 if count == 1 else 1))

    def calls(self, source: Source, start: int, group: int, calls: int) -> Iterator[Callable[[], Logs]]:
        """Per-replica episodes (or ``group`` stacks) from ``start``: every input pipeline (one
        per worker) reads the shards of its replicas, which take them in turn."""
        def per_worker(context: tf.distribute.InputContext) -> tf.data.Dataset:
            local = context.num_replicas_in_sync // context.num_input_pipelines
            first = context.input_pipeline_id * local
            parts = [source.dataset(start=start, group=group, shard=first + j,
                                    num_shards=context.num_replicas_in_sync) for j in range(local)]
            if local == 1:
                return parts[0]
            return tf.data.Dataset.choose_from_datasets(parts, tf.data.Dataset.range(local).repeat())

        stream = iter(self.strategy.distribute_datasets_from_function(per_worker))
        fn = self._function(group, stream.element_spec)
        for _ in range(calls):
            yield lambda: self._guarded(fn, lambda: next(stream))

    def saver(self, checkpoint: tf.train.Checkpoint, directory: str) -> Callable[[int], None]:
        """``save(step)``: the chief keeps the last 3 checkpoints in ``directory``; another
        worker saves to a scratch folder of its own and deletes it."""
        if self.chief:
            manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=3)
            return lambda step: manager.save(checkpoint_number=step) and None
        scratch = os.path.join(directory, f".worker-{worker_of(self.strategy)[0]}-scratch")

        def save(step: int) -> None:
            tf.train.CheckpointManager(checkpoint, scratch, max_to_keep=1).save(checkpoint_number=step)
            shutil.rmtree(scratch, ignore_errors=True)

        return save


__all__ = ["DistributedRunner", "LocalRunner"]
