"""Serving that holds: raw-ID requests, bucketed shapes, the same answers from the SavedModel,
a TF1 `serve` session and ONNX Runtime, top-k over the catalogue, and a catalogue of bad
requests that are all refused."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

import serving_helpers as H
from tfmetarec import models
from tfmetarec.export import Buckets, RequestError, bucketed_request, check_request, export_saved_model, load_contract
from tfmetarec.export.contract import candidate_count
from tfmetarec.export.core import ServingCore
from tfmetarec.export.onnx import OnnxRecommender, export_onnx
from tfmetarec.export.rules import STAGES, rules
from tfmetarec.export.saved_model import ServingModule
from tfmetarec.learners import MAML


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("served")
    world = H.world()
    learner = H.trained(world)
    saved = export_saved_model(learner, base, "m", 1, encoder=world[2], buckets=H.BUCKETS, top_k=10)
    onnx_dir = export_onnx(learner, base / "onnx", encoder=world[2], buckets=H.ONNX_BUCKETS, top_k=10)
    loaded = tf.saved_model.load(str(saved))
    return world, learner, saved, loaded, OnnxRecommender(onnx_dir)


def _call(loaded, signature: str, request: dict) -> dict[str, np.ndarray]:
    fn = loaded.signatures[signature]
    specs = fn.structured_input_signature[1]
    out = fn(**{k: tf.constant(v, dtype=specs[k].dtype) if k in specs else tf.constant(v)
                for k, v in request.items()})
    return {k: v.numpy() for k, v in out.items()}


def _session_runner(sess, meta):
    """``run(signature, request)`` through a loaded TF1 session."""

    def run(signature: str, request: dict) -> dict[str, np.ndarray]:
        sig = meta.signature_def[signature]
        feed = {sig.inputs[k].name: v for k, v in request.items()}
        names = sorted(sig.outputs)
        return dict(zip(names, sess.run([sig.outputs[n].name for n in names], feed)))
    return run


def _session(path, signature: str, request: dict) -> dict[str, np.ndarray]:
    """The request through a TF1 session on the `serve` tag, the way TF Serving loads a SavedModel."""
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], str(path))
        return _session_runner(sess, meta)(signature, request)


@pytest.fixture(scope="module")
def session(served):
    """``served``'s SavedModel loaded once in a TF1 session on the `serve` tag (as TF Serving loads
    it): ``run(signature, request)``; a refused request leaves the session usable, as in TF Serving."""
    graph = tf.Graph()
    sess = tf.compat.v1.Session(graph=graph)
    with graph.as_default():  # only while loading: the tests run eagerly around it
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], str(served[2]))
    yield _session_runner(sess, meta)
    sess.close()


def test_raw_requests_of_random_shapes_agree_everywhere(served, session):
    world, learner, saved, loaded, onnx = served
    rng = np.random.default_rng(0)
    for users, support, query in [(1, 3, 5), (4, 16, 32), (3, 0, 7), (2, 9, 1), (1, 16, 20), (4, 5, 0)]:
        request = H.random_request(world, rng, users, support, query)
        eager = H.eager_scores(world, learner, request)
        tf_scores = _call(loaded, "adapt_and_score", request)["scores"]
        assert tf_scores.shape == (users, query) and np.isfinite(tf_scores).all()
        np.testing.assert_allclose(tf_scores, eager, atol=1e-5)
        np.testing.assert_allclose(onnx("adapt_and_score", request)["scores"], eager, atol=1e-5)
        if support == 16:  # one shape through the TF1 `serve` session as well
            np.testing.assert_allclose(session("adapt_and_score", request)["scores"], eager, atol=1e-5)


def test_the_state_round_trip_and_the_prior(served):
    world, learner, saved, loaded, onnx = served
    request = H.random_request(world, np.random.default_rng(1), 3, 12, 6)
    support = {k: v for k, v in request.items() if k != "query_item_id"}
    state = _call(loaded, "adapt", support)
    assert {"state_fingerprint", "state_version", "state_user_index", "state_user_fields", "state_user",
            "state_tag"} <= set(state)
    np.testing.assert_array_equal(state["state_user"], request["user_id"])
    users = {"user_id": request["user_id"], "query_item_id": request["query_item_id"]}
    scored = _call(loaded, "score_with_state", {**state, **users})["scores"]
    np.testing.assert_allclose(scored, _call(loaded, "adapt_and_score", request)["scores"], atol=1e-6)
    onnx_state = onnx("adapt", support)
    for k, v in state.items():  # the same state; each runtime signs it with its own key
        if k != "state_tag":
            np.testing.assert_allclose(onnx_state[k], v, atol=1e-5, err_msg=k)
    np.testing.assert_allclose(onnx("score_with_state", {**onnx_state, **users})["scores"], scored, atol=1e-5)
    # two users, two states: each is scored with its own (not the first one's for both)
    swapped = {k: v[::-1] for k, v in {**state, **users}.items()}
    again = _call(loaded, "score_with_state", swapped)["scores"]
    np.testing.assert_allclose(again, scored[::-1], atol=1e-6)
    prior = {k: v for k, v in request.items() if not k.startswith("support_")}
    empty = {**request, "support_mask": np.zeros_like(request["support_mask"])}
    np.testing.assert_allclose(_call(loaded, "serving_default", prior)["scores"],
                               _call(loaded, "adapt_and_score", empty)["scores"], atol=1e-6)
    np.testing.assert_allclose(onnx("serving_default", prior)["scores"],
                               _call(loaded, "serving_default", prior)["scores"], atol=1e-5)


def _brute_force_top(world, learner, request, k):
    """Every catalogue item scored for the user, rated items left out, sorted."""
    data = world[0]
    items = np.sort(data.items["item"].to_numpy(np.int64))
    full = {**request, "query_item_id": np.tile(items, (len(request["user_id"]), 1))}
    scores = H.eager_scores(world, learner, full)
    out = []
    for t in range(len(scores)):
        rated = set(request["support_item_id"][t][request["support_mask"][t] > 0].tolist())
        keep = np.array([i not in rated for i in items])
        order = np.argsort(-scores[t][keep], kind="stable")[:k]
        out.append((items[keep][order], scores[t][keep][order]))
    return out


@pytest.mark.parametrize("model", ["melu", "two_tower"])  # scoring every item; the keras-rs vector search
def test_recommend_is_the_top_of_a_brute_force_sort_with_rated_items_left_out(served, tmp_path, model):
    world, learner, _, loaded, _ = served
    k = 10
    request = H.random_request(world, np.random.default_rng(2), 4, 16, None, garbage=False)
    request["support_mask"][:, :3] = 1.0  # every user has rated something
    if model != "melu":
        learner = H.trained(world, model=model, steps=10)
        k = 7
        path = export_saved_model(learner, tmp_path, "m", 1, encoder=world[2], buckets=H.BUCKETS, top_k=k, static=False)
        loaded = tf.saved_model.load(str(path))
        through_session = _session(path, "recommend", request)  # TF Serving's path holds the search's item vectors
        np.testing.assert_array_equal(through_session["item_id"], _call(loaded, "recommend", request)["item_id"])
    got = _call(loaded, "recommend", request)
    assert got["item_id"].shape == got["scores"].shape == (4, k)
    for t, (items, scores) in enumerate(_brute_force_top(world, learner, request, k)):
        np.testing.assert_allclose(got["scores"][t], scores, atol=1e-5)
        rated = set(request["support_item_id"][t][request["support_mask"][t] > 0].tolist())
        assert not rated & set(got["item_id"][t].tolist())
        same = got["item_id"][t] == items
        assert same.all() or np.allclose(got["scores"][t][~same], scores[~same], atol=1e-5)  # ties only
    state = _call(loaded, "adapt", request)  # the state remembers the rated items and leaves them out
    again = _call(loaded, "recommend_with_state", {**state, "user_id": request["user_id"]})
    np.testing.assert_array_equal(again["item_id"], got["item_id"])


def test_a_large_catalogue_is_ranked_in_two_stages_the_same_through_the_session_and_onnx(served, tmp_path):
    """The candidate stage's estimate is f(c) + g.A(r - c) at each item's cluster centre, every item
    sits in one block slot, and the answer names items by their exact scores, rated ones left out."""
    world, learner, _, _, _ = served
    buckets = Buckets(users=(1, 4), support=(16,), query=(8,))
    path = export_saved_model(learner, tmp_path, "two", 1, encoder=world[2], buckets=buckets, top_k=10,
                              candidates=40, exhaustive_up_to=50, static=False)
    search = load_contract(path).extra["recommend_search"]
    assert search["kind"] == "two-stage" and search["candidates"] == 40 and search["catalogue"] == 90
    core = ServingModule(learner, world[2], buckets, top_k=10, candidates=40, exhaustive_up_to=50).core
    assert core.one_user_row  # MeLU under MAML: the user's side once per request (exact scores checked below)
    stage = core.candidates
    slots = stage.position.numpy().reshape(-1)
    np.testing.assert_array_equal(np.sort(slots[slots >= 0]), np.arange(90))
    _, support, _ = H.encode(world, H.random_request(world, np.random.default_rng(4), 1, 16, None, garbage=False))
    state = learner.adapt({k: tf.constant(v) for k, v in support.items()})
    centres = tf.constant(stage.centres.numpy()[None])
    user = {k: tf.constant(np.broadcast_to(support[k][:, :1], (1, stage.anchors, *support[k].shape[2:])))
            for k in ("user_id", "user_fields")}
    with tf.GradientTape() as tape:
        tape.watch(centres)
        value = learner.score(state, {**user, "item_id": tf.zeros([1, stage.anchors], tf.int32),
                                      "item_representation": centres})
    gradient = tape.gradient(value, centres)
    reps = core._item_representations(core.catalogue_rows)
    owner = np.repeat(stage.owner.numpy(), stage.block)[slots >= 0]
    deviation = (reps[slots[slots >= 0]] - stage.centres.numpy()[owner]) @ stage.item_basis
    slope = gradient.numpy()[0, owner] @ stage.basis.numpy()
    expected = value.numpy()[0, owner] + np.einsum("nk,nk->n", deviation, slope)
    got = stage.estimate(value, gradient).numpy()[0]
    np.testing.assert_allclose(got[slots >= 0], expected, atol=1e-4)
    assert np.isneginf(got[slots < 0]).all()

    request = H.random_request(world, np.random.default_rng(5), 4, 16, None, garbage=False)
    request["support_mask"][:, :3] = 1.0
    answer = _session(path, "recommend", request)
    brute = _brute_force_top(world, learner, request, 10)
    recall = np.mean([len(set(answer["item_id"][t]) & set(items)) / 10 for t, (items, _) in enumerate(brute)])
    assert recall >= 0.9, recall
    items = np.sort(world[0].items["item"].to_numpy(np.int64))
    exact = H.eager_scores(world, learner, {**request, "query_item_id": np.tile(items, (4, 1))})
    for t in range(4):
        np.testing.assert_allclose(answer["scores"][t], exact[t][np.searchsorted(items, answer["item_id"][t])],
                                   atol=1e-5)
        assert np.all(np.diff(answer["scores"][t]) <= 0)
        rated = set(request["support_item_id"][t][request["support_mask"][t] > 0].tolist())
        assert not rated & set(answer["item_id"][t].tolist())
    onnx = OnnxRecommender(export_onnx(learner, tmp_path / "onnx", encoder=world[2], signatures=("recommend",),
                                       buckets=Buckets(users=(1,), support=(16,), query=(8,)), top_k=10,
                                       candidates=40, exhaustive_up_to=50))
    one = {k: v[:1] for k, v in request.items()}
    np.testing.assert_array_equal(onnx("recommend", one)["item_id"], answer["item_id"][:1])


def test_the_candidate_directions_keep_what_the_gradients_can_see():
    """Gradients confined to 3 of 12 dimensions: 3 directions estimate g.(r - c) exactly, however
    the deviations spread; with no gradients, the deviations' principal directions are kept."""
    from tfmetarec.export.candidates import TaylorCandidates, score_directions

    rng = np.random.default_rng(1)
    reps = rng.normal(size=(3000, 12)) * np.linspace(3.0, 0.5, 12)  # spread mostly outside the seen subspace
    mixing = np.linalg.qr(rng.normal(size=(12, 12)))[0]
    seen = mixing[:, -3:]  # the gradients' subspace: where the deviations spread least
    probe = lambda centres: rng.normal(size=(400, 3)) @ seen.T  # noqa: E731
    stage = TaylorCandidates(reps @ mixing.T, np.zeros(3000), anchors=10, gradients=probe)
    assert stage.rank == 3
    gradient = rng.normal(size=(2, stage.anchors, 3)) @ seen.T
    value = rng.normal(size=(2, stage.anchors))
    slots = stage.position.numpy().reshape(-1)
    owner = np.repeat(stage.owner.numpy(), stage.block)[slots >= 0]
    deviation = (reps @ mixing.T)[slots[slots >= 0]] - stage.centres.numpy()[owner]
    exact = value[:, owner] + np.einsum("nd,tnd->tn", deviation, gradient[:, owner])
    got = stage.estimate(tf.constant(value, tf.float32), tf.constant(gradient, tf.float32)).numpy()
    np.testing.assert_allclose(got[:, slots >= 0], exact, atol=1e-3)
    slope, item = score_directions(reps, None, 0.97)  # principal directions: the widest first
    assert slope.shape == item.shape and np.allclose(slope.T @ slope, np.eye(slope.shape[1]), atol=1e-5)
    assert slope.shape[1] < 12 and np.abs(slope[0, 0]) > 0.99
    assert score_directions(reps, np.zeros((5, 12)), 0.97)[0].shape == slope.shape  # no gradient: the same


def test_the_candidate_selection_keeps_top_ks_set_through_its_threshold_and_its_fallback():
    from tfmetarec.export.candidates import SAMPLE_STRIDE, TaylorCandidates, best_slots

    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=(3, 4000)), 1).astype(np.float32)  # many ties at the boundary
    scores[1, ::SAMPLE_STRIDE] = 50.0  # row 1's sampled scores are its best: its threshold lets 250 through
    fallback = scores.copy()
    fallback[2, ::SAMPLE_STRIDE] = 60.0
    fallback[2, 5] = np.inf
    for case, k in ((scores, 200), (scores, 40), (fallback, 300)):  # 300 > row 2's 250 through: top_k for all
        expected = tf.math.top_k(case, k=k).indices.numpy()
        for got in (best_slots(tf.constant(case), k).numpy(),
                    tf.function(lambda x, k=k: best_slots(x, k))(tf.constant(case)).numpy(),
                    tf.function(lambda x, k=k: best_slots(x, k), jit_compile=True)(tf.constant(case)).numpy()):
            assert got.shape == (3, k)
            for row in range(3):
                assert set(got[row].tolist()) == set(expected[row].tolist()) and np.all(np.diff(got[row]) > 0)
    assert best_slots(tf.zeros([0, 4000]), 200).shape == (0, 200)  # no user: no row, no error

    # a catalogue's stage selects through the threshold for any number of users (a static slot axis)
    stage = TaylorCandidates(rng.normal(size=(5000, 6)), rng.normal(size=5000), anchors=12)
    value, gradient = tf.constant(rng.normal(size=(2, 12)), tf.float32), tf.constant(rng.normal(size=(2, 12, 6)),
                                                                                     tf.float32)
    traced = tf.function(stage.shortlist).get_concrete_function(
        tf.TensorSpec([None, 12]), tf.TensorSpec([None, 12, 6]), 200)
    library = traced.graph.as_graph_def().library.function  # the selection runs in a branch of its fallback
    assert "Where" in {node.op for f in library for node in f.node_def}
    position = stage.position.numpy().reshape(-1)
    best = position[tf.math.top_k(stage.estimate(value, gradient), k=200).indices.numpy()]
    got = traced(value, gradient).numpy()
    slot = stage.slot.numpy()
    assert all(set(got[t].tolist()) == set(best[t].tolist()) and np.all(np.diff(slot[got[t]]) > 0) for t in range(2))
    # rated items are never candidates: user 0 rated its 5 best (one listed twice), user 1 nothing (mask 0)
    rated = np.stack([best[0, [0, 1, 2, 3, 4, 4]], best[1, :6]]).astype(np.int32)
    is_rated = np.array([[True] * 6, [False] * 6])
    estimate = stage.estimate(value, gradient).numpy()
    estimate[0, slot[rated[0]]] = -np.inf
    expected = set(position[tf.math.top_k(estimate[0], k=200).indices.numpy()].tolist())
    for run in (stage.shortlist, tf.function(stage.shortlist, jit_compile=True)):
        left = run(value, gradient, 200, tf.constant(rated), tf.constant(is_rated)).numpy()
        assert set(left[0].tolist()) == expected and set(left[1].tolist()) == set(got[1].tolist())
        assert not set(left[0].tolist()) & set(rated[0].tolist())


def test_the_two_stage_search_is_used_only_where_item_representations_predict_the_scores(served):
    world, _, _, _, _ = served
    encoded = world[3]

    def core(adapt="decision", model="melu", **settings):
        net = models.get(model).from_spec(encoded.spec, item_table=encoded.item_table,
                                          item_raw_ids=encoded.item_raw_ids, embedding_dim=4, seed=0)
        return ServingCore(MAML(net, inner_steps=1, inner_lr=0.5, adapt=adapt), 0, 10, 16,
                           **{"candidates": 40, "exhaustive_up_to": 50, **settings})

    assert core().search == "two-stage"
    adapted_items = core(adapt="all")
    assert adapted_items.search == "exhaustive" and "changes the item side" in adapted_items.search_note
    assert "does not take a given item representation" in core(model="cf").search_note
    assert core(exhaustive_up_to=90).search == "exhaustive" and not core(exhaustive_up_to=90).search_note
    with pytest.raises(ValueError, match="candidates=5 is fewer than top_k"):
        core(candidates=5)
    # the rated items are left out of the candidates, so a catalogue must hold more than both
    assert core(candidates=74).search == "two-stage"
    assert "75 candidates plus the 16 rated items" in core(candidates=75).search_note
    assert core(candidates="auto").search_note.startswith("1500 candidates")  # 1,500 up to 375,000 items
    assert [candidate_count("auto", n) for n in (90, 375_000, 1_000_000)] == [1500, 1500, 4000]
    with pytest.raises(ValueError, match="positive count or 'auto'"):
        candidate_count("many", 90)


def _good(world):
    return H.random_request(world, np.random.default_rng(3), 2, 6, 4, garbage=False) | {
        "support_mask": np.ones((2, 6), np.float32)}


def _state(served):
    world, learner, saved, loaded, onnx = served
    request = _good(world)
    return _call(loaded, "adapt", {k: v for k, v in request.items() if k != "query_item_id"}), request


def _edit(key, fn):
    def change(r):
        r[key] = fn(np.array(r[key], copy=True))
        return r
    return change


def _drop(key):
    def change(r):
        del r[key]
        return r
    return change


BAD = [  # (signature, change, message the graph gives, message the client gives)
    ("adapt_and_score", _edit("support_rating", lambda a: np.where(np.arange(6) == 1, np.nan, a)), "NaN", "NaN"),
    ("adapt_and_score", _edit("support_rating", lambda a: np.where(np.arange(6) == 2, np.inf, a)), "infinite",
     "infinite"),
    ("adapt_and_score", _edit("support_rating", lambda a: np.where(np.arange(6) == 0, 1e6, a)), "trained range",
     "trained range"),
    ("adapt_and_score", _edit("support_rating", lambda a: np.where(np.arange(6) == 0, -50, a)), "trained range",
     "trained range"),
    ("adapt_and_score", _edit("support_rating", lambda a: np.where(np.arange(6) == 0, 0.0, a)), "trained range",
     "trained range"),
    ("adapt_and_score", _edit("support_mask", lambda a: a * 0.5), "only 0", "only 0"),
    ("adapt_and_score", _edit("support_mask", lambda a: a * 2), "only 0", "only 0"),
    ("adapt_and_score", _edit("support_mask", lambda a: np.where(np.arange(6) == 3, np.nan, a)), "only 0", "only 0"),
    ("adapt_and_score", _edit("support_rating", lambda a: a[:, :-1]), "support_rating", "support_rating"),
    ("adapt_and_score", _edit("support_mask", lambda a: a[:, :-2]), "support_mask", "support_mask"),
    ("adapt_and_score", _edit("support_item_id", lambda a: a[:1]), "support_item_id", "support_item_id"),
    ("adapt_and_score", _edit("query_item_id", lambda a: a[:1]), "query_item_id", "query_item_id"),
    ("adapt_and_score", _edit("user_gender", lambda a: a[:1]), "user_gender", "user_gender"),
    ("adapt_and_score", _edit("user_age", lambda a: np.array(["abc", "30"], dtype=object)), "user_age", "user_age"),
    ("adapt_and_score", lambda r: r | {k: np.tile(r[k], (1, 3)) for k in ("support_item_id", "support_rating",
                                                                          "support_mask")}, "limit of 16",
     "limit of 16"),
    ("adapt_and_score", _edit("query_item_id", lambda a: np.tile(a, (1, 9))), "limit of 32", "limit of 32"),
    ("recommend", _edit("support_mask", lambda a: a - 2.0), "only 0", "only 0"),
    ("recommend", _edit("support_rating", lambda a: a + 10), "trained range", "trained range"),
    ("adapt", _edit("support_rating", lambda a: np.where(np.arange(6) == 5, np.nan, a)), "NaN", "NaN"),
]
STRUCTURAL = [  # refused before anything runs: by check_request in every client, by the signature where it can
    ("adapt_and_score", _drop("support_mask"), "needs inputs", True),
    ("adapt_and_score", lambda r: r | {"extra": np.zeros(2)}, "takes no inputs", True),
    ("adapt_and_score", _edit("user_id", lambda a: a[:, None]), "rank", True),
    ("adapt_and_score", _edit("support_item_id", lambda a: a + 0.5), "integer IDs", False),
    ("adapt_and_score", _edit("query_item_id", lambda a: np.array([[2 ** 70, 1, 2, 3]] * 2, dtype=object)),
     "int64 range", True),
    ("adapt_and_score", _edit("user_gender", lambda a: np.array([1, 2])), "strings", False),
    ("adapt_and_score", lambda r: {k: v[:0] for k, v in r.items()}, "at least one user", True),
]
@pytest.mark.parametrize("signature, change, graph_message, client_message", BAD,
                         ids=[f"{i}-{b[2]}" for i, b in enumerate(BAD)])
def test_bad_values_are_refused_by_the_graph_and_the_client(served, signature, change, graph_message,
                                                            client_message):
    world, learner, saved, loaded, onnx = served
    request = _good(world)
    if signature != "adapt_and_score":
        request.pop("query_item_id")
    bad = change(request)
    with pytest.raises(tf.errors.InvalidArgumentError, match=graph_message):
        _call(loaded, signature, bad)
    with pytest.raises(RequestError, match=client_message):
        onnx(signature, bad)


@pytest.mark.parametrize("signature, change, message, session_refuses", STRUCTURAL, ids=[s[2] for s in STRUCTURAL])
def test_bad_shapes_and_types_are_refused(served, session, signature, change, message, session_refuses):
    world, learner, saved, loaded, onnx = served
    bad = change(_good(world))
    with pytest.raises(RequestError, match=message):
        onnx(signature, bad)
    with pytest.raises(RequestError, match=message):
        check_request(load_contract(saved), signature, bad)  # what the REST and gRPC request builders run
    if session_refuses:  # a TF1 session on the `serve` tag (as TF Serving loads it) refuses these itself
        with pytest.raises((TypeError, ValueError, KeyError, OverflowError, tf.errors.InvalidArgumentError)):
            session(signature, bad)


def test_a_signature_called_with_a_wrong_rank_names_the_input(served):
    """TF2's ``signatures[...]`` does not check a shape itself: the graph does, naming the input."""
    world, learner, saved, loaded, onnx = served
    bad = _edit("support_rating", lambda a: a[:, :, None])(_good(world))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"Shape of tensor support_rating \[2,6,1\] is not "
                                                           r"compatible with expected shape \[\?,\?\]"):
        _call(loaded, "adapt_and_score", bad)


def test_states_that_are_not_this_models_are_refused(served):
    world, learner, saved, loaded, onnx = served
    state, request = _state(served)
    query = {"query_item_id": request["query_item_id"], "user_id": request["user_id"]}
    onnx_state = onnx("adapt", {k: v for k, v in request.items() if k != "query_item_id"})
    other_user = {**query, "user_id": request["user_id"] + 1}
    bias = "state_decision_0_bias"
    sealed = [  # each runtime's own state, its tag checked: another user, one value changed, the owner forged
        (lambda s: s, other_user, "adapted for another user"),
        (lambda s: {**s, bias: s[bias] + np.float32(1e-3) * (np.arange(s[bias].size) == 0).reshape(s[bias].shape)},
         query, "the state was changed, cut, or made by another export"),
        (lambda s: {**s, "state_user": s["state_user"] + 1}, other_user, "the state was changed"),
    ]
    for change, inputs, message in sealed:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            _call(loaded, "score_with_state", {**change(state), **inputs})
        with pytest.raises(RequestError, match=message):
            onnx("score_with_state", {**change(onnx_state), **inputs})
    cases = [
        ({**state, "state_fingerprint": state["state_fingerprint"] + 1}, "another model"),
        ({**state, "state_version": state["state_version"] + 1}, "state version"),
        ({**state, "state_decision_0_bias": np.full_like(state["state_decision_0_bias"], np.nan)}, "NaN"),
        ({**state, "state_user_index": state["state_user_index"][:1]}, "one row per user"),
        ({**state, "state_rated_mask": state["state_rated_mask"] * 0.5}, "state_rated_mask must hold only 0 and 1"),
        ({**state, "state_rated_item": state["state_rated_item"] + 10**6}, "state_rated_item holds item rows outside"),
        ({**state, "state_user_fields": state["state_user_fields"] - 100}, "state_user_fields holds negative"),
    ]
    for bad, message in cases:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            _call(loaded, "score_with_state", {**bad, **query})
    for bad, message in cases[:3] + cases[4:]:
        with pytest.raises(RequestError, match=message):
            onnx("score_with_state", {**bad, **query})
    with pytest.raises(tf.errors.InvalidArgumentError, match="query_item_id"):  # 2 states, 1 user's candidates
        _call(loaded, "score_with_state", {**state, "user_id": request["user_id"], "query_item_id": request["query_item_id"][:1]})
    # a state adapted by another model (same architecture, other weights) is refused too
    other = ServingModule(H.trained(world, perturb=0.05), world[2], H.BUCKETS, top_k=10)  # what its export would serve
    specs = loaded.signatures["adapt"].structured_input_signature[1]
    foreign = {k: v.numpy() for k, v in other.adapt({k: tf.constant(v, dtype=specs[k].dtype)
                                                      for k, v in request.items() if k != "query_item_id"}).items()}
    with pytest.raises(tf.errors.InvalidArgumentError, match="another model"):
        _call(loaded, "score_with_state", {**foreign, **query})
    copied = {**foreign, "state_fingerprint": state["state_fingerprint"]}  # its fingerprint forged
    with pytest.raises(tf.errors.InvalidArgumentError, match="made by another export"):
        _call(loaded, "score_with_state", {**copied, **query})
    with pytest.raises(RequestError, match="made by another export"):  # the SavedModel's state, to the ONNX client
        onnx("score_with_state", {**state, **query})


def test_the_contract_beside_the_export_matches_its_signatures(served):
    world, learner, saved, loaded, onnx = served
    contract = load_contract(saved)
    assert contract.buckets == H.BUCKETS and contract.top_k == 10 and contract.rating_range == (1.0, 5.0)
    for name in ("serving_default", "adapt_and_score", "adapt", "score_with_state", "recommend",
                 "recommend_with_state"):
        specs = loaded.signatures[name].structured_input_signature[1]
        assert set(specs) == set(contract.inputs(name)), name
        assert set(loaded.signatures[name].structured_outputs) == set(contract.outputs(name)), name
        for key, spec in specs.items():
            assert spec.dtype.name == contract.input_dtypes()[key], key
    request = _good(world)
    assert set(check_request(contract, "adapt_and_score", request)) == set(request)
    # the client runs the rules in the order rules() lists them: shapes are refused before values are read
    for name in contract.signatures:
        stages = [STAGES.index(r.stage) for r in rules(contract, name)]
        assert stages == sorted(stages), name
    cut = {**request, "support_rating": np.full_like(request["support_rating"][:, :-1], np.nan)}
    with pytest.raises(RequestError, match="must have the shape of support_item_id"):
        check_request(contract, "adapt_and_score", cut)


def test_saved_model_cli_reads_the_export_cleanly(served):
    _, _, saved, _, _ = served
    cli = [sys.executable, "-c", "import sys; from tensorflow.python.tools.saved_model_cli import main; "
           "sys.argv = ['saved_model_cli', 'show', '--dir', sys.argv[1], '--all']; main()", str(saved)]
    out = subprocess.run(cli, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    for name in ("adapt_and_score", "recommend", "score_with_state", "serving_default"):
        assert f"signature_def['{name}']" in out.stdout
    assert "XlaLaunch" not in out.stdout and "_XlaMustCompile" not in out.stdout
    # each signature's graph is written once: a second trace of it (a function the module tracks is
    # traced again inside the save) makes the export larger and slower for TF Serving to load
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((saved / "saved_model.pb").read_bytes())
    served = [f.signature.name for f in proto.meta_graphs[0].graph_def.library.function
              if f.signature.name.startswith("__inference_run_")]  # ServingModule._served's graphs
    assert len(served) == len(load_contract(saved).signatures), served


def test_a_state_updated_rating_by_rating_and_its_checks(served):
    world, learner, saved, loaded, onnx = served
    request = H.random_request(world, np.random.default_rng(8), 2, 6, 5, garbage=False)
    request["support_mask"][:] = 1.0
    support = {k: v for k, v in request.items() if k != "query_item_id"}
    start = _call(loaded, "adapt", {**support, "support_mask": np.zeros_like(support["support_mask"])})
    state = start
    onnx_state = onnx("adapt", {**support, "support_mask": np.zeros_like(support["support_mask"])})
    for j in range(6):
        new = {"new_item_id": request["support_item_id"][:, j:j + 1], "new_rating": request["support_rating"][:, j:j + 1],
               "new_mask": np.ones((2, 1), np.float32), "user_id": request["user_id"]}
        state = _call(loaded, "update_state", {**state, **new})
        onnx_state = onnx("update_state", {**onnx_state, **new})
    for k, v in state.items():
        if k != "state_tag":
            np.testing.assert_allclose(onnx_state[k], v, atol=1e-5, err_msg=k)
    assert state["state_rated_mask"].sum() == 12  # the state remembers what each user rated
    user = {"user_id": request["user_id"]}
    query = {"query_item_id": request["query_item_id"], **user}
    scores = _call(loaded, "score_with_state", {**state, **query})["scores"]
    assert np.isfinite(scores).all()
    top = _call(loaded, "recommend_with_state", {**state, **user})["item_id"]
    for t in range(2):
        assert not set(request["support_item_id"][t].tolist()) & set(top[t].tolist())
    np.testing.assert_array_equal(onnx("recommend_with_state", {**onnx_state, **user})["item_id"], top)
    # an update that brings no rating changes nothing
    empty = {"new_item_id": request["support_item_id"][:, :1], "new_rating": request["support_rating"][:, :1],
             "new_mask": np.zeros((2, 1), np.float32), **user}
    again = _call(loaded, "update_state", {**state, **empty})
    for k, v in state.items():
        np.testing.assert_allclose(again[k], v, atol=1e-7, err_msg=k)
    # new ratings that are NaN or outside the range, and states that are not this model's, are refused
    for bad, message in ((dict(empty, new_rating=np.full((2, 1), np.nan, np.float32), new_mask=np.ones((2, 1),
                                                                                                  np.float32)), "NaN"),
                         (dict(empty, new_rating=np.full((2, 1), 9.0, np.float32), new_mask=np.ones((2, 1),
                                                                                                 np.float32)),
                          "trained range"),
                         (dict(empty, new_mask=np.full((2, 1), 0.5, np.float32)), "only 0")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            _call(loaded, "update_state", {**state, **bad})
        with pytest.raises(RequestError, match=message):
            onnx("update_state", {**onnx_state, **bad})
    foreign = {**state, "state_fingerprint": state["state_fingerprint"] + 7}
    with pytest.raises(tf.errors.InvalidArgumentError, match="another model"):
        _call(loaded, "update_state", {**foreign, **empty})
    with pytest.raises(RequestError, match="must be \\[T"):
        onnx("update_state", {**onnx_state, "state_rated_item": onnx_state["state_rated_item"][:, :3], **empty})


def test_one_user_requests_through_the_static_signatures_answer_as_the_dynamic_ones(served, session):
    """Every signature but the prior also exists at static shapes for one user, one per support bucket;
    bucketed_request pads the ratings and names it. Through TF Serving's v1 session each answers
    exactly as the dynamic signature does (states, their tags included, are interchangeable), and
    refuses what the dynamic one refuses; other requests keep the dynamic signature."""
    world, learner, saved, loaded, onnx = served
    contract = load_contract(saved)
    assert set(contract.static_signatures) == {
        *(f"{n}.t1.s{s}" for n in ("adapt_and_score", "adapt", "recommend", "update_state") for s in (8, 16)),
        "score_with_state.t1", "recommend_with_state.t1"}
    assert set(contract.static_signatures) <= set(loaded.signatures)
    assert onnx.contract.static_signatures == ()  # the ONNX graphs are per bucket already
    run = session

    def both(signature, request, want):
        name, arrays = bucketed_request(contract, signature, request)
        assert name == want and all(arrays[k].shape[1] == int(want.split(".s")[1])
                                    for k in contract.rated_inputs(signature)), (name, want)
        static, dynamic = run(name, arrays), run(signature, request)
        for key, value in dynamic.items():
            np.testing.assert_allclose(static[key], value, atol=1e-6, err_msg=f"{name} {key}")
        return dynamic

    request = H.random_request(world, np.random.default_rng(11), 1, 11, 5)  # 11 rows: the 16 bucket
    request["support_mask"][0, :3], request["support_rating"][0, :3] = 1.0, (4.0, 2.0, 5.0)  # some real rows
    support = {k: v for k, v in request.items() if k != "query_item_id"}
    both("adapt_and_score", request, "adapt_and_score.t1.s16")
    both("recommend", support, "recommend.t1.s16")
    state = both("adapt", support, "adapt.t1.s16")
    user = {"user_id": request["user_id"]}
    both("score_with_state", {**state, **user, "query_item_id": request["query_item_id"]}, "score_with_state.t1")
    both("recommend_with_state", {**state, **user}, "recommend_with_state.t1")
    new = {"new_item_id": request["support_item_id"][:, :1], "new_rating": np.full((1, 1), 4.0, np.float32),
           "new_mask": np.ones((1, 1), np.float32)}
    both("update_state", {**state, **user, **new}, "update_state.t1.s8")
    # the static graph still refuses a NaN rating on a real row; the client refuses it before sending
    bad = {**request, "support_rating": np.where(np.arange(11) == 1, np.nan, request["support_rating"])}
    name, arrays = bucketed_request(contract, "adapt_and_score", request)
    arrays["support_rating"][0, 1] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN"):
        run(name, arrays)
    with pytest.raises(RequestError, match="NaN"):
        bucketed_request(contract, "adapt_and_score", bad)
    two = H.random_request(world, np.random.default_rng(12), 2, 3, 4)  # two users: the dynamic signature
    assert bucketed_request(contract, "adapt_and_score", two)[0] == "adapt_and_score"
    with pytest.raises(RequestError, match="limit of 16"):
        bucketed_request(contract, "adapt", {k: np.tile(v, (1, 2)) if v.ndim == 2 else v
                                             for k, v in support.items()})
    older = replace(contract, static_signatures=())  # an export without them (or made before them)
    assert bucketed_request(older, "adapt_and_score", request)[0] == "adapt_and_score"
    assert load_contract(saved).from_dict({**contract.to_dict(), "static_signatures": []}).static_signatures == ()


def test_the_onnx_client_remembers_user_field_encodings_and_still_refuses_bad_values(served):
    """OnnxRecommender encodes a single-valued user field's raw value once and then looks it up: the
    answers are the same, what it remembers is the transform's own index, and a bad value is still
    refused with the field's message."""
    world, _, _, _, onnx = served
    request = H.random_request(world, np.random.default_rng(6), 3, 5, 4)
    for _, _, seen in onnx._fields:
        seen.clear()
    request["user_occupation"][0] = "no such occupation"  # unknown: encodes to 0, not remembered
    first = onnx("adapt_and_score", request)["scores"]
    assert sum(len(seen) for _, _, seen in onnx._fields) >= 3
    np.testing.assert_array_equal(onnx("adapt_and_score", request)["scores"], first)
    for _, transform, seen in onnx._fields:
        for (_, value), index in seen.items():
            assert index != 0 and transform.numpy(np.array([value], dtype=object))[0] == index, value
    with pytest.raises(RequestError, match="user_age must hold numbers"):
        onnx("adapt_and_score", {**request, "user_age": np.array(["31", "abc", "40"], dtype=object)})
    remembered = {value for _, _, seen in onnx._fields for _, value in seen}
    assert "abc" not in remembered and "no such occupation" not in remembered
