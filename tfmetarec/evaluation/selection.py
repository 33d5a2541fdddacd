"""Choose a training's checkpoint on validation tasks: keep the step that scores best, not the last.

Meta-training longer keeps lowering the training loss while new items (and, on small data, new
users) can get worse: the model fits the training items' content. :class:`CheckpointSelector`
is a Keras callback for :meth:`~tfmetarec.learners.MetaTrainer.fit` that scores the learner on
validation task sets (held-out users; held-out *pseudo-new* items) every ``every`` steps and at
the end; :meth:`~CheckpointSelector.restore_best` then puts back the weights of the step with the
best validation score (lowest MAE, or with ``metric="nDCG@3"`` highest nDCG@3). With
``patience``, training stops once that many scorings in a row found nothing better. With a
``folder``, the best weights and the log of every scoring survive a resumed run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from tfmetarec.config import SELECT_METRICS
from tfmetarec.data.features import EncodedData
from tfmetarec.evaluation.protocol import adapt_and_score_fn, predict_scenarios, summarise_tasks
from tfmetarec.learners.base import MetaLearner
from tfmetarec.tasks.episode import TaskSet

LOG = "selection.csv"
BEST = "best.npz"


class CheckpointSelector(keras.callbacks.Callback):
    """Score ``learner`` on ``task_sets`` every ``every`` training steps; keep the best step's weights.

    Args:
        learner: the learner being trained (its variables are copied and put back).
        encoded: the encoded data the task sets index.
        task_sets: name -> validation tasks; the score is the mean of their ``metric``.
        every: score when the training step crosses a multiple of this, and at the end.
        step: the trainer's step counter (``MetaTrainer.step``).
        folder: where the log (``selection.csv``) and the best weights (``best.npz``) are kept, so a
            resumed training continues the selection; None keeps them in memory.
        item_warmup: the evaluation's two-sided adaptation (see ``predict_scenarios``).
        batch_size: tasks per evaluation batch.
        patience: stop training once this many scorings in a row found no better step (the
            learner's ``stop_training``); 0 trains every step.
        metric: ``MAE`` (the lowest wins) or ``nDCG@3`` (the highest wins), per task and averaged.
    """

    def __init__(self, learner: MetaLearner, encoded: EncodedData, task_sets: Mapping[str, TaskSet], every: int,
                 step: tf.Variable, folder: str | os.PathLike | None = None, item_warmup: float | None = None,
                 batch_size: int = 32, patience: int = 0, metric: str = "MAE"):
        super().__init__()
        if metric not in SELECT_METRICS:
            raise ValueError(f"metric must be one of {tuple(SELECT_METRICS)}; got {metric!r}.")
        self.metric, self._sign = metric, 1.0 if SELECT_METRICS[metric] == "lowest" else -1.0
        if int(every) < 1:
            raise ValueError(f"every must be >= 1, got {every}.")
        if int(patience) < 0:
            raise ValueError(f"patience must be >= 0, got {patience}.")
        self.patience = int(patience)
        self.task_sets = {k: v for k, v in task_sets.items() if len(v)}
        if not self.task_sets:
            raise ValueError("Choosing a checkpoint needs validation tasks, and every given task set is empty.")
        self.learner, self.encoded, self.every, self.step = learner, encoded, int(every), step
        self.folder = None if folder is None else Path(folder)
        self.item_warmup, self.batch_size = item_warmup, batch_size
        self._fn = adapt_and_score_fn(learner, jit_compile=False)  # traced once, for every scoring
        self.rows: list[dict] = []
        self.best: tuple[int, float, list[np.ndarray]] | None = None
        self._last = 0
        if self.folder is not None:
            self._load()

    # -- scoring --------------------------------------------------------------------------
    def score(self) -> dict[str, float]:
        """The validation ``metric`` of each task set and their mean (``score``), for the current weights."""
        predictions = predict_scenarios({"learner": self.learner}, self.encoded, self.task_sets,
                                        batch_size=self.batch_size, jit_compile=False, item_warmup=self.item_warmup,
                                        fns={"learner": self._fn})
        ks = (int(self.metric.split("@")[1]),) if "@" in self.metric else ()
        values = {name: summarise_tasks(predictions[("learner", name)], ks=ks)[self.metric] for name in self.task_sets}
        return {**{f"{k}_{self.metric}": float(v) for k, v in values.items()},
                "score": float(np.mean(list(values.values())))}

    def _better(self, score: float) -> bool:
        return self.best is None or self._sign * score < self._sign * self.best[1]

    def _record(self) -> None:
        step = int(self.step.numpy())
        if step == self._last:
            return
        self._last = step
        row = {"step": step, **self.score()}
        self.rows.append(row)
        if self._better(row["score"]):
            self.best = (step, row["score"], [np.array(v.numpy()) for v in self.learner.variables])
        self._save()
        self._stop_if_exhausted()

    @property
    def exhausted(self) -> bool:
        """Whether the last ``patience`` scorings all came after the best one (never without patience)."""
        if not self.patience or self.best is None:
            return False
        return sum(r["step"] > self.best[0] for r in self.rows) >= self.patience

    def _stop_if_exhausted(self) -> None:
        if self.exhausted:
            self.learner.stop_training = True

    # -- callback hooks ---------------------------------------------------------------------
    def on_train_begin(self, logs=None) -> None:
        self._last = int(self.rows[-1]["step"]) if self.rows else int(self.step.numpy())
        self._stop_if_exhausted()  # a resumed run that had stopped stays stopped

    def on_train_batch_end(self, batch, logs=None) -> None:
        if int(self.step.numpy()) // self.every > self._last // self.every:
            self._record()

    def on_train_end(self, logs=None) -> None:
        if int(self.step.numpy()) > 0 and not self.exhausted:
            self._record()

    def restore_best(self) -> int | None:
        """Put the best scored step's weights back into the learner; returns that step (None when
        nothing was scored). Call it after ``fit`` has written its last checkpoint, which keeps the
        last step's weights so a longer run continues from there."""
        if self.best is None:
            return None
        step, _, values = self.best
        for variable, value in zip(self.learner.variables, values, strict=True):
            variable.assign(value)
        return step

    @property
    def chosen_step(self) -> int | None:
        """The step whose weights were kept (None before any scoring)."""
        return None if self.best is None else self.best[0]

    def log(self) -> pd.DataFrame:
        """One row per scoring: ``step``, each task set's ``{set}_{metric}``, ``score``, ``chosen``."""
        out = pd.DataFrame(self.rows)
        if len(out):
            out["chosen"] = out["step"] == self.chosen_step
        return out

    # -- persistence ------------------------------------------------------------------------
    def _shapes(self) -> list[list[int]]:
        return [list(v.shape) for v in self.learner.variables]

    def _save(self) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log().to_csv(self.folder / LOG, index=False)
        step, score, values = self.best
        tmp = self.folder / f".{BEST}.tmp.npz"
        meta = {"step": step, "score": score, "metric": self.metric, "shapes": self._shapes()}
        np.savez(tmp, *values, meta=json.dumps(meta))
        os.replace(tmp, self.folder / BEST)

    def _load(self) -> None:
        log, best = self.folder / LOG, self.folder / BEST
        if not log.exists() or not best.exists():
            return
        with np.load(best, allow_pickle=False) as saved:
            meta = json.loads(str(saved["meta"]))
            values = [saved[f"arr_{i}"] for i in range(len(meta["shapes"]))]
        if meta.get("metric", "MAE") != self.metric:
            raise ValueError(f"{best} holds the step chosen by validation {meta.get('metric', 'MAE')}, and this "
                             f"training chooses by {self.metric}; delete {self.folder} or train with --overwrite.")
        if meta["shapes"] != self._shapes():
            raise ValueError(f"{best} holds the best weights of another learner (its variables differ from this "
                             f"{type(self.learner).__name__}'s); delete {self.folder} or train with --overwrite.")
        self.rows = pd.read_csv(log).drop(columns="chosen", errors="ignore").to_dict("records")
        self.best = (int(meta["step"]), float(meta["score"]), values)


__all__ = ["CheckpointSelector"]
