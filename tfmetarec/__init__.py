"""tfmetarec: meta-learning for cold-start recommendation with TensorFlow and Keras 3.

Data flows one way: ``data`` (loaders, features, cold-start splits) ->
``tasks`` (padded support/query episodes) -> ``models`` (Keras subclassed
rating models) -> ``learners`` (MAML and baselines, XLA-compiled training) ->
``evaluation`` (cold-start metrics and reports) / ``export`` (SavedModel, ONNX)
-> ``workflows`` (train, evaluate, serve, zoo over a run folder) -> ``presets``
(published checkpoints, fine-tuning) -> the command line. Settings (``config``,
``registry``, ``options``) sit below all of them.

Submodules and names are imported on first use, so ``tfmetarec.config`` and the
command line's argument checks run without loading TensorFlow.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfmetarec._version import __version__

_SUBMODULES = ("data", "evaluation", "learners", "models", "tasks", "presets", "experiment", "config", "workflows")
_NAMES = {
    "ExperimentConfig": "tfmetarec.config",
    "LearnerConfig": "tfmetarec.config",
    "QueryLoss": "tfmetarec.objectives",
    "ModelConfig": "tfmetarec.config",
    "TrainConfig": "tfmetarec.config",
    "SplitConfig": "tfmetarec.config",
    "cold_start_split": "tfmetarec.data.splits",
    "load_dataset": "tfmetarec.data.movielens",
    "make_synthetic": "tfmetarec.data.synthetic",
    "MAML": "tfmetarec.learners",
    "MetaTrainer": "tfmetarec.learners",
    "Pretrain": "tfmetarec.learners",
    "MeLU": "tfmetarec.models",
    "from_preset": "tfmetarec.presets",
    "save_to_preset": "tfmetarec.presets",
}


def __getattr__(name: str) -> Any:
    """The public names and submodules, imported on first use."""
    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"tfmetarec.{name}")
    else:
        raise AttributeError(f"module 'tfmetarec' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_NAMES, *_SUBMODULES})


__all__ = [
    "MAML",
    "ExperimentConfig",
    "LearnerConfig",
    "MeLU",
    "MetaTrainer",
    "ModelConfig",
    "Pretrain",
    "QueryLoss",
    "SplitConfig",
    "TrainConfig",
    "__version__",
    "cold_start_split",
    "data",
    "evaluation",
    "from_preset",
    "learners",
    "load_dataset",
    "make_synthetic",
    "models",
    "save_to_preset",
    "tasks",
    "workflows",
]
