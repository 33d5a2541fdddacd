"""Train the presets in saved_models/ from scratch, evaluate them, write their model cards.

    PYTHONPATH=. python scripts/make_presets.py                 # all presets
    PYTHONPATH=. python scripts/make_presets.py tiny-synthetic  # one

Every preset is seeded; its metrics are those of its own learner on the held-out
partitions of its split (`tfmetarec.presets.preset_metrics` recomputes them, and
tests/presets checks that they still match).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfmetarec import experiment  # noqa: E402
from tfmetarec.config import ExperimentConfig, LearnerConfig, ModelConfig, TrainConfig  # noqa: E402
from tfmetarec.config import SplitConfig  # noqa: E402
from tfmetarec.presets import from_preset, preset_metrics, save_to_preset  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ML100K_LICENSE = ("MovieLens 100K (GroupLens Research, University of Minnesota). The data may be used for "
                  "research only, under the GroupLens terms in the data set's README; it is not redistributed "
                  "here: only weights learned from it are.")
SYNTHETIC_LICENSE = "Synthetic data from tfmetarec's own generator; no third-party data."

PRESETS = {
    "tiny-synthetic": dict(
        config=ExperimentConfig(
            dataset="synthetic",
            model=ModelConfig(embedding_dim=8, hidden_units=(16, 16)),
            learner=LearnerConfig(name="maml", inner_steps=2, inner_lr=0.05),
            train=TrainConfig(meta_steps=400, pretrain_steps=0, batch_size=32, seed=0),
        ),
        description="A small MeLU + MAML model on the built-in synthetic cold-start data; used by the tests "
                    "and the fine-tuning notebook.",
        data_license=SYNTHETIC_LICENSE,
        limits="Synthetic data only: a starting point for fine-tuning and for tests, not a recommender.",
    ),
    "melu-maml-ml100k": dict(
        config=ExperimentConfig(
            dataset="movielens-100k",
            split=SplitConfig(seed=0),
            model=ModelConfig(embedding_dim=32, hidden_units=(64, 64)),
            learner=LearnerConfig(name="maml", inner_steps=5, inner_lr=0.05, adapt="decision"),
            train=TrainConfig(meta_steps=1500, pretrain_steps=0, seed=0),
        ),
        description="MeLU-style preference estimator meta-trained with second-order MAML (5 inner steps on "
                    "the decision layers) on MovieLens 100K, MeLU protocol split.",
        training_data="MovieLens 100K, meta-train partition (existing users x existing items)",
        data_license=ML100K_LICENSE,
        limits="Features are MovieLens 100K's (gender, age, occupation, zip prefix; genres, release year). "
               "943 users: small; on user-cold MAE an item-mean baseline is close (see the README's zoo table).",
    ),
    "melu-task-encoder-ml100k": dict(
        config=ExperimentConfig(
            dataset="movielens-100k",
            split=SplitConfig(seed=0),
            model=ModelConfig(embedding_dim=32, hidden_units=(64, 64)),
            learner=LearnerConfig(name="task_encoder", pooling="attention"),
            train=TrainConfig(meta_steps=1500, pretrain_steps=0, seed=0),
        ),
        description="MeLU-style model with an amortised task encoder (attention pooling over the support "
                    "ratings, one forward pass, no inner gradient steps) on MovieLens 100K.",
        training_data="MovieLens 100K, meta-train partition (existing users x existing items)",
        data_license=ML100K_LICENSE,
        limits="Same features and size limits as melu-maml-ml100k; adaptation is a single forward pass, "
               "cheaper to serve, slightly less accurate on user-cold MAE.",
    ),
}


def make(name: str) -> None:
    spec = PRESETS[name]
    config = spec["config"]
    started = time.time()
    prepared = experiment.prepare(config)
    learner = experiment.build_learner(config, experiment.build_model(config, prepared.encoded), prepared)
    experiment.fit_learner(learner, prepared, config.train.meta_steps, verbose=0)
    out = ROOT / "saved_models" / name
    if out.exists():
        shutil.rmtree(out)
    staging = ROOT / "saved_models" / f".{name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    save_to_preset(learner, config, prepared.encoder, staging, name=name,
                   **{k: v for k, v in spec.items() if k != "config"})
    metrics = preset_metrics(from_preset(staging))
    shutil.rmtree(staging)
    save_to_preset(learner, config, prepared.encoder, out, name=name, metrics=metrics,
                   **{k: v for k, v in spec.items() if k != "config"})
    print(f"{name}: {time.time() - started:.0f} s")
    print(metrics.to_string(index=False))


if __name__ == "__main__":
    for preset in sys.argv[1:] or list(PRESETS):
        make(preset)
