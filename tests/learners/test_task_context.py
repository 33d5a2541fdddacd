"""Per-task context (the hybrid's support size) travels from the support to the query score,
through the learners' adapted state and through an exported SavedModel."""

import numpy as np
import pytest
import tensorflow as tf

from helpers import random_episode
from model_checks import perturbed, small_model
from tfmetarec import learners
from tfmetarec.export import ServingModule
from tfmetarec.export.saved_model import DTYPES
from tfmetarec.models.hybrid import SUPPORT_COUNT
from tfmetarec.types import QUERY, SUPPORT, features_of


def _same_query_episode(sizes):
    """Tasks that share one query (rows of task 0) and differ only in support size."""
    episode = random_episode(seed=3, tasks=len(sizes), support=8, query=4, support_sizes=sizes)
    query = {k: np.repeat(v[:1], len(sizes), axis=0) for k, v in episode[QUERY].items()}
    return {**episode, QUERY: query}


def _parts(model, params, features):
    """The CF score, the content score and alpha, computed from the model's documented parts."""
    from tfmetarec.models.cf import bilinear_score

    cf = bilinear_score(model.cf_user.state(params, features, model), model.cf_item.state(params, features, model),
                        params["cf_global_bias"])
    cb = bilinear_score(model.cb_user.state(params, features, model), model.cb_item.state(params, features, model),
                        params["cb_global_bias"])
    return cf.numpy(), cb.numpy()


@pytest.mark.parametrize("name", ["maml", "reptile", "pretrain"])
def test_gradient_learners_score_the_query_with_the_support_size(name):
    model = perturbed(small_model("hybrid", seed=1), seed=2)
    params = model.variable_values()
    sizes = [0, 2, 8]
    episode = _same_query_episode(sizes)
    options = {"pretrain": dict(finetune_steps=0), "reptile": dict(inner_steps=1, inner_lr=0.0)}.get(
        name, dict(inner_steps=0))
    learner = learners.get(name)(model, **options)
    state = learner.adapt(episode[SUPPORT])
    np.testing.assert_array_equal(state[SUPPORT_COUNT].numpy(), sizes)
    scores = learner.score(state, features_of(episode[QUERY])).numpy()
    cf, cb = _parts(model, params, features_of(episode[QUERY]))
    logit, slope = float(params["alpha_logit"]), float(params["alpha_slope"])
    for t, n in enumerate(sizes):  # with no inner step only n differs between the tasks
        alpha = 1.0 / (1.0 + np.exp(-(logit + slope * np.log1p(n))))
        np.testing.assert_allclose(scores[t], alpha * cf[t] + (1 - alpha) * cb[t], rtol=1e-5, atol=1e-5)
    assert np.abs(scores[0] - scores[2]).max() > 1e-4


def test_the_slope_is_meta_learned_through_the_count():
    model = perturbed(small_model("hybrid", seed=4), seed=5)
    learner = learners.MAML(model, inner_steps=1, inner_lr=0.05)
    grads, _ = learner.meta_gradients(random_episode(seed=6, tasks=3, support_sizes=[1, 3, 6]))
    slope = dict(zip([v.name for v in learner.meta_variables()], grads))
    key = next(k for k in slope if k.endswith("alpha_slope"))
    assert abs(float(slope[key])) > 0


def test_global_mode_has_no_context():
    model = small_model("hybrid", alpha_mode="global")
    episode = random_episode(seed=1, tasks=2)
    assert model.task_context(episode[SUPPORT]) == {}
    assert SUPPORT_COUNT not in learners.MAML(model, inner_steps=1).adapt(episode[SUPPORT])


def test_exported_hybrid_carries_the_count_in_its_state():
    """The serving graph's state holds each user's support count (its scores against the eager
    learner are tests/export/test_export_learners.py's, for every model)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
    import serving_helpers as H

    world = H.world()
    learner = H.trained(world, model="hybrid", steps=3)
    request = H.random_request(world, np.random.default_rng(5), 3, 8, 4)
    request["support_mask"] = (np.arange(8)[None, :] < np.array([0, 3, 8])[:, None]).astype("float32")
    request["support_rating"] = np.where(request["support_mask"] > 0, 4.0, np.nan).astype("float32")
    module = ServingModule(learner, world[2], H.BUCKETS)
    dtypes = module.contract.input_dtypes()
    state = module.adapt({k: tf.constant(v, dtype=DTYPES[dtypes[k]]) for k, v in request.items()
                          if k in module.contract.inputs("adapt")})
    np.testing.assert_array_equal(state[f"state_{SUPPORT_COUNT}"].numpy(), [0, 3, 8])


@pytest.mark.parametrize("name", ["prototype", "matching", "task_encoder"])
def test_metric_and_encoder_learners_blend_by_the_support_size_too(name):
    model = perturbed(small_model("hybrid", seed=9), seed=10)
    sizes = [0, 2, 8]
    episode = _same_query_episode(sizes)
    learner = learners.get(name)(model)
    state = learner.adapt(episode[SUPPORT])
    np.testing.assert_array_equal(state[SUPPORT_COUNT].numpy(), sizes)
    query = features_of(episode[QUERY])
    scores = learner.score(state, query).numpy()
    # without the count every task is blended as if it had no ratings (n = 0)
    blind = learner.score({k: v for k, v in state.items() if k != SUPPORT_COUNT}, query).numpy()
    np.testing.assert_allclose(scores[0], blind[0], rtol=1e-6, atol=1e-6)
    assert np.abs(scores[2] - blind[2]).max() > 1e-4
