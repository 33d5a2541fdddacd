"""Small frozen settings objects for an experiment, with JSON round trips."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from tfmetarec.data.split_config import SplitConfig

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


QUERY_LOSSES = ("pairwise", "listwise")
"""Ranking-aware query losses a learner can mix into its rating loss (``LearnerConfig.ranking_loss``)."""


def check_number(name: str, value: Any, *, minimum: float | None = None, above: float | None = None,
                 integer: bool = False, maximum: float | None = None) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a finite number in range."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise ValueError(f"{name} must be {kind}, got {value!r}.")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}.")
    if above is not None and value <= above:
        raise ValueError(f"{name} must be > {above}, got {value!r}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value!r}.")


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
        check_number("model.embedding_dim", self.embedding_dim, minimum=1, integer=True)
        for width in self.hidden_units:
            check_number("model.hidden_units", width, minimum=1, integer=True)
        for name, width in self.field_dims:
            check_number(f"model.field_dims[{name!r}]", width, minimum=1, integer=True)


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
    ranking_weight: float = 0.0
    """Share of the query loss given to a ranking loss: ``(1 - w) * MSE + w * ranking`` (0 = ratings only)."""
    ranking_loss: str = "pairwise"
    """The ranking loss: ``pairwise`` (logistic over the task's ordered query pairs) or ``listwise``
    (softmax cross-entropy against the ratings' softmax)."""

    def __post_init__(self) -> None:
        check_number("learner.inner_steps", self.inner_steps, minimum=0, integer=True)
        check_number("learner.inner_lr", self.inner_lr, minimum=0)
        check_number("learner.msl_anneal_steps", self.msl_anneal_steps, minimum=0, integer=True)
        check_number("learner.hidden_dim", self.hidden_dim, minimum=1, integer=True)
        check_number("learner.shrinkage", self.shrinkage, minimum=0)
        check_number("learner.item_shrinkage", self.item_shrinkage, minimum=0)
        check_number("learner.ranking_weight", self.ranking_weight, minimum=0, maximum=1)
        if self.ranking_loss not in QUERY_LOSSES:
            raise ValueError(f"learner.ranking_loss must be one of {QUERY_LOSSES}, got {self.ranking_loss!r}.")


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
    fixed_tasks: bool = False
    """With a published split that gives meta-training rows a role, train on those fixed
    support/query tasks instead of drawing a new query at every step."""

    strategy: str = "default"
    """``default`` (one device), ``mirrored`` (the local GPUs) or ``multi_worker`` (the processes
    of ``TF_CONFIG``); ``batch_size`` is the global task batch, split equally over the replicas."""

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"Unknown strategy {self.strategy!r}; choose from {STRATEGIES}.")
        check_number("train.meta_steps", self.meta_steps, minimum=0, integer=True)
        check_number("train.pretrain_steps", self.pretrain_steps, minimum=0, integer=True)
        check_number("train.batch_size", self.batch_size, minimum=1, integer=True)
        check_number("train.outer_lr", self.outer_lr, above=0)
        check_number("train.max_support", self.max_support, minimum=1, integer=True)
        check_number("train.seed", self.seed, minimum=0, integer=True)
        check_number("train.steps_per_execution", self.steps_per_execution, minimum=1, integer=True)


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
    split_file: str | None = None
    """A published split to use instead of drawing one: a CSV/TSV file (user, item, rating,
    partition, role) or a folder (or one file) of MeLU's ``*_state.json`` / ``*_state_y.json``
    (see :mod:`tfmetarec.data.published`)."""

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
            "split_file": self.split_file,
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
            split_file=values.pop("split_file", None),
            **_check_empty(values),
        )

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, indent=2)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ExperimentConfig:
        """Read a ``config.json``; a malformed file is a ``ValueError`` naming it."""
        try:
            with open(path, encoding="utf-8") as fh:
                values = json.load(fh)
            if not isinstance(values, dict):
                raise ValueError(f"expected a JSON object, got {type(values).__name__}")
            return cls.from_dict(values)
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError, TypeError) as err:
            raise ValueError(f"{path} is not a valid experiment config: {err}") from err


def config_differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two ``to_dict()`` trees, as ``key: old -> new``."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, name + ".")
        elif (list(a) if isinstance(a, (list, tuple)) else a) != (list(b) if isinstance(b, (list, tuple)) else b):
            out.append(f"{name}: {a!r} -> {b!r}")
    return out


def _check_empty(values: dict[str, Any]) -> dict[str, Any]:
    if values:
        raise ValueError(f"Unknown experiment settings {sorted(values)}.")
    return {}
