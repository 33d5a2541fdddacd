"""tfmetarec: meta-learning for cold-start recommendation with TensorFlow and Keras 3.

Data flows one way: ``data`` (loaders, features, cold-start splits) ->
``tasks`` (padded support/query episodes) -> ``models`` (Keras subclassed
rating models) -> ``learners`` (MAML and baselines, XLA-compiled training) ->
``evaluation`` (cold-start metrics and reports) -> ``export`` (SavedModel, ONNX)
-> ``presets`` (published checkpoints, fine-tuning).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfmetarec import data, evaluation, learners, models, tasks  # noqa: E402
from tfmetarec.config import ExperimentConfig, LearnerConfig, ModelConfig, TrainConfig  # noqa: E402
from tfmetarec.data import SplitConfig, cold_start_split, load_dataset, make_synthetic  # noqa: E402
from tfmetarec.learners import MAML, MetaTrainer, Pretrain  # noqa: E402
from tfmetarec.models import MeLU  # noqa: E402

__version__ = "0.1.0"


def __getattr__(name: str):
    """``tfmetarec.from_preset`` / ``save_to_preset``, imported on first use."""
    if name in ("from_preset", "save_to_preset"):
        from tfmetarec import presets

        return getattr(presets, name)
    raise AttributeError(f"module 'tfmetarec' has no attribute {name!r}")


__all__ = [
    "MAML",
    "ExperimentConfig",
    "LearnerConfig",
    "MeLU",
    "MetaTrainer",
    "ModelConfig",
    "Pretrain",
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
]
