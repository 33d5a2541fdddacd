"""Models and learners built from a config: the registered name and exactly its constructor's options.

The one place where a config becomes objects. Two rules apply on top of the options given:
a ``seed`` option left unset takes the run's seed (``config.train.seed``), and a learner that
needs the training ratings (the item-statistics baselines) is fitted on them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tfmetarec import registry
from tfmetarec.config import ExperimentConfig, LearnerConfig, ModelConfig
from tfmetarec.data.features import EncodedData, FeatureSpec
from tfmetarec.learners import MetaLearner, Pretrain, create
from tfmetarec.models import MetaModel
from tfmetarec.models import get as get_model

if TYPE_CHECKING:  # pragma: no cover
    from tfmetarec.workflows.prepare import Prepared

FINETUNE_STEPS = 5
"""Fine-tuning steps of the baseline when the learner has no ``inner_steps`` setting."""


def _seeded(kind: str, named: LearnerConfig | ModelConfig, seed: int) -> dict[str, Any]:
    options = dict(named.options)
    if "seed" in registry.options(kind, named.name) and options.get("seed") is None:
        options["seed"] = seed
    return options


def model_from_spec(config: ExperimentConfig, spec: FeatureSpec) -> MetaModel:
    """A fresh model of ``config.model`` for the encoded features ``spec`` (empty item table)."""
    return get_model(config.model.name).from_spec(spec, **_seeded("model", config.model, config.train.seed))


def build_model(config: ExperimentConfig, encoded: EncodedData) -> MetaModel:
    """A fresh rating model sized for the encoded features, holding the item table.

    The table starts with the training items; every other item of the data (the
    split's new items) enters by its content alone through ``model.add_items``,
    the way a service adds an item that arrives after training.
    """
    model = model_from_spec(config, encoded.spec)
    n = encoded.spec.num_items
    vectors = encoded.item_vectors
    model.set_item_table(encoded.item_table[:n], encoded.item_raw_ids[:n], {k: v[:n] for k, v in vectors.items()})
    model.add_items(encoded.item_table[n:], encoded.item_raw_ids[n:], {k: v[n:] for k, v in vectors.items()})
    return model


def learner_from_config(config: ExperimentConfig, model: MetaModel) -> MetaLearner:
    """The configured learner around ``model``, as built (item statistics not yet fitted)."""
    return create(config.learner.name, model, **_seeded("learner", config.learner, config.train.seed))


def build_learner(config: ExperimentConfig, model: MetaModel, prepared: Prepared | None = None) -> MetaLearner:
    """The configured learner around ``model``; one that needs the training ratings (item
    statistics) is fitted on ``prepared.train_ratings`` (required for it)."""
    learner = learner_from_config(config, model)
    if learner.needs_training_ratings:
        if prepared is None:
            raise ValueError(f"The {config.learner.name!r} learner needs the training ratings: call "
                             "build_learner(..., prepared).")
        ratings = prepared.train_ratings
        learner.fit_training_ratings(prepared.encoded.item_vocab_ids(ratings["item"]), ratings["rating"].to_numpy())
    return learner


def finetune_steps(config: ExperimentConfig) -> int:
    """Steps of the fine-tuned baseline: the learner's ``inner_steps``, else :data:`FINETUNE_STEPS`."""
    settings = config.learner.resolved()
    return int(settings.get("inner_steps", FINETUNE_STEPS))


def build_baseline(config: ExperimentConfig, encoded: EncodedData) -> Pretrain:
    """The global baseline (no adaptation; fine-tuned in the report) on a fresh model: it adapts
    the learner's ``adapt`` group (``"decision"`` when the learner has none)."""
    settings = config.learner.resolved()
    options = {"adapt": settings.get("adapt", "decision"), "finetune_lr": settings.get("inner_lr", 0.05)}
    return create("pretrain", build_model(config, encoded), **options)


__all__ = ["FINETUNE_STEPS", "build_baseline", "build_learner", "build_model", "finetune_steps", "learner_from_config",
           "model_from_spec"]
