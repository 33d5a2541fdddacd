import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import random_episode, tiny_melu, tiny_metaemb
from tfmetarec.models import MeLU, get
from tfmetarec.models.base import MetaModel


def _query(seed=0):
    return {k: v for k, v in random_episode(seed)["query"].items() if k not in ("rating", "mask")}


def test_registry_resolves_and_rejects():
    assert get("melu") is MeLU
    with pytest.raises(ValueError, match="Unknown model"):
        get("nope")


def test_call_shapes_flat_and_task_batched():
    model = tiny_melu()
    q = _query()
    assert model(q).shape == (4, 5)
    flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in q.items()}
    np.testing.assert_allclose(model(flat).numpy().reshape(4, 5), model(q).numpy(), atol=1e-6)


def test_forward_with_task_tiled_params_matches_per_task_calls():
    model = tiny_melu(seed=3)
    q = _query(1)
    params = model.variable_values()
    # give each task its own (different) decision weights
    tiled = {
        n: tf.stack([params[n] * (1.0 + 0.1 * t) for t in range(4)])
        for n in model.param_groups()["decision"]
    }
    batched = model.forward({**params, **tiled}, q).numpy()
    for t in range(4):
        single = {n: v[t] for n, v in tiled.items()}
        one = {k: v[t] for k, v in q.items()}
        np.testing.assert_allclose(batched[t], model.forward({**params, **single}, one).numpy(), atol=1e-5)


@pytest.mark.parametrize("make", [tiny_melu, tiny_metaemb])
def test_a_user_given_once_per_task_scores_as_if_repeated_on_every_row(make):
    """``reads_one_user_row`` (MeLU and MetaEmb: ``DecisionStack.decide_sides``): user inputs
    ``[T, 1, ...]`` for items ``[T, N]`` give the scores (and gradients) of the same inputs
    repeated, with shared and per-task weights, under XLA too."""
    model = make(seed=5, use_ids=True)
    assert model.reads_one_user_row
    q = _query(2)
    once = {**q, "user_id": q["user_id"][:, :1], "user_fields": q["user_fields"][:, :1]}
    repeated = {**q, "user_id": np.repeat(once["user_id"], 5, 1), "user_fields": np.repeat(once["user_fields"], 5, 1)}
    params = model.variable_values()
    decision = model.param_groups()["decision"]
    per_task = {**params, **{n: tf.stack([params[n] * (1.0 + 0.2 * t) for t in range(4)]) for n in decision}}
    one_task = {n: v[:1] if n in decision else v for n, v in per_task.items()}  # a static one-task kernel
    for weights, tasks in ((params, 4), (per_task, 4), (one_task, 1)):
        cut = {k: v[:tasks] for k, v in once.items()}, {k: v[:tasks] for k, v in repeated.items()}
        for run in (model.forward, tf.function(model.forward, jit_compile=True)):
            with tf.GradientTape(persistent=True) as tape:
                tape.watch(weights)
                got, expected = run(weights, cut[0]), run(weights, cut[1])
            np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-5)
            kernel = weights["decision_0_kernel"]
            np.testing.assert_allclose(tape.gradient(got, kernel).numpy(), tape.gradient(expected, kernel).numpy(),
                                       atol=1e-4)
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError)):  # two users for one task's 5 rows
        model.forward(params, {**q, "user_fields": q["user_fields"][:, :2]})


def test_serialisation_round_trip(tmp_path):
    model = tiny_melu(seed=7, use_ids=True, num_users=5, num_items=5)
    q = _query()
    clone = MeLU.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    path = tmp_path / "melu.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert isinstance(reloaded, MetaModel)
    np.testing.assert_array_equal(reloaded(q).numpy(), model(q).numpy())


def test_param_groups_and_errors():
    model = tiny_melu()
    groups = model.param_groups()
    assert set(groups["decision"]) | set(groups["embeddings"]) == set(groups["all"])
    assert groups["head"] == ("decision_2_kernel", "decision_2_bias")
    with pytest.raises(ValueError, match="no parameter group"):
        model.resolve_params("encoder")
    with pytest.raises(ValueError, match="Unknown parameters"):
        model.resolve_params(["decision_0_kernel", "missing"])
    with pytest.raises(KeyError, match="missing"):
        model({"user_fields": _query()["user_fields"]})


def test_user_state_hooks_reproduce_forward():
    model = tiny_melu(seed=5, use_ids=True, num_users=5, num_items=5)
    q = _query(2)
    params = model.variable_values()
    users = model.user_representation(params, q)  # [T, N, D]: constant within a task here only by construction
    assert users.shape[-1] == model.user_state_dim
    for t in range(4):
        one = {k: v[t : t + 1, :1] for k, v in q.items()}
        state = model.user_representation(params, one)[:, 0]
        np.testing.assert_allclose(
            model.forward_with_user_state(params, state, one).numpy(), model.forward(params, one).numpy(), atol=1e-6
        )


def test_one_embedding_per_field_and_each_field_moves_the_score():
    """MeLU is MeLU: a table per user and item field, and changing one field alone
    (a user's occupation, an item's genres) changes the score."""
    from helpers import ITEM_FIELDS, USER_FIELDS

    model = tiny_melu(seed=2)
    names = set(model.parameters())
    assert {f"user_{f.name}_embedding" for f in USER_FIELDS} | {f"item_{f.name}_embedding" for f in ITEM_FIELDS} <= names
    assert model.user_state_dim == 4 * len(USER_FIELDS) and model.item_dim == 4 * len(ITEM_FIELDS)
    q = _query(3)
    q["item_fields"] = model.item_table[q["item_id"]]
    base = model(q).numpy()
    np.testing.assert_allclose(base, model({k: v for k, v in q.items() if k != "item_fields"}).numpy(), rtol=1e-6)
    for key, column, value in (("user_fields", 2, 21), ("item_fields", 0, 5), ("item_fields", 1, 18)):
        changed = {k: v.copy() for k, v in q.items()}
        changed[key][..., column] = value
        moved = np.abs(model(changed).numpy() - base)
        differs = q[key][..., column] != value
        assert differs.any() and np.all(moved[differs] > 1e-7), (key, column)
        np.testing.assert_allclose(moved[~differs], 0.0, atol=1e-7)


def test_list_fields_pool_over_their_values_only():
    """A list field's vector is the mean of its values' rows: padding adds nothing,
    and the order of the values does not matter."""
    from tfmetarec.models.fields import FieldEmbeddings

    model = tiny_melu(seed=4)
    emb: FieldEmbeddings = model.item_embeddings
    params = model.variable_values()
    table = params["item_genres_embedding"].numpy()
    rows = np.array([[3, 2, 7, 0, 0], [3, 7, 2, 0, 0], [3, 7, 0, 0, 0], [3, 0, 0, 0, 0]], "int32")
    genres = emb.vectors(params, tf.constant(rows))[1].numpy()
    np.testing.assert_allclose(genres[0], table[[2, 7]].mean(0), rtol=1e-6)
    np.testing.assert_allclose(genres[1], genres[0], rtol=1e-6)
    np.testing.assert_allclose(genres[2], table[7], rtol=1e-6)
    np.testing.assert_allclose(genres[3], 0.0)  # no genres at all: a zero vector


def test_one_task_known_while_tracing_multiplies_plain_matrices_with_the_same_values_and_gradients():
    """F.dense: a per-task kernel whose task axis is statically 1 (a one-user serving graph) runs a
    plain MatMul instead of a BatchMatMul, with the batched path's values and gradients."""
    from tfmetarec.models import functional as F

    rng = np.random.default_rng(0)
    x, kernel, bias = (tf.constant(rng.normal(size=s).astype("float32")) for s in ((1, 5, 3), (1, 3, 4), (1, 4)))

    def batched(x, kernel, bias):  # the task axis unknown while tracing: the batched path
        return F.dense(x, kernel, bias, "relu")

    graphs = {}
    for name, spec in (("plain", [1, None, None]), ("batched", [None, None, None])):
        fn = tf.function(lambda x, k, b: tf.gradients(tf.reduce_sum(batched(x, k, b) ** 2), [x, k, b]) + [batched(x, k, b)],
                         input_signature=[tf.TensorSpec([spec[0], None, 3]), tf.TensorSpec([spec[0], 3, 4]),
                                          tf.TensorSpec([spec[0], 4])])
        graphs[name] = (fn(x, kernel, bias), {op.type for op in fn.get_concrete_function().graph.get_operations()})
    for a, b in zip(graphs["plain"][0], graphs["batched"][0]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    assert "BatchMatMulV2" not in graphs["plain"][1] and "MatMul" in graphs["plain"][1]
    assert "BatchMatMulV2" in graphs["batched"][1]


def test_a_per_task_score_head_is_a_product_and_a_sum_with_the_matmuls_values_and_gradients():
    """F.dense: a per-task kernel with one output (``[T, in, 1]``, the score head) multiplies and
    sums instead of a batched matrix-vector product where ops run one by one (not under XLA); values
    and gradients equal ``tf.matmul``'s."""
    from tfmetarec.models import functional as F

    rng = np.random.default_rng(1)
    x, kernel, bias = (tf.constant(rng.normal(size=s).astype("float32")) for s in ((4, 6, 3), (4, 3, 1), (4, 1)))
    spec = [tf.TensorSpec([None, None, 3]), tf.TensorSpec([None, 3, 1]), tf.TensorSpec([None, 1])]

    def grads(layer):
        return tf.function(lambda x, k, b: tf.gradients(tf.reduce_sum(tf.sin(layer(x, k, b))), [x, k, b])
                           + [layer(x, k, b)], input_signature=spec)

    head = grads(lambda x, k, b: F.dense(x, k, b))
    reference = grads(lambda x, k, b: tf.matmul(x, k) + b[:, None, :])
    for a, b in zip(head(x, kernel, bias), reference(x, kernel, bias), strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    ops = {op.type for op in head.get_concrete_function().graph.get_operations()}
    assert not ops & {"BatchMatMulV2", "BatchMatMulV3", "MatMul"}
    with pytest.raises(tf.errors.InvalidArgumentError):  # widths that disagree are refused, not broadcast
        F.dense(x, kernel[:, :1])
    compiled = tf.function(lambda x, k: F.dense(x, k), jit_compile=True, input_signature=spec[:2])
    compiled_ops = {op.type for op in compiled.get_concrete_function().graph.get_operations()}
    assert "BatchMatMulV2" in compiled_ops  # under XLA: the batched product
