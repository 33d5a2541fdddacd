"""Every learner and every model exports: the serving graph and an ONNX graph (adaptation inside)
answer raw requests like the learner does eagerly, at one bucket (every bucket and signature of one
learner, saved and loaded, is tests/export/test_serving.py's); the gradient ops need their
lowerings."""

import numpy as np
import onnx
import pytest
import tensorflow as tf

import serving_helpers as H
from tfmetarec import learners, models
from tfmetarec.export import Buckets, ServingModule, bucketed_request, export_saved_model
from tfmetarec.export.saved_model import DTYPES
from tfmetarec.export.onnx import OnnxRecommender, export_onnx, quantize_onnx
from tfmetarec.export.onnx_ops import HANDLERS, LoweringError

ONE = Buckets(users=(1,), support=(8,), query=(8,))
GRADIENT_OPS = {"BroadcastGradientArgs", "ReluGrad", "DynamicStitch"}


@pytest.fixture(scope="module")
def world():
    return H.world()


def _check(world, learner, tmp_path, name):
    """The serving graph (the functions a SavedModel holds, traced in memory: saving and loading
    them is tests/export/test_serving.py's), its static one-user signature and the ONNX graph at one
    bucket answer raw requests as the learner does eagerly; a cached state scores as adapt_and_score does.
    The model holds
    item offsets (two-sided adaptation), which the exports carry."""
    learner.model.set_item_offsets(np.random.default_rng(7).normal(0.0, 0.5, learner.model.num_table_items))
    module = ServingModule(learner, world[2], H.BUCKETS, top_k=5)
    folder = export_onnx(learner, tmp_path / f"{name}-onnx", encoder=world[2], buckets=ONE,
                         signatures=("adapt_and_score",))
    client = OnnxRecommender(folder)
    for seed, (users, support, query) in enumerate([(3, 8, 6), (1, 2, 8), (2, 0, 3)]):
        request = H.random_request(world, np.random.default_rng(seed), users, support, query)
        eager = H.eager_scores(world, learner, request)
        served = module.adapt_and_score(_tensors(module, "adapt_and_score", request))["scores"]
        np.testing.assert_allclose(served.numpy(), eager, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(client("adapt_and_score", request)["scores"], eager, atol=1e-5, err_msg=name)
        if users == 1:  # the static one-user signature, its ratings padded by the client
            key, padded = bucketed_request(module.contract, "adapt_and_score", request)
            static = module.static_function(key)(_tensors(module, "adapt_and_score", padded))["scores"]
            np.testing.assert_allclose(static.numpy(), eager, atol=1e-5, err_msg=f"{name} {key}")
    # a cached state has the declared shapes at every support bucket and scores the same
    for support in (3, 16):
        request = H.random_request(world, np.random.default_rng(support), 2, support, 4)
        state = module.adapt(_tensors(module, "adapt", request))
        scored = module.score_with_state({**state, "user_id": tf.constant(request["user_id"]),
                                          "query_item_id": tf.constant(request["query_item_id"])})
        direct = module.adapt_and_score(_tensors(module, "adapt_and_score", request))["scores"]
        np.testing.assert_allclose(scored["scores"].numpy(), direct.numpy(), atol=1e-5, err_msg=name)
    return folder


def _tensors(module, signature, request):
    dtypes = module.contract.input_dtypes()
    return {k: tf.constant(v, dtype=DTYPES[dtypes[k]]) for k, v in request.items()
            if k in module.contract.inputs(signature)}


# FOMAML is MAML with a first-order meta-gradient: its served adaptation is MAML's inner loop, op for op.
USER_TASK_LEARNERS = [n for n in learners.available() if learners.get(n).task_key in (None, "user") and n != "fomaml"]


@pytest.mark.parametrize("name", USER_TASK_LEARNERS)
def test_every_learner_answers_raw_requests_like_it_does_eagerly(world, tmp_path, name):
    learner = H.trained(world, learner=name, perturb=0.05)
    _check(world, learner, tmp_path, name)
    if learner.gradient_based:  # the adaptation really is in the graph
        request = H.random_request(world, np.random.default_rng(9), 1, 8, 5, garbage=False)
        request["support_mask"][:] = 1.0
        empty = {**request, "support_mask": np.zeros_like(request["support_mask"])}
        assert np.abs(H.eager_scores(world, learner, request) - H.eager_scores(world, learner, empty)).max() > 1e-5


@pytest.mark.parametrize("name", [m for m in models.available() if m != "melu"])
def test_every_model_exports_with_its_maml_step(world, tmp_path, name):
    _check(world, H.trained(world, model=name, perturb=0.05), tmp_path, name)


def test_a_model_with_item_vectors_exports_them_in_its_item_table(tmp_path):
    """A vector field (items with and without a vector): the exports answer raw-ID requests as the
    learner does, so the vectors travel with the item table."""
    vectors = H.world(vectors=True)
    assert any(f.kind == "vector" for f in vectors[3].spec.item_fields)
    learner = H.trained(vectors, perturb=0.05)
    _check(vectors, learner, tmp_path, "maml-with-vectors")
    # and it takes online updates: a new rating moves the cached state's scores
    module = ServingModule(learner, vectors[2], H.BUCKETS, top_k=5)
    request = H.random_request(vectors, np.random.default_rng(4), 2, 6, 4, garbage=False)
    state = module.adapt(_tensors(module, "adapt", request))
    user = {"user_id": tf.constant(request["user_id"])}
    query = {**user, "query_item_id": tf.constant(request["query_item_id"])}
    new = {**user, "new_item_id": tf.constant(request["query_item_id"][:, :1]),
           "new_rating": tf.constant([[5.0], [1.0]]), "new_mask": tf.ones([2, 1])}
    updated = module.update_state({**state, **new})
    before = module.score_with_state({**state, **query})["scores"].numpy()
    after = module.score_with_state({**updated, **query})["scores"].numpy()
    assert np.isfinite(after).all() and np.abs(after - before).max() > 1e-4


def test_static_graphs_are_standard_onnx_and_need_the_gradient_lowerings(world, tmp_path):
    learner = H.trained(world, steps=0)
    folder = export_onnx(learner, tmp_path / "ok", encoder=world[2], buckets=ONE, signatures=("adapt_and_score",))
    model = onnx.load(str(folder / "adapt_and_score.t1.s8.onnx"))
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert not ops & (GRADIENT_OPS | {"SigmoidGrad", "TanhGrad", "BiasAddGrad", "SelectV2"})
    assert len(model.graph.node) < 600  # static shapes fold the gradient's shape arithmetic away
    assert GRADIENT_OPS - {"DynamicStitch", "BroadcastGradientArgs"} <= set(HANDLERS)
    for op in ("ReluGrad", "SelectV2"):
        with pytest.raises((LoweringError, ValueError), match=op if op == "ReluGrad" else "disagrees"):
            export_onnx(learner, tmp_path / op, encoder=world[2], buckets=ONE, signatures=("adapt_and_score",),
                        disabled_handlers=(op,))
        assert not list((tmp_path / op).glob("*.onnx")), "a failed export leaves no graph behind"
    # the concat gradient's offsets (ShapeN, ConcatOffset) depend on shapes only: at a bucket's
    # static shape they fold at conversion, so the CF graph no longer needs their lowerings
    cf = H.trained(world, model="cf", steps=0)
    export_onnx(cf, tmp_path / "cf", encoder=world[2], buckets=ONE, signatures=("adapt_and_score",),
                disabled_handlers=("ConcatOffset", "ShapeN"))


def test_a_failing_tf2onnx_optimiser_is_skipped_as_tf2onnx_would(world, tmp_path, monkeypatch):
    """The conversion runs without tf2onnx's graph copies first; when an optimiser fails there, it
    runs again with them, so the failing optimiser is skipped (tf2onnx's own behaviour)."""
    import os

    import tf2onnx.optimizer

    class Broken:
        graph_been_opt = False

        def optimize(self, graph, iteration):
            raise RuntimeError("a broken optimiser")

    monkeypatch.setitem(tf2onnx.optimizer._optimizers, "broken", Broken)
    learner = H.trained(world, steps=0)
    folder = export_onnx(learner, tmp_path / "x", encoder=world[2], buckets=ONE, signatures=("adapt_and_score",))
    request = H.random_request(world, np.random.default_rng(3), 1, 4, 5)
    np.testing.assert_allclose(OnnxRecommender(folder)("adapt_and_score", request)["scores"],
                               H.eager_scores(world, learner, request), atol=1e-5)
    assert "TF2ONNX_CATCH_ERRORS" not in os.environ  # set for the conversion only


def test_int8_copies_score_close_to_float(world, tmp_path):
    learner = H.trained(world, perturb=0.05)
    folder = export_onnx(learner, tmp_path / "f32", encoder=world[2], buckets=ONE, signatures=("adapt_and_score",))
    src = folder / "adapt_and_score.t1.s8.onnx"
    quantize_onnx(src, tmp_path / "int8.onnx")
    import onnxruntime as ort

    sample = {i.name: np.zeros([d if isinstance(d, int) else 3 for d in i.shape],
                               np.int32 if "int32" in i.type else np.float32)
              for i in ort.InferenceSession(str(src)).get_inputs()}
    full = ort.InferenceSession(str(src)).run(None, sample)[0]
    small = ort.InferenceSession(str(tmp_path / "int8.onnx")).run(None, sample)[0]
    assert np.abs(full - small).max() < 0.1


def test_a_learner_of_item_tasks_is_refused_with_the_reason(world, tmp_path):
    model = models.get("metaemb").from_spec(world[3].spec, item_table=world[3].item_table,
                                            item_raw_ids=world[3].item_raw_ids, item_vectors=world[3].item_vectors,
                                            embedding_dim=4, seed=0)
    with pytest.raises(ValueError, match="adapts item tasks.*cannot be exported"):
        export_saved_model(learners.create("metaemb_generator", model), tmp_path, "m", 1, encoder=world[2])
