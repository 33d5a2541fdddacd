"""A short synthetic meta-training run per (model, learner), shared by the model learning tests."""

from __future__ import annotations

import dataclasses

import keras
import pytest

from tfmetarec.config import ExperimentConfig, LearnerConfig, ModelConfig, TrainConfig
from tfmetarec.evaluation.protocol import evaluate_tasks
from tfmetarec.experiment import build_learner, build_model, prepare
from tfmetarec.learners import MetaTrainer
from tfmetarec.tasks.samplers import EpisodeSampler

STEPS = 300
CONFIG = ExperimentConfig(
    dataset="synthetic",
    model=ModelConfig(embedding_dim=8, hidden_units=(16, 16)),
    learner=LearnerConfig(inner_steps=3, hidden_dim=16),
    train=TrainConfig(meta_steps=STEPS, batch_size=16, outer_lr=1e-2, max_support=64),
)


@pytest.fixture(scope="session")
def learning_harness():
    """``run(model, learner, scenario="user_cold") -> MAE`` after ``STEPS`` meta-steps (cached)."""
    prepared = prepare(CONFIG)
    results: dict[tuple[str, str, str], float] = {}

    def run(model: str, learner: str, scenario: str = "user_cold") -> float:
        key = (model, learner, scenario)
        if key not in results:
            config = dataclasses.replace(
                CONFIG,
                model=dataclasses.replace(CONFIG.model, name=model),
                learner=dataclasses.replace(CONFIG.learner, name=learner),
            )
            built = build_learner(config, build_model(config, prepared.encoded), prepared)
            if built.meta_variables():
                sampler = EpisodeSampler(prepared.encoded, prepared.train_ratings, batch_size=16, query_size=10,
                                         max_support=64, seed=0)
                MetaTrainer(built, keras.optimizers.Adam(CONFIG.train.outer_lr)).fit(iter(sampler), STEPS, verbose=0)
            for name, tasks in prepared.scenarios.items():
                results[(model, learner, name)] = evaluate_tasks(built, prepared.encoded, tasks,
                                                                 jit_compile=False)["MAE"]
            print(f"{model}/{learner}: " + ", ".join(f"{s} {v:.4f}" for (m, lr, s), v in results.items()
                                                     if (m, lr) == (model, learner)))
        return results[key]

    return run
