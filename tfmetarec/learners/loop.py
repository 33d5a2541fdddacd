"""The meta-training loop: an XLA-compiled step, callbacks, TensorBoard, resumable checkpoints."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import keras
import numpy as np
import tensorflow as tf

from tfmetarec.learners.base import MetaLearner
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
    """

    def __init__(
        self,
        learner: MetaLearner,
        optimizer: keras.optimizers.Optimizer | None = None,
        jit_compile: bool = True,
        steps_per_execution: int = 1,
    ):
        if int(steps_per_execution) < 1:
            raise ValueError(f"steps_per_execution must be >= 1, got {steps_per_execution}.")
        self.learner = learner
        self.optimizer = optimizer or keras.optimizers.Adam(1e-3)
        self.jit_compile = jit_compile
        self.steps_per_execution = int(steps_per_execution)
        self.variables = learner.meta_variables()
        self.optimizer.build(self.variables)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="meta_step")
        # The episode stream the step counts in: its seed, the next position and a fingerprint of
        # its tasks and settings, saved with the weights so a resume can prove it continues that stream.
        self.stream_seed = tf.Variable(-1, dtype=tf.int64, trainable=False, name="stream_seed")
        self.stream_position = tf.Variable(0, dtype=tf.int64, trainable=False, name="stream_position")
        self.stream_fingerprint = tf.Variable("", dtype=tf.string, trainable=False, name="stream_fingerprint")
        self.stream_group = tf.Variable(self.steps_per_execution, dtype=tf.int64, trainable=False,
                                        name="steps_per_execution")
        self._compiled = tf.function(self._step_fn, jit_compile=jit_compile)
        self._compiled_group = tf.function(self._group_fn, jit_compile=jit_compile)

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

    def train_step(self, episode: Episode) -> dict[str, float]:
        """One meta-update on one episode; returns the logged scalars."""
        logs = self._compiled(episode)
        self.step.assign_add(1)
        return {k: float(v) for k, v in logs.items()}

    def train_steps(self, episodes: Episode) -> dict[str, float]:
        """One meta-update per episode of a ``[K, ...]`` stack, in one compiled call; returns
        the logs averaged over the K steps."""
        count = int(np.shape(episodes[TASK_MASK])[0])
        logs = self._compiled_group(episodes)
        self.step.assign_add(count)
        return {k: float(v) for k, v in logs.items()}

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
                 ) -> Iterator[tuple[int, Episode]]:
        """``(step count, episode or stack)`` until ``steps`` steps have run from ``start``."""
        k = self.steps_per_execution
        if not isinstance(episodes, EpisodeSource):
            iterator = iter(episodes)
            for _ in range(steps - start):
                yield 1, next(iterator)
            return
        grouped_end = steps - (steps % k) if k > 1 else start
        if k > 1 and start < grouped_end:
            if start % k:
                raise ValueError(f"Cannot resume at step {start} with steps_per_execution={k}: groups start at "
                                 f"multiples of {k}. Resume with the steps_per_execution the run was started with.")
            groups = iter(episodes.dataset(start=start // k, group=k))
            for _ in range((grouped_end - start) // k):
                yield k, next(groups)
            start = grouped_end
        if start < steps:
            singles = iter(episodes.dataset(start=start))
            for _ in range(steps - start):
                yield 1, next(singles)

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
        """
        if int(checkpoint_every) < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}.")
        manager = None
        if checkpoint_dir is not None:
            manager = tf.train.CheckpointManager(self.checkpoint(), os.fspath(checkpoint_dir), max_to_keep=3)
            if manager.latest_checkpoint:
                self.restore(manager.latest_checkpoint, episodes)
        writer = tf.summary.create_file_writer(os.fspath(tensorboard_dir)) if tensorboard_dir else None
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
        for count, batch in self._batches(episodes, start, steps) if todo else ():
            cb.on_train_batch_begin(done)
            before = int(self.step.numpy())
            logs = self.train_step(batch) if count == 1 else self.train_steps(batch)
            step = before + count
            for k, v in logs.items():
                history.setdefault(k, []).append(v)
                if not np.isfinite(v):
                    raise FloatingPointError(f"Meta-training diverged at step {step}: {k}={v}.")
            if writer is not None and (step // log_every > before // log_every or step == steps):
                with writer.as_default(step=step):
                    for k, v in logs.items():
                        tf.summary.scalar(k, v)
            if manager is not None and step // checkpoint_every > before // checkpoint_every:
                self._record_stream(episodes)
                manager.save(checkpoint_number=step)
            done += count
            cb.on_train_batch_end(done - 1, logs)
        cb.on_epoch_end(0, logs)
        cb.on_train_end(logs)
        if manager is not None and todo:
            self._record_stream(episodes)
            manager.save(checkpoint_number=int(self.step.numpy()))
        if writer is not None:
            writer.flush()
        return history
