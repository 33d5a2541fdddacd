"""Every registered model exports with an embedded MAML step: SavedModel and ONNX Runtime
agree with eager adaptation (the learner-by-learner tests use MeLU)."""

import numpy as np
import pytest
import tensorflow as tf

from helpers import random_episode
from model_checks import perturbed, small_model
from tfmetarec import learners, models
from tfmetarec.export import export_saved_model, request_inputs
from tfmetarec.export.onnx import OnnxScorer, export_onnx
from tfmetarec.export.onnx_ops import LoweringError
from tfmetarec.types import QUERY, features_of

MODELS = [m for m in models.available() if m != "melu"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    out = {}
    for name in MODELS:
        learner = learners.MAML(perturbed(small_model(name, seed=1), seed=2), inner_steps=2, inner_lr=0.1)
        out[name] = (learner, export_onnx(learner, base / f"{name}.onnx"), export_saved_model(learner, base, name, 1))
    return out


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("sizes", [[0, 2, 6], [6, 6, 6]])
def test_exported_adaptation_matches_eager(exported, name, sizes):
    learner, onnx_path, saved = exported[name]
    episode = random_episode(seed=3, tasks=3, support=6, query=5, support_sizes=sizes)
    eager = learner(episode).numpy()
    inputs = request_inputs(episode)
    np.testing.assert_allclose(OnnxScorer(onnx_path)(inputs)["scores"], eager, atol=1e-5)
    served = tf.saved_model.load(str(saved)).signatures["adapt_and_score"](
        **{k: tf.constant(v) for k, v in inputs.items()})["scores"]
    np.testing.assert_allclose(served.numpy(), eager, atol=1e-5)
    prior = learner.model(features_of(episode[QUERY])).numpy()
    assert np.abs(eager[sizes.index(6)] - prior[sizes.index(6)]).max() > 1e-4  # it adapts


def test_concat_gradients_need_their_lowerings(exported, tmp_path):
    learner, _, _ = exported["cf"]
    for op in ("ConcatOffset", "ShapeN"):
        with pytest.raises(LoweringError, match=op):
            export_onnx(learner, tmp_path / "never.onnx", disabled_handlers=(op,))
    assert not (tmp_path / "never.onnx").exists()
