"""SavedModel export: eager, reloaded and TF-Serving-style (compat.v1 session) agree; bad requests fail clearly."""

import numpy as np
import pytest
import tensorflow as tf

from helpers import random_episode
from learner_checks import build
from tfmetarec import learners
from tfmetarec.export import export_saved_model, request_inputs
from tfmetarec.types import QUERY, features_of

EXPORTED = [n for n in learners.available()]


def _serving_session(path, signature, inputs):
    """Run a signature the way TF Serving does: a v1 session, the serve tag, tensor names."""
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], str(path))
        sig = meta.signature_def[signature]
        feed = {sig.inputs[k].name: np.asarray(v) for k, v in inputs.items()}
        return sess.run({k: t.name for k, t in sig.outputs.items()}, feed)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    base = tmp_path_factory.mktemp("serving")
    out = {}
    for name in EXPORTED:
        learner = build(name, seed=1)
        out[name] = (learner, export_saved_model(learner, base, name, 1))
    return out


@pytest.mark.parametrize("name", EXPORTED)
@pytest.mark.parametrize("sizes", [[0, 1, 3], [6, 6, 6]])
def test_adapt_and_score_parity(exported, name, sizes):
    learner, path = exported[name]
    episode = random_episode(seed=4, tasks=3, support=6, query=5, support_sizes=sizes)
    eager = learner(episode).numpy()
    assert np.isfinite(eager).all()
    inputs = request_inputs(episode)
    loaded = tf.saved_model.load(str(path))
    reloaded = loaded.signatures["adapt_and_score"](**{k: tf.constant(v) for k, v in inputs.items()})["scores"]
    np.testing.assert_allclose(reloaded.numpy(), eager, atol=1e-5)
    served = _serving_session(path, "adapt_and_score", inputs)["scores"]
    np.testing.assert_allclose(served, eager, atol=1e-5)
    # adapt, then score with the cached state, gives the same answer
    support_inputs = {k: tf.constant(v) for k, v in inputs.items() if k.startswith("support_")}
    state = loaded.signatures["adapt"](**support_inputs)
    query_inputs = {k: tf.constant(v) for k, v in inputs.items() if k.startswith("query_")}
    again = loaded.signatures["score_with_state"](**state, **query_inputs)["scores"]
    np.testing.assert_allclose(again.numpy(), eager, atol=1e-5)


@pytest.mark.parametrize("name", ["maml", "prototype"])
def test_serving_default_scores_without_adaptation(exported, name):
    learner, path = exported[name]
    episode = random_episode(seed=5, tasks=2)
    expected = learner.model(features_of(episode[QUERY])).numpy()
    inputs = request_inputs(episode, with_support=False)
    served = _serving_session(path, "serving_default", inputs)["scores"]
    np.testing.assert_allclose(served, expected, atol=1e-5)


def test_out_of_range_ids_go_to_the_oov_bucket(exported):
    learner, path = exported["maml"]
    episode = random_episode(seed=6, tasks=2)
    clean = request_inputs(episode)
    noisy = dict(clean)
    noisy["query_user_fields"] = clean["query_user_fields"].copy()
    noisy["query_user_fields"][0, 0, 0] = 10_000
    noisy["query_user_fields"][1, 0, 1] = -3
    noisy["query_item_id"] = clean["query_item_id"].copy()
    noisy["query_item_id"][1, 1] = 10_000
    expected_episode = {**episode, QUERY: dict(episode[QUERY])}
    fixed = clean["query_user_fields"].copy()
    fixed[0, 0, 0] = 0
    fixed[1, 0, 1] = 0
    expected_episode[QUERY]["user_fields"] = fixed
    fixed_items = clean["query_item_id"].copy()
    fixed_items[1, 1] = 0
    expected_episode[QUERY]["item_id"] = fixed_items
    loaded = tf.saved_model.load(str(path))
    got = loaded.signatures["adapt_and_score"](**{k: tf.constant(v) for k, v in noisy.items()})["scores"]
    np.testing.assert_allclose(got.numpy(), learner(expected_episode).numpy(), atol=1e-5)


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda r: r.update(support_rating=r["support_rating"][:, :-1]), "support_rating"),
        (lambda r: r.update(support_mask=r["support_mask"] * 0.5), "support_mask must hold only 0 and 1"),
        (lambda r: r["support_rating"].__setitem__((0, 0), np.nan), "NaN"),
        (lambda r: r.update(support_user_fields=r["support_user_fields"][:, :-1]), "support_user_fields"),
        (lambda r: r.update(query_user_id=r["query_user_id"][:1]), "same number of tasks"),
        (lambda r: r.update(query_item_id=r["query_item_id"][:, :2]), "query_item_id"),
    ],
)
def test_bad_requests_fail_with_a_clear_error(exported, corrupt, message):
    _, path = exported["maml"]
    inputs = {k: np.array(v) for k, v in request_inputs(random_episode(seed=7, tasks=2)).items()}
    corrupt(inputs)
    loaded = tf.saved_model.load(str(path))
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        loaded.signatures["adapt_and_score"](**{k: tf.constant(v) for k, v in inputs.items()})


def test_wrong_dtype_is_refused(exported):
    _, path = exported["maml"]
    inputs = request_inputs(random_episode(seed=8, tasks=1))
    inputs["support_rating"] = inputs["support_rating"].astype("int32")
    loaded = tf.saved_model.load(str(path))
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)):
        loaded.signatures["adapt_and_score"](**{k: tf.constant(v) for k, v in inputs.items()})


def test_layout_and_existing_version(tmp_path):
    learner = build("maml")
    path = export_saved_model(learner, tmp_path, "melu", 3)
    assert path == tmp_path / "melu" / "3" and (path / "saved_model.pb").exists()
    with pytest.raises(FileExistsError, match="already holds"):
        export_saved_model(learner, tmp_path, "melu", 3)
    with pytest.raises(ValueError, match="positive"):
        export_saved_model(learner, tmp_path, "melu", 0)
