"""Small frozen settings objects for an experiment, with JSON round trips."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

from tfmetarec.data.splits import SplitConfig

DATASETS = ("synthetic", "movielens-100k", "movielens-1m", "movielens-latest-small", "movielens-20m", "movielens-25m")
LEARNERS = (
    "maml", "fomaml", "meta_sgd", "reptile", "prototype", "matching", "task_encoder", "pretrain", "popularity",
    "item_mean",
)
"""The names of ``tfmetarec.learners.available()``, without importing TensorFlow."""
MODELS = ("cf", "content", "hybrid", "melu", "metaemb", "two_tower")
"""The names of ``tfmetarec.models.available()``, without importing TensorFlow."""
STRATEGIES = ("default", "mirrored", "multi_worker")
"""How meta-training is distributed (``tfmetarec.learners.distribute.make_strategy``): one device,
several local devices (GPUs), or several processes/machines named by ``TF_CONFIG``."""
TASK_KEYS = ("user", "item")
"""What one task is: a user's ratings (user cold start) or an item's (item cold start)."""


def _from_dict(cls, values: dict[str, Any]):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"Unknown {cls.__name__} settings {unknown}; known: {sorted(known)}.")
    out = dict(values)
    for f in dataclasses.fields(cls):
        if f.name in out and isinstance(out[f.name], list):
            out[f.name] = tuple(out[f.name])
    return cls(**out)


@dataclass(frozen=True)
class ModelConfig:
    """Which rating model and its size."""

    name: str = "melu"
    embedding_dim: int = 32
    hidden_units: tuple[int, ...] = (64, 64)
    use_ids: bool = False
    field_dims: tuple[tuple[str, int], ...] = ()
    """Per-field embedding widths overriding ``embedding_dim``: ``(("genres", 16), ...)``."""
    list_pooling: str = "mean"
    """How a list field (genres, cast, ...) pools its values' embeddings: mean or sum."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "field_dims", tuple((str(k), int(v)) for k, v in
                                                     (self.field_dims.items() if isinstance(self.field_dims, dict)
                                                      else self.field_dims)))
        if self.list_pooling not in ("mean", "sum"):
            raise ValueError(f"list_pooling must be 'mean' or 'sum', got {self.list_pooling!r}.")


@dataclass(frozen=True)
class LearnerConfig:
    """Which meta-learner (a name of ``tfmetarec.learners.available()``) and its settings.

    ``inner_steps``/``inner_lr``/``first_order``/``adapt`` drive the gradient-based
    learners (maml, fomaml, meta_sgd, reptile); ``learn_inner_lr``
    (fixed, per_parameter, per_layer_step), ``multi_step_loss`` and
    ``msl_anneal_steps`` the Meta-SGD / MAML++ options of maml; ``train_on_query``
    Reptile's inner data; ``hidden_dim``/``pooling``/``shrinkage`` the metric
    (prototype, matching) and task_encoder learners; ``item_shrinkage`` item_mean.
    """

    name: str = "maml"
    inner_steps: int = 5
    inner_lr: float = 0.05
    first_order: bool = False
    adapt: str = "decision"
    learn_inner_lr: str = "fixed"
    multi_step_loss: bool = False
    msl_anneal_steps: int = 0
    train_on_query: bool = True
    hidden_dim: int = 32
    pooling: str = "attention"
    shrinkage: float = 1.0
    item_shrinkage: float = 5.0


@dataclass(frozen=True)
class TrainConfig:
    """Outer loop settings shared by the meta-learner and the baselines."""

    meta_steps: int = 1500
    pretrain_steps: int = 1500
    batch_size: int = 32
    outer_lr: float = 1e-3
    max_support: int = 128
    jit_compile: bool = True
    seed: int = 0
    steps_per_execution: int = 1
    """Meta-steps per compiled call (see ``MetaTrainer``); more cuts the per-step overhead."""
    strategy: str = "default"
    """``default`` (one device), ``mirrored`` (the local GPUs) or ``multi_worker`` (the processes
    of ``TF_CONFIG``); ``batch_size`` is the global task batch, split equally over the replicas."""

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"Unknown strategy {self.strategy!r}; choose from {STRATEGIES}.")


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything a run needs: data, split, model, learner and training settings."""

    dataset: str = "synthetic"
    data_dir: str | None = None
    item_side_file: str | None = None
    """A MovieLens dataset's item side file (rate, directors, actors ...; see ``load_dataset``)."""
    split: SplitConfig = field(default_factory=SplitConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # "user": a task is one user's ratings (user cold start); "item": one item's
    # ratings, so a new item adapts from its first ratings (adapt an item-side
    # group, e.g. cf's "item_prior").
    task_key: str = "user"

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"Unknown dataset {self.dataset!r}; choose from {DATASETS}.")
        if self.task_key not in TASK_KEYS:
            raise ValueError(f"Unknown task_key {self.task_key!r}; choose from {TASK_KEYS}.")
        if self.item_side_file is not None and self.dataset == "synthetic":
            raise ValueError("item_side_file adds content to a MovieLens dataset; the synthetic data has none to add.")

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "data_dir": self.data_dir,
            "item_side_file": self.item_side_file,
            "split": self.split.to_dict(),
            "model": dataclasses.asdict(self.model),
            "learner": dataclasses.asdict(self.learner),
            "train": dataclasses.asdict(self.train),
            "task_key": self.task_key,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ExperimentConfig:
        values = dict(values)
        return cls(
            dataset=values.pop("dataset", "synthetic"),
            data_dir=values.pop("data_dir", None),
            item_side_file=values.pop("item_side_file", None),
            split=SplitConfig.from_dict(values.pop("split", {})),
            model=_from_dict(ModelConfig, values.pop("model", {})),
            learner=_from_dict(LearnerConfig, values.pop("learner", {})),
            train=_from_dict(TrainConfig, values.pop("train", {})),
            task_key=values.pop("task_key", "user"),
            **_check_empty(values),
        )

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, indent=2)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ExperimentConfig:
        with open(path, encoding="utf-8") as fh:
            return cls.from_dict(json.load(fh))


def _check_empty(values: dict[str, Any]) -> dict[str, Any]:
    if values:
        raise ValueError(f"Unknown experiment settings {sorted(values)}.")
    return {}
