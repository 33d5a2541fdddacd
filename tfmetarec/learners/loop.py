"""The meta-training loop: an XLA-compiled step, callbacks, TensorBoard, resumable checkpoints."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfmetarec.learners.base import MetaLearner
from tfmetarec.types import Episode


class MetaTrainer:
    """Owns the outer optimizer and runs ``meta_gradients`` + update as one step.

    Args:
        learner: the meta-learner to train.
        optimizer: the outer optimizer (default Adam, learning rate 1e-3).
        jit_compile: compile the whole step (inner loop, meta-gradient and
            optimizer update) with XLA. Each distinct episode shape (support
            bucket) compiles once.
    """

    def __init__(
        self,
        learner: MetaLearner,
        optimizer: keras.optimizers.Optimizer | None = None,
        jit_compile: bool = True,
    ):
        self.learner = learner
        self.optimizer = optimizer or keras.optimizers.Adam(1e-3)
        self.jit_compile = jit_compile
        self.variables = learner.meta_variables()
        self.optimizer.build(self.variables)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="meta_step")
        self._compiled = tf.function(self._step_fn, jit_compile=jit_compile)

    def _step_fn(self, episode: Episode) -> dict[str, tf.Tensor]:
        grads, logs = self.learner.meta_gradients(episode)
        self.optimizer.apply(grads, self.variables)
        return logs

    def train_step(self, episode: Episode) -> dict[str, float]:
        """One meta-update on one episode; returns the logged scalars."""
        logs = self._compiled(episode)
        self.step.assign_add(1)
        return {k: float(v) for k, v in logs.items()}

    def checkpoint(self) -> tf.train.Checkpoint:
        """What a resumed run restores: learner, optimizer state and step."""
        return tf.train.Checkpoint(learner=self.learner, optimizer=self.optimizer, step=self.step)

    def fit(
        self,
        episodes: Iterable[Episode],
        steps: int,
        *,
        callbacks: Sequence[keras.callbacks.Callback] | None = None,
        verbose: int = 1,
        tensorboard_dir: str | os.PathLike | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int = 500,
        log_every: int = 10,
    ) -> dict[str, list[float]]:
        """Meta-train until ``self.step`` reaches ``steps``.

        With ``checkpoint_dir``, the latest checkpoint there is restored first
        (so an interrupted run resumes where it stopped) and a new one is
        written every ``checkpoint_every`` steps and at the end.
        """
        manager = None
        if checkpoint_dir is not None:
            manager = tf.train.CheckpointManager(self.checkpoint(), os.fspath(checkpoint_dir), max_to_keep=3)
            if manager.latest_checkpoint:
                self.checkpoint().restore(manager.latest_checkpoint).assert_existing_objects_matched()
        writer = tf.summary.create_file_writer(os.fspath(tensorboard_dir)) if tensorboard_dir else None
        start = int(self.step.numpy())
        todo = max(steps - start, 0)
        cb = keras.callbacks.CallbackList(
            list(callbacks or []), add_progbar=verbose > 0, model=self.learner, verbose=verbose, epochs=1, steps=todo
        )
        history: dict[str, list[float]] = {}
        cb.on_train_begin()
        cb.on_epoch_begin(0)
        iterator = iter(episodes)
        logs: dict[str, float] = {}
        for i in range(todo):
            cb.on_train_batch_begin(i)
            logs = self.train_step(next(iterator))
            for k, v in logs.items():
                history.setdefault(k, []).append(v)
                if not np.isfinite(v):
                    raise FloatingPointError(f"Meta-training diverged at step {int(self.step.numpy())}: {k}={v}.")
            step = int(self.step.numpy())
            if writer is not None and (step % log_every == 0 or i == todo - 1):
                with writer.as_default(step=step):
                    for k, v in logs.items():
                        tf.summary.scalar(k, v)
            if manager is not None and step % checkpoint_every == 0:
                manager.save(checkpoint_number=step)
            cb.on_train_batch_end(i, logs)
        cb.on_epoch_end(0, logs)
        cb.on_train_end(logs)
        if manager is not None and todo:
            manager.save(checkpoint_number=int(self.step.numpy()))
        if writer is not None:
            writer.flush()
        return history
