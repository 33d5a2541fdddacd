"""Checks every registered rating model must pass, shared by tests/models/test_*.py."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from helpers import ITEM_FIELDS, ITEM_TABLE, NUM_ITEMS, NUM_USERS, USER_FIELDS, random_episode
from tfmetarec import models
from tfmetarec.learners.losses import task_mse
from tfmetarec.models.base import MetaModel
from tfmetarec.types import MASK, QUERY, RATING, SUPPORT, features_of

TASKS, QUERY_ROWS = 4, 5
# A duck-typed feature spec matching tests/helpers.random_episode.
SPEC = SimpleNamespace(user_fields=USER_FIELDS, item_fields=ITEM_FIELDS, num_users=NUM_USERS, num_items=NUM_ITEMS)


def small_model(name: str, seed: int = 0, **hparams: Any) -> MetaModel:
    """A registered model, built tiny from :data:`SPEC` (IDs on, so every ID table exists),
    holding the helpers' item table (training items and content-only items)."""
    cls = models.get(name)
    options = dict(embedding_dim=4, hidden_units=(8, 4), use_ids=True, seed=seed)
    options = {k: v for k, v in options.items() if k in cls.settings()}  # cf has no hidden layers
    options.update(hparams)
    model = cls.from_spec(SPEC, **options)
    model.set_item_table(ITEM_TABLE)
    return model


def query_features(seed: int = 0) -> dict[str, np.ndarray]:
    return features_of(random_episode(seed, tasks=TASKS, query=QUERY_ROWS)[QUERY])


def perturbed(model: MetaModel, seed: int = 0, scale: float = 0.3) -> MetaModel:
    """``model`` with every weight moved by noise (so zero-initialised biases matter)."""
    rng = np.random.default_rng(seed)
    for v in model.trainable_variables:
        v.assign(v.numpy() + scale * rng.standard_normal(v.shape).astype(v.dtype))
    return model


def per_task_params(model: MetaModel, names, tasks: int = TASKS) -> dict[str, tf.Tensor]:
    """The named parameters tiled over tasks, each task's copy scaled differently."""
    params = model.variable_values()
    return {n: tf.stack([params[n] * (1.0 + 0.2 * t) for t in range(tasks)]) for n in names}


def check_build_and_groups(model: MetaModel) -> None:
    assert model.built
    names = list(model.parameters())
    assert len(names) == len(set(names)) == len(model.trainable_variables)
    groups = model.param_groups()
    assert set(groups["all"]) == set(names)
    assert "decision" in groups, "the learners' default adapt='decision' must resolve"
    for group, members in groups.items():
        assert members and set(members) <= set(names), (group, members)
    assert model.num_table_items == len(ITEM_TABLE)


def check_call(model: MetaModel) -> None:
    q = query_features()
    out = model(q).numpy()
    assert out.shape == (TASKS, QUERY_ROWS) and np.all(np.isfinite(out))
    flat = {k: v.reshape((-1, *v.shape[2:])) for k, v in q.items()}
    np.testing.assert_allclose(model(flat).numpy().reshape(TASKS, QUERY_ROWS), out, rtol=1e-5, atol=1e-5)


def check_task_batched_forward(model: MetaModel) -> None:
    """Tiled params give the shared result; per-task params give per-task results (every group)."""
    q = query_features(1)
    params = model.variable_values()
    shared = model.forward(params, q).numpy()
    every = model.param_groups()["all"]
    tiled = {n: tf.broadcast_to(params[n][None], (TASKS, *params[n].shape)) for n in every}
    np.testing.assert_allclose(model.forward({**params, **tiled}, q).numpy(), shared, rtol=1e-5, atol=1e-5)
    for group in ("decision", "all"):
        names = model.param_groups()[group]
        scaled = per_task_params(model, names)
        batched = model.forward({**params, **scaled}, q).numpy()
        for t in range(TASKS):
            single = {n: v[t] for n, v in scaled.items()}
            one = {k: v[t] for k, v in q.items()}
            np.testing.assert_allclose(batched[t], model.forward({**params, **single}, one).numpy(),
                                       rtol=1e-5, atol=1e-5, err_msg=f"group {group}, task {t}")


def check_config_round_trip(model: MetaModel) -> None:
    config = model.get_config()
    clone = type(model).from_config(config)
    assert clone.get_config() == config
    assert list(clone.parameters()) == list(model.parameters())
    clone.set_weights(model.get_weights())
    assert clone.num_table_items == 1  # the table is data, not config
    clone.set_item_table(model.item_table)
    clone.set_item_offsets(model.item_offsets)
    q = query_features(2)
    np.testing.assert_array_equal(clone(q).numpy(), model(q).numpy())


def check_keras_file_round_trip(model: MetaModel, folder: Path) -> None:
    q = query_features(3)
    path = Path(folder) / f"{model.name}.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert type(reloaded) is type(model)
    assert list(reloaded.parameters()) == list(model.parameters())
    np.testing.assert_array_equal(reloaded.item_table, model.item_table)  # saved with the weights
    np.testing.assert_array_equal(reloaded.item_offsets, model.item_offsets)
    np.testing.assert_array_equal(reloaded(q).numpy(), model(q).numpy())


def check_user_state_hooks(model: MetaModel) -> None:
    """When a model exposes a user state, scoring from its own user representation is ``forward``."""
    if model.user_state_dim is None:
        return
    q = query_features(4)
    params = model.variable_values()
    users = model.user_representation(params, q)
    assert users.shape[-1] == model.user_state_dim
    items = model.item_representation(params, q)
    assert items.shape[:2] == (TASKS, QUERY_ROWS)
    assert items.shape[-1] == model.item_dim
    for t in range(TASKS):
        one = {k: v[t : t + 1, :1] for k, v in q.items()}
        state = model.user_representation(params, one)[:, 0]
        np.testing.assert_allclose(model.forward_with_user_state(params, state, one).numpy(),
                                   model.forward(params, one).numpy(), rtol=1e-5, atol=1e-5)


def check_item_offsets(model: MetaModel) -> None:
    """Every score of an item moves by exactly its offset (rows outside the table: none), in
    ``forward``, ``forward_with_user_state`` and a dot-product model's search vectors; the
    model keeps random offsets for the checks that follow."""
    q = query_features(5)
    before = model(q).numpy()
    offsets = np.random.default_rng(0).normal(0.0, 1.0, model.num_table_items)
    model.set_item_offsets(offsets)
    assert model.item_offsets[0] == 0.0  # the unknown item never moves
    rows = q["item_id"]
    inside = (rows >= 0) & (rows < model.num_table_items)
    expected = np.where(inside, model.item_offsets[np.where(inside, rows, 0)], 0.0)
    np.testing.assert_allclose(model(q).numpy() - before, expected, rtol=1e-5, atol=1e-5)
    if model.dot_product_scores:
        params = model.variable_values()
        dot = np.sum(model.search_query(params, q).numpy() * model.search_item_vectors(params, q).numpy(), -1)
        np.testing.assert_allclose(dot + float(params["global_bias"]), model(q).numpy(), rtol=1e-5, atol=1e-5)


def check_model(model: MetaModel, folder: Path) -> None:
    """Everything above on one (small) model."""
    perturbed(model)
    check_item_offsets(model)
    check_build_and_groups(model)
    check_call(model)
    check_task_batched_forward(model)
    check_config_round_trip(model)
    check_keras_file_round_trip(model, folder)
    check_user_state_hooks(model)


def support_losses(model: MetaModel, support: dict, adapted: dict[str, tf.Tensor] | None = None) -> np.ndarray:
    """Per-task support MSE ``[T]`` under the model's params, optionally with adapted ones."""
    params = {**model.variable_values(), **(adapted or {})}
    pred = model.forward(params, features_of(support))
    return task_mse(pred, support[RATING], support[MASK]).numpy()


def check_maml_lowers_support_loss(model: MetaModel, adapt: str = "decision", steps: int = 3,
                                   lr: float = 0.05) -> None:
    """A few MAML inner steps on each task's support lower every task's support loss."""
    from tfmetarec.learners import MAML

    learner = MAML(model, inner_steps=steps, inner_lr=lr, adapt=adapt)
    episode = random_episode(seed=11, tasks=TASKS, support=6, query=QUERY_ROWS)
    before = support_losses(model, episode[SUPPORT])
    after = support_losses(model, episode[SUPPORT], learner.adapt(episode[SUPPORT]))
    assert np.all(after < before - 1e-4), (type(model).__name__, adapt, before, after)


def numpy_fields(weights: dict[str, np.ndarray], prefix: str, fields, indices: np.ndarray) -> np.ndarray:
    """Reference per-field embeddings in numpy: a categorical field's row, a list field's
    mean over its non-zero indices, side by side: ``[..., sum dims]``."""
    out, start = [], 0
    for f in fields:
        cols = indices[..., start:start + f.width]
        start += f.width
        table = weights[f"{prefix}{f.name}_embedding"]
        if f.kind == "categorical":
            out.append(table[cols[..., 0]])
        else:
            present = (cols > 0)[..., None]
            out.append((table[cols] * present).sum(-2) / np.maximum(present.sum(-2), 1))
    return np.concatenate(out, axis=-1)


def item_rows_of(features: dict) -> tuple[np.ndarray, np.ndarray]:
    """The helpers' item table content and ID-embedding index of every row."""
    ids = features["item_id"]
    return ITEM_TABLE[ids], np.where(ids < NUM_ITEMS, ids, 0)
