"""The meta-training loop: an XLA-compiled step, callbacks, TensorBoard, resumable checkpoints.

One trainer for every learner: :class:`MetaTrainer` owns the step logic and the bookkeeping
(step count, the episode stream's state, checkpoints, callbacks, logs); a runner
(:mod:`tfmetarec.learners.runners`) owns where the step runs, on one device or on the
replicas of a ``tf.distribute`` strategy.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import keras
import numpy as np
import tensorflow as tf

from tfmetarec.learners.base import MetaLearner
from tfmetarec.learners.distribute import is_distributed
from tfmetarec.learners.runners import DistributedRunner, LocalRunner, Logs
from tfmetarec.learners.task_slices import equal_slices, sliced_gradients
from tfmetarec.models.functional import graph_function
from tfmetarec.types import EPISODE_SOURCE, TASK_MASK, Episode

@runtime_checkable
class EpisodeSource(Protocol):
    """A stream of episodes addressed by position (e.g. ``tfmetarec.tasks.EpisodeSampler``):
    episode ``i`` is always the same, so training can resume at any step exactly. ``state()``
    gives the stream's ``seed``, next ``position`` and ``fingerprint``; a trainer sets
    ``position`` when it resumes."""

    position: int

    def dataset(self, prefetch: int = 2, start: int = 0, group: int = 1, shard: int = 0,
                num_shards: int = 1) -> tf.data.Dataset: ...

    def state(self) -> dict[str, Any]: ...


class CheckpointError(ValueError):
    """A checkpoint that cannot be restored into this trainer: corrupt, or written by another run."""


class DivergenceError(FloatingPointError, ValueError):
    """A training loss that became NaN or infinite; the last good checkpoint is kept."""


def learner_identity(learner: MetaLearner) -> str:
    """``Class:digest`` of a learner's class, settings and model (class, settings, feature spec;
    not the initialiser seeds): what a checkpoint must have been written by to be restored into it."""
    model = learner.model

    def settings(obj: Any) -> dict[str, Any]:  # the initialiser seed does not outlive a restore
        return {k: v for k, v in obj.settings_config().items() if k != "seed"}

    described = {"learner": type(learner).__name__, "settings": settings(learner),
                 "model": type(model).__name__, "model_settings": settings(model),
                 "fields": [model.user_fields, model.item_fields, model.num_users, model.num_items]}
    digest = hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return f"{type(learner).__name__}:{digest}"


def default_task_chunks(jit_compile: bool, distributed: bool = False) -> int:
    """``MetaTrainer``'s task chunks when none are given: 2 where the step is XLA-compiled on a
    CPU (no GPU visible) with at least 2 cores and 2 inter-op threads, by one process without a
    strategy, else 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = tf.config.threading.get_inter_op_parallelism_threads()  # 0: TF chooses (one per core)
    if not jit_compile or distributed or cores < 2 or threads == 1 or tf.config.list_logical_devices("GPU"):
        return 1
    return 2


class MetaTrainer:
    """Owns the outer optimizer and runs ``meta_gradients`` + update as one step (compiled as one
    function, or as slices of the task batch: ``task_chunks``).

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
        task_chunks: compute each step's meta-gradients on at most this many equal slices of the
            task batch (the largest divisor of the batch's size that is not larger;
            :mod:`~tfmetarec.learners.task_slices`: the same gradients to float rounding),
            separate launches of one compiled program that run on different CPU cores at once,
            then the outer update. None: :func:`default_task_chunks` (2 under XLA on a CPU:
            1.12-1.17x faster steps on 2 cores, the same compilation time: BENCHMARKS.md). A
            learner that overrides ``meta_gradients`` or whose loss ties the batch's tasks together
            (:attr:`MetaLearner.splits_by_task`), and a batch with no such divisor, run whole.
    """

    def __init__(
        self,
        learner: MetaLearner,
        optimizer: keras.optimizers.Optimizer | None = None,
        jit_compile: bool = True,
        steps_per_execution: int = 1,
        strategy: tf.distribute.Strategy | None = None,
        task_chunks: int | None = None,
    ):
        if int(steps_per_execution) < 1:
            raise ValueError(f"steps_per_execution must be >= 1, got {steps_per_execution}.")
        if task_chunks is not None and int(task_chunks) < 1:
            raise ValueError(f"task_chunks must be >= 1 (or None: chosen for the device), got {task_chunks}.")
        if task_chunks is not None and int(task_chunks) > 1 and is_distributed(strategy):
            raise ValueError("task_chunks splits a one-device step; under a strategy the replicas already share "
                             "the task batch: leave task_chunks at None or 1.")
        self.learner = learner
        self.jit_compile = jit_compile
        self.task_chunks = (default_task_chunks(jit_compile, is_distributed(strategy)) if task_chunks is None
                            else int(task_chunks))
        self.steps_per_execution = int(steps_per_execution)
        self.variables = learner.meta_variables()
        self.runner = DistributedRunner(strategy) if is_distributed(strategy) else LocalRunner()
        if isinstance(self.runner, DistributedRunner):
            self.runner.check_in_scope(self.variables, optimizer)
        with self.runner.scope():
            self.optimizer = optimizer or keras.optimizers.Adam(1e-3)
            self.optimizer.build(self.variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="meta_step")
        # The episode stream the step counts in: its seed, the next position and a fingerprint of
        # its tasks and settings, saved with the weights so a resume can prove it continues that stream;
        # and which learner (class, settings, model) wrote the checkpoint.
        self.stream_seed = tf.Variable(-1, dtype=tf.int64, trainable=False, name="stream_seed")
        self.stream_position = tf.Variable(0, dtype=tf.int64, trainable=False, name="stream_position")
        self.stream_fingerprint = tf.Variable("", dtype=tf.string, trainable=False, name="stream_fingerprint")
        self.stream_group = tf.Variable(self.steps_per_execution, dtype=tf.int64, trainable=False,
                                        name="steps_per_execution")
        self.identity = learner_identity(learner)
        self.written_by = tf.Variable("", dtype=tf.string, trainable=False, name="written_by")
        if self.sliced:
            self._compile_slices()
        self.runner.compile(self)

    @property
    def strategy(self) -> tf.distribute.Strategy | None:
        return self.runner.strategy if isinstance(self.runner, DistributedRunner) else None

    # -- the step ----------------------------------------------------------------------
    @property
    def sliced(self) -> bool:
        """Whether a step runs as slices of the task batch (``task_chunks``), each a compiled
        function of its own, called from an uncompiled step that runs them at once."""
        overridden = type(self.learner).meta_gradients is not MetaLearner.meta_gradients  # its own step: kept whole
        return self.task_chunks > 1 and self.learner.splits_by_task and not overridden

    def step_fn(self, episode: Episode) -> dict[str, tf.Tensor]:
        """One meta-step: the learner's meta-gradients, then the outer update (with
        ``task_chunks``: on equal slices of the task batch, each a compiled call)."""
        if not self.sliced:
            return self._whole_step(episode)
        slices = equal_slices(episode[TASK_MASK].shape[0], self.task_chunks)
        if slices == 1:
            return self._compiled_whole_step(episode)
        grads, logs = sliced_gradients(self._compiled_slice_gradients, episode, slices)
        self._compiled_update(grads)
        self.learner.after_meta_step()
        return logs

    def _whole_step(self, episode: Episode) -> dict[str, tf.Tensor]:
        grads, logs = self.learner.meta_gradients(episode)
        self._update(grads)
        return logs

    def _update(self, grads: list[tf.Tensor]) -> None:
        self.optimizer.apply(grads, self.variables)

    def _compile_slices(self) -> None:
        """The compiled parts of a sliced step: one slice's gradients, the outer update, and the
        whole step for a batch that cannot be sliced."""
        jit = self.jit_compile
        self._compiled_slice_gradients = graph_function(self.learner.task_gradients, jit_compile=jit)
        self._compiled_update = graph_function(self._update, jit_compile=jit)
        self._compiled_whole_step = graph_function(self._whole_step, jit_compile=jit)

    def group_fn(self, episodes: Episode) -> dict[str, tf.Tensor]:
        """Every episode of a ``[K, ...]`` stack in turn; the logs are the mean over the K steps."""
        count = tf.shape(episodes[TASK_MASK])[0]
        total = self.step_fn(tf.nest.map_structure(lambda x: x[0], episodes))

        def another(i: tf.Tensor, total: dict) -> tuple:
            logs = self.step_fn(tf.nest.map_structure(lambda x: x[i], episodes))
            return i + 1, {k: total[k] + logs[k] for k in total}

        _, total = tf.while_loop(lambda i, _: i < count, another, (tf.constant(1), total))
        return {k: v / tf.cast(count, v.dtype) for k, v in total.items()}

    def train_step(self, episode: Episode) -> Logs:
        """One meta-update on one episode; returns the logged scalars. Under a strategy the
        episode is the global batch, cut into equal shares of tasks for the replicas."""
        logs = self.runner.run(1, episode)
        self.step.assign_add(1)
        return logs

    def train_steps(self, episodes: Episode) -> Logs:
        """One meta-update per episode of a ``[K, ...]`` stack, in one compiled call; returns
        the logs averaged over the K steps."""
        count = int(np.shape(episodes[TASK_MASK])[0])
        logs = self.runner.run(count, episodes)
        self.step.assign_add(count)
        return logs

    # -- checkpoints --------------------------------------------------------------------
    def checkpoint(self) -> tf.train.Checkpoint:
        """What a resumed run restores: learner, optimizer state, step, the episode stream's
        state (seed, position, fingerprint, steps per call) and which learner wrote it."""
        stream = tf.train.Checkpoint(seed=self.stream_seed, position=self.stream_position,
                                     fingerprint=self.stream_fingerprint, group=self.stream_group)
        return tf.train.Checkpoint(learner=self.learner, optimizer=self.optimizer, step=self.step, stream=stream,
                                   written_by=self.written_by)

    def _record_stream(self, episodes: object) -> None:
        if isinstance(episodes, EpisodeSource):
            state = episodes.state()
            self.stream_seed.assign(int(state["seed"]))
            self.stream_fingerprint.assign(str(state["fingerprint"]))
        self.stream_group.assign(self.steps_per_execution)
        self.stream_position.assign(self.step)
        self.written_by.assign(self.identity)

    def restore(self, path: str, episodes: object = None) -> None:
        """Restore the checkpoint at ``path`` (a prefix written by :meth:`fit`) and check that it
        was written by this learner (class, settings, model) and continues ``episodes``' stream;
        anything unreadable or inconsistent is a :class:`CheckpointError` naming the checkpoint
        and what differs."""
        try:
            status = self.checkpoint().restore(path)
            status.assert_existing_objects_matched()
        except (tf.errors.OpError, AssertionError, ValueError, IndexError, KeyError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(
                f"Checkpoint {path} cannot be restored into this {type(self.learner).__name__}: {first}. It is "
                "corrupt, incomplete or was written by another model or learner; delete it (or train with "
                "--overwrite) to start fresh.") from err
        problems = []
        writer = self.written_by.numpy().decode()
        if writer != self.identity:
            problems.append(f"it was written by {writer or 'an unnamed learner'}, this is {self.identity} "
                            "(another learner class, learner settings or model)")
        saved = self.stream_fingerprint.numpy().decode()
        if isinstance(episodes, EpisodeSource) and saved:
            state = episodes.state()
            if int(self.stream_seed.numpy()) != int(state["seed"]):
                problems.append(f"episode seed {int(self.stream_seed.numpy())} in the checkpoint, {state['seed']} now")
            if saved != state["fingerprint"]:
                problems.append(f"episode stream fingerprint {saved} in the checkpoint, {state['fingerprint']} now "
                                "(other training tasks, batch size, query size or support cap)")
        if int(self.stream_position.numpy()) != int(self.step.numpy()):
            problems.append(f"stream position {int(self.stream_position.numpy())} but step {int(self.step.numpy())}")
        if problems:
            raise CheckpointError(f"Checkpoint {path} was written for another run: " + "; ".join(problems) + ".")
        if isinstance(episodes, EpisodeSource):
            episodes.position = int(self.step.numpy())

    # -- the episode stream ----------------------------------------------------------------
    def _source(self, episodes: Any, start: int) -> Iterable[Episode] | EpisodeSource:
        """What :meth:`fit` trains from: a dataset made by ``EpisodeSampler.dataset()`` stands for
        its sampler, which continues at the step training stands at (a dataset made to start
        elsewhere is refused); anything else as given."""
        made_by = getattr(episodes, EPISODE_SOURCE, None)
        if made_by is not None:
            sampler, first = made_by
            if first not in (0, start):
                raise ValueError(f"This dataset starts at episode {first}, but training stands at step {start}; pass "
                                 "the sampler itself (fit(sampler, ...)), which continues exactly where training "
                                 "stands.")
            return sampler
        return episodes

    def _batches(self, episodes: Iterable[Episode] | EpisodeSource, start: int, steps: int
                 ) -> Iterator[tuple[int, Callable[[], Logs]]]:
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
                yield 1, lambda batch=batch: self.runner.run(1, batch)
            return
        grouped_end = steps - (steps % k) if k > 1 else start
        if k > 1 and start < grouped_end:
            if start % k:
                raise ValueError(f"Cannot resume at step {start} with steps_per_execution={k}: groups start at "
                                 f"multiples of {k}. Resume with the steps_per_execution the run was started with.")
            yield from self._calls(episodes, start // k, k, (grouped_end - start) // k)
            start = grouped_end
        if start < steps:
            yield from self._calls(episodes, start, 1, steps - start)

    def _calls(self, source: EpisodeSource, start: int, group: int, calls: int
               ) -> Iterator[tuple[int, Callable[[], Logs]]]:
        for run in self.runner.calls(source, start, group, calls):
            yield group, run

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
        resumed run, or a second ``fit`` with more steps, sees the episodes an uninterrupted
        run would; a dataset made by its ``dataset()`` counts as the source itself: it does
        not start over at episode 0), or any other iterable of episodes, read as given (the
        next ``steps - step`` episodes of it). With
        ``checkpoint_dir``, the latest checkpoint there is restored first (and checked
        against the learner and the stream, see :meth:`restore`) and a new one, holding the
        stream's seed, position and fingerprint, is written every ``checkpoint_every`` steps
        and at the end. A callback that sets ``learner.stop_training`` ends training after the
        current call (Keras' convention); the end's checkpoint is then written at that step.

        Under a multi-worker strategy every worker restores from ``checkpoint_dir`` (a
        folder all of them read, or a copy on each), only the chief writes there and to
        ``tensorboard_dir`` and shows progress; the other workers take part in each save
        in a scratch folder they delete. A peer that dies or stalls raises
        :class:`~tfmetarec.learners.distribute.ClusterError`; restarting every worker
        resumes from the last checkpoint.
        """
        if int(checkpoint_every) < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}.")
        chief = self.runner.chief
        save: Callable[[int], None] | None = None
        if checkpoint_dir is not None:
            latest = tf.train.latest_checkpoint(os.fspath(checkpoint_dir))
            source = getattr(episodes, EPISODE_SOURCE, (episodes, 0))[0]
            if latest:
                self.restore(latest, source)
            save = self.runner.saver(self.checkpoint(), os.fspath(checkpoint_dir))
        start = int(self.step.numpy())
        episodes = self._source(episodes, start)
        writer = tf.summary.create_file_writer(os.fspath(tensorboard_dir)) if tensorboard_dir and chief else None
        verbose = verbose if chief else 0
        todo = max(steps - start, 0)
        cb = keras.callbacks.CallbackList(
            list(callbacks or []), add_progbar=verbose > 0, model=self.learner, verbose=verbose, epochs=1, steps=todo
        )
        history: dict[str, list[float]] = {}
        self.learner.stop_training = False
        cb.on_train_begin()
        cb.on_epoch_begin(0)
        logs: dict[str, Any] = {}
        done = 0
        for count, run in self._batches(episodes, start, steps) if todo else ():
            if self.learner.stop_training:  # a callback stopped training (e.g. no better validation for a while)
                break
            cb.on_train_batch_begin(done)
            before = int(self.step.numpy())
            logs = run()
            self.step.assign_add(count)
            step = before + count
            for k, v in logs.items():
                history.setdefault(k, []).append(v)
                if not np.isfinite(v):
                    kept = tf.train.latest_checkpoint(os.fspath(checkpoint_dir)) if checkpoint_dir else None
                    raise DivergenceError(
                        f"Meta-training diverged at step {step}: {k}={v}. "
                        + (f"The last good checkpoint is kept ({kept}); " if kept else "")
                        + "lower the outer learning rate (--outer-lr) or the inner one and train again.")
            if writer is not None and (step // log_every > before // log_every or step == steps):
                with writer.as_default(step=step):
                    for k, v in logs.items():
                        tf.summary.scalar(k, v)
            if save is not None and step // checkpoint_every > before // checkpoint_every:
                self._record_stream(episodes)
                save(step)
            done += count
            cb.on_train_batch_end(done - 1, logs)
        if isinstance(episodes, EpisodeSource):
            episodes.position = int(self.step.numpy())
        cb.on_epoch_end(0, logs)
        cb.on_train_end(logs)
        if save is not None and todo:
            self._record_stream(episodes)
            save(int(self.step.numpy()))
        if writer is not None:
            writer.flush()
        return history


__all__ = ["CheckpointError", "DivergenceError", "EpisodeSource", "MetaTrainer", "learner_identity"]
