"""The meta-training loop: an XLA-compiled step, callbacks, TensorBoard, resumable checkpoints."""

from __future__ import annotations

import inspect
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import keras
import numpy as np
import tensorflow as tf

from tfmetarec.learners.base import MetaLearner
from tfmetarec.learners.distribute import ClusterError, is_chief, is_distributed, worker_of
from tfmetarec.types import TASK_MASK, Episode


@runtime_checkable
class EpisodeSource(Protocol):
    """A stream of episodes addressed by position (e.g. ``tfmetarec.tasks.EpisodeSampler``):
    episode ``i`` is always the same, so training can resume at any step exactly."""

    def dataset(self, prefetch: int = 2, start: int = 0, group: int = 1) -> tf.data.Dataset: ...


def stream_state(episodes: object) -> dict[str, Any] | None:
    """A source's ``state()`` (``seed``, ``position``, ``fingerprint``) when it has one."""
    state = getattr(episodes, "state", None)
    return state() if callable(state) else None


class CheckpointError(ValueError):
    """A checkpoint that cannot be restored into this trainer: corrupt, or written by another run."""


def _shardable(source: object) -> bool:
    """Whether ``source.dataset`` takes ``shard`` and ``num_shards`` (what distributed training needs)."""
    try:
        params = inspect.signature(source.dataset).parameters
    except (TypeError, ValueError, AttributeError):
        return False
    return {"shard", "num_shards"} <= set(params)


class MetaTrainer:
    """Owns the outer optimizer and runs ``meta_gradients`` + update as one step.

    Args:
        learner: the meta-learner to train.
        optimizer: the outer optimizer (default Adam, learning rate 1e-3).
        jit_compile: compile the step (inner loop, meta-gradient and optimizer
            update) with XLA. Each distinct episode shape (support bucket) compiles once.
        steps_per_execution: meta-steps per compiled call. Above 1, one call runs that
            many steps on a stack of same-shaped episodes in a loop inside the graph,
            which removes the per-step dispatch and host synchronisation. Needs an
            :class:`EpisodeSource` (which draws same-shaped groups); a plain iterable of
            episodes runs one step per call.
        strategy: a ``tf.distribute`` strategy (see
            :func:`~tfmetarec.learners.distribute.make_strategy`): ``MirroredStrategy``
            (several GPUs or logical CPUs) or ``MultiWorkerMirroredStrategy`` (several
            processes, ``TF_CONFIG``). Build the learner (and the optimizer, if you pass
            one) under ``strategy.scope()``. Each replica computes the meta-gradient of
            its share of the global task batch (``batch_size / replicas`` tasks, XLA-compiled
            with ``jit_compile``), the gradients are all-reduced into the gradient of the
            whole batch, and one outer update is applied everywhere; only the chief writes
            checkpoints and TensorBoard logs. Training then reads a sharded
            :class:`EpisodeSource` (``dataset(..., shard=, num_shards=)``, as
            :class:`~tfmetarec.tasks.EpisodeSampler` offers).
    """

    def __init__(
        self,
        learner: MetaLearner,
        optimizer: keras.optimizers.Optimizer | None = None,
        jit_compile: bool = True,
        steps_per_execution: int = 1,
        strategy: tf.distribute.Strategy | None = None,
    ):
        if int(steps_per_execution) < 1:
            raise ValueError(f"steps_per_execution must be >= 1, got {steps_per_execution}.")
        self.learner = learner
        self.jit_compile = jit_compile
        self.steps_per_execution = int(steps_per_execution)
        self.variables = learner.meta_variables()
        self.strategy = strategy if is_distributed(strategy) else None
        if self.strategy is None:
            self.optimizer = optimizer or keras.optimizers.Adam(1e-3)
            self.optimizer.build(self.variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="meta_step")
        else:
            self._check_in_scope(optimizer)
            with self.strategy.scope():
                self.optimizer = optimizer or keras.optimizers.Adam(1e-3)
                self.optimizer.build(self.variables)
                self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="meta_step")
            self._replica_gradients = tf.function(self.learner.meta_gradients, jit_compile=jit_compile)
            self._distributed: dict[tuple[int, str | None], Callable] = {}
        # The episode stream the step counts in: its seed, the next position and a fingerprint of
        # its tasks and settings, saved with the weights so a resume can prove it continues that stream.
        self.stream_seed = tf.Variable(-1, dtype=tf.int64, trainable=False, name="stream_seed")
        self.stream_position = tf.Variable(0, dtype=tf.int64, trainable=False, name="stream_position")
        self.stream_fingerprint = tf.Variable("", dtype=tf.string, trainable=False, name="stream_fingerprint")
        self.stream_group = tf.Variable(self.steps_per_execution, dtype=tf.int64, trainable=False,
                                        name="steps_per_execution")
        self._compiled = tf.function(self._step_fn, jit_compile=jit_compile)
        self._compiled_group = tf.function(self._group_fn, jit_compile=jit_compile)

    def _check_in_scope(self, optimizer: keras.optimizers.Optimizer | None) -> None:
        strategy = self.strategy
        outside = [v.path if hasattr(v, "path") else v.name for v in self.variables
                   if not strategy.extended.variable_created_in_scope(getattr(v, "value", v))]
        if outside:
            raise ValueError(f"MetaTrainer(strategy=...) needs the learner built under strategy.scope(); "
                             f"{len(outside)} meta-variable(s) were created outside it (first: {outside[0]}). "
                             "Build the model and the learner inside `with strategy.scope():`.")
        if optimizer is not None and getattr(optimizer, "_distribution_strategy", strategy) is not strategy:
            raise ValueError("The optimizer given to MetaTrainer(strategy=...) was created outside "
                             "strategy.scope(); create it inside, or pass none (Adam 1e-3 is made there).")

    def _step_fn(self, episode: Episode) -> dict[str, tf.Tensor]:
        grads, logs = self.learner.meta_gradients(episode)
        self.optimizer.apply(grads, self.variables)
        return logs

    def _group_fn(self, episodes: Episode) -> dict[str, tf.Tensor]:
        """Every episode of a ``[K, ...]`` stack in turn; the logs are the mean over the K steps."""
        count = tf.shape(episodes[TASK_MASK])[0]
        total = self._step_fn(tf.nest.map_structure(lambda x: x[0], episodes))
        for i in tf.range(1, count):
            logs = self._step_fn(tf.nest.map_structure(lambda x: x[i], episodes))  # noqa: B023
            total = {k: total[k] + logs[k] for k in total}
        return {k: v / tf.cast(count, v.dtype) for k, v in total.items()}

    # -- distributed -------------------------------------------------------------------
    def _replica_step(self, episode: Episode) -> dict[str, tf.Tensor]:
        """One replica's share of a meta-step: its meta-gradient, weighted by its share of the
        global batch's real tasks, then the optimizer's update (which sums the replicas')."""
        grads, logs = self._replica_gradients(episode)
        count = tf.reduce_sum(tf.cast(episode[TASK_MASK], tf.float32))
        total = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, count)
        share = tf.math.divide_no_nan(count, total)
        self.optimizer.apply([g * tf.cast(share, g.dtype) for g in grads], self.variables)
        return {k: v * tf.cast(share, v.dtype) for k, v in logs.items()}

    def _distributed_call(self, count: int, episodes: Any) -> dict[str, tf.Tensor]:
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

    def _distributed_fn(self, count: int, spec: Any) -> Callable:
        key = (count, None if spec is None else str(spec))
        if key not in self._distributed:
            self._distributed[key] = tf.function(lambda episodes: self._distributed_call(count, episodes),
                                                 input_signature=None if spec is None else [spec])
        return self._distributed[key]

    def _distributed_stream(self, source: EpisodeSource, start: int, group: int) -> Iterator[Any]:
        """Per-replica episodes (or ``group`` stacks) from ``start``: every input pipeline (one
        per worker) reads the shards of its replicas, which take them in turn."""
        def per_worker(context: tf.distribute.InputContext) -> tf.data.Dataset:
            local = context.num_replicas_in_sync // context.num_input_pipelines
            first = context.input_pipeline_id * local
            parts = [source.dataset(start=start, group=group, shard=first + j,  # type: ignore[call-arg]
                                    num_shards=context.num_replicas_in_sync) for j in range(local)]
            if local == 1:
                return parts[0]
            return tf.data.Dataset.choose_from_datasets(parts, tf.data.Dataset.range(local).repeat())

        return iter(self.strategy.distribute_datasets_from_function(per_worker))

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

    def _run_distributed(self, fn: Callable, count: int, episodes: Callable[[], Any]) -> dict[str, float]:
        """``fn(episodes())`` as logs; a failed peer (seen by any collective: the input
        iterator's or the gradients') becomes a :class:`ClusterError`."""
        try:
            logs = fn(episodes())
            out = {k: float(v) for k, v in logs.items()}
        except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError) as err:
            index, workers = worker_of(self.strategy)
            lines = [line.strip() for line in str(err).splitlines() if line.strip()]
            first = " ".join(lines[:2])[:400] if lines else type(err).__name__
            raise ClusterError(
                f"Distributed meta-training stopped at step {int(self.step.numpy())} on worker {index} of {workers}: "
                f"a peer worker died or stopped answering within the collective timeout ({type(err).__name__}: "
                f"{first}). Restart every worker; training resumes from the last checkpoint."
            ) from err
        self.step.assign_add(count)
        return out

    # -- steps ------------------------------------------------------------------------
    def train_step(self, episode: Episode) -> dict[str, float]:
        """One meta-update on one episode; returns the logged scalars. Under a strategy the
        episode is the global batch, cut into equal shares of tasks for the replicas."""
        if self.strategy is not None:
            return self._run_distributed(self._distributed_fn(1, None), 1, lambda: self._split(episode))
        logs = self._compiled(episode)
        self.step.assign_add(1)
        return {k: float(v) for k, v in logs.items()}

    def train_steps(self, episodes: Episode) -> dict[str, float]:
        """One meta-update per episode of a ``[K, ...]`` stack, in one compiled call; returns
        the logs averaged over the K steps."""
        count = int(np.shape(episodes[TASK_MASK])[0])
        if self.strategy is not None:
            return self._run_distributed(self._distributed_fn(count, None), count,
                                         lambda: self._split(episodes, axis=1))
        logs = self._compiled_group(episodes)
        self.step.assign_add(count)
        return {k: float(v) for k, v in logs.items()}

    def _saver(self, directory: str, chief: bool) -> Callable[[int], None]:
        """``save(step)``: the chief keeps the last 3 checkpoints in ``directory``; another
        worker saves to a scratch folder of its own and deletes it."""
        if chief:
            manager = tf.train.CheckpointManager(self.checkpoint(), directory, max_to_keep=3)
            return lambda step: manager.save(checkpoint_number=step) and None
        scratch = os.path.join(directory, f".worker-{worker_of(self.strategy)[0]}-scratch")

        def save(step: int) -> None:
            tf.train.CheckpointManager(self.checkpoint(), scratch, max_to_keep=1).save(checkpoint_number=step)
            shutil.rmtree(scratch, ignore_errors=True)

        return save

    def checkpoint(self) -> tf.train.Checkpoint:
        """What a resumed run restores: learner, optimizer state, step and the episode stream's
        state (seed, position, fingerprint, steps per call)."""
        stream = tf.train.Checkpoint(seed=self.stream_seed, position=self.stream_position,
                                     fingerprint=self.stream_fingerprint, group=self.stream_group)
        return tf.train.Checkpoint(learner=self.learner, optimizer=self.optimizer, step=self.step, stream=stream)

    def _record_stream(self, episodes: object) -> None:
        state = stream_state(episodes)
        if state is not None:
            self.stream_seed.assign(int(state["seed"]))
            self.stream_fingerprint.assign(str(state["fingerprint"]))
        self.stream_group.assign(self.steps_per_execution)
        self.stream_position.assign(self.step)

    def restore(self, path: str, episodes: object = None) -> None:
        """Restore the checkpoint at ``path`` (a prefix written by :meth:`fit`) and check that it
        continues ``episodes``' stream; anything unreadable or inconsistent is a
        :class:`CheckpointError` naming the checkpoint and what differs."""
        try:
            status = self.checkpoint().restore(path)
            status.assert_existing_objects_matched()
        except (tf.errors.OpError, AssertionError, ValueError, IndexError, KeyError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(
                f"Checkpoint {path} cannot be restored into this {type(self.learner).__name__}: {first}. It is "
                "corrupt, incomplete or was written by another model or learner; delete it (or train with "
                "--overwrite) to start fresh.") from err
        state = stream_state(episodes)
        saved = self.stream_fingerprint.numpy().decode()
        problems = []
        if state is not None and saved:
            if int(self.stream_seed.numpy()) != int(state["seed"]):
                problems.append(f"episode seed {int(self.stream_seed.numpy())} in the checkpoint, {state['seed']} now")
            if saved != state["fingerprint"]:
                problems.append(f"episode stream fingerprint {saved} in the checkpoint, {state['fingerprint']} now "
                                "(other training tasks, batch size, query size or support cap)")
        if int(self.stream_position.numpy()) != int(self.step.numpy()):
            problems.append(f"stream position {int(self.stream_position.numpy())} but step {int(self.step.numpy())}")
        if problems:
            raise CheckpointError(f"Checkpoint {path} was written for another run: " + "; ".join(problems) + ".")
        if state is not None and hasattr(episodes, "position"):
            episodes.position = int(self.step.numpy())

    def _batches(self, episodes: Iterable[Episode] | EpisodeSource, start: int, steps: int
                 ) -> Iterator[tuple[int, Callable[[], dict[str, float]]]]:
        """``(step count, run)`` until ``steps`` steps have run from ``start``: ``run()`` trains
        on the next episode or stack and returns the logs."""
        k = self.steps_per_execution
        if not isinstance(episodes, EpisodeSource):
            if self.strategy is not None:
                raise TypeError("MetaTrainer(strategy=...) trains from an EpisodeSource whose dataset() takes "
                                f"shard= and num_shards= (e.g. tfmetarec.tasks.EpisodeSampler), not a "
                                f"{type(episodes).__name__}; train_step() takes single global episodes.")
            iterator = iter(episodes)
            for _ in range(steps - start):
                batch = next(iterator)
                yield 1, lambda batch=batch: self.train_step(batch)
            return
        if self.strategy is not None and not _shardable(episodes):
            raise TypeError(f"MetaTrainer(strategy=...) needs an EpisodeSource whose dataset() takes shard= and "
                            f"num_shards= (each replica reads its share of the tasks); {type(episodes).__name__} "
                            "does not.")
        grouped_end = steps - (steps % k) if k > 1 else start
        if k > 1 and start < grouped_end:
            if start % k:
                raise ValueError(f"Cannot resume at step {start} with steps_per_execution={k}: groups start at "
                                 f"multiples of {k}. Resume with the steps_per_execution the run was started with.")
            yield from self._runs(episodes, start // k, k, (grouped_end - start) // k)
            start = grouped_end
        if start < steps:
            yield from self._runs(episodes, start, 1, steps - start)

    def _runs(self, source: EpisodeSource, start: int, group: int, calls: int
              ) -> Iterator[tuple[int, Callable[[], dict[str, float]]]]:
        """``calls`` compiled calls of ``group`` steps each, from position ``start`` of the
        ``group``-sized stream."""
        if self.strategy is None:
            stream = iter(source.dataset(start=start, group=group))
            run = self.train_step if group == 1 else self.train_steps
            for _ in range(calls):
                batch = next(stream)
                yield group, lambda batch=batch: run(batch)
            return
        stream = self._distributed_stream(source, start, group)
        fn = self._distributed_fn(group, stream.element_spec)
        for _ in range(calls):
            yield group, lambda: self._run_distributed(fn, group, lambda: next(stream))

    def fit(
        self,
        episodes: Iterable[Episode] | EpisodeSource,
        steps: int,
        *,
        callbacks: Sequence[keras.callbacks.Callback] | None = None,
        verbose: int = 1,
        tensorboard_dir: str | os.PathLike | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int = 100,
        log_every: int = 10,
    ) -> dict[str, list[float]]:
        """Meta-train until ``self.step`` reaches ``steps``.

        ``episodes`` is an :class:`EpisodeSource` (streamed from the current step, so a
        resumed run sees the same episodes as an uninterrupted one) or any iterable of
        episodes (consumed from its start). With ``checkpoint_dir``, the latest checkpoint
        there is restored first (and checked against the stream, see :meth:`restore`) and a
        new one, holding the stream's seed, position and fingerprint, is written every
        ``checkpoint_every`` steps and at the end.

        Under a multi-worker strategy every worker restores from ``checkpoint_dir`` (a
        folder all of them read, or a copy on each), only the chief writes there and to
        ``tensorboard_dir`` and shows progress; the other workers take part in each save
        in a scratch folder they delete. A peer that dies or stalls raises
        :class:`~tfmetarec.learners.distribute.ClusterError`; restarting every worker
        resumes from the last checkpoint.
        """
        if int(checkpoint_every) < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}.")
        chief = is_chief(self.strategy)
        save: Callable[[int], None] | None = None
        if checkpoint_dir is not None:
            latest = tf.train.latest_checkpoint(os.fspath(checkpoint_dir))
            if latest:
                self.restore(latest, episodes)
            save = self._saver(os.fspath(checkpoint_dir), chief)
        writer = tf.summary.create_file_writer(os.fspath(tensorboard_dir)) if tensorboard_dir and chief else None
        verbose = verbose if chief else 0
        start = int(self.step.numpy())
        todo = max(steps - start, 0)
        cb = keras.callbacks.CallbackList(
            list(callbacks or []), add_progbar=verbose > 0, model=self.learner, verbose=verbose, epochs=1, steps=todo
        )
        history: dict[str, list[float]] = {}
        cb.on_train_begin()
        cb.on_epoch_begin(0)
        logs: dict[str, Any] = {}
        done = 0
        for count, run in self._batches(episodes, start, steps) if todo else ():
            cb.on_train_batch_begin(done)
            before = int(self.step.numpy())
            logs = run()
            step = before + count
            for k, v in logs.items():
                history.setdefault(k, []).append(v)
                if not np.isfinite(v):
                    raise FloatingPointError(f"Meta-training diverged at step {step}: {k}={v}.")
            if writer is not None and (step // log_every > before // log_every or step == steps):
                with writer.as_default(step=step):
                    for k, v in logs.items():
                        tf.summary.scalar(k, v)
            if save is not None and step // checkpoint_every > before // checkpoint_every:
                self._record_stream(episodes)
                save(step)
            done += count
            cb.on_train_batch_end(done - 1, logs)
        cb.on_epoch_end(0, logs)
        cb.on_train_end(logs)
        if save is not None and todo:
            self._record_stream(episodes)
            save(int(self.step.numpy()))
        if writer is not None:
            writer.flush()
        return history
