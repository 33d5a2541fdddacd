"""Two-sided adaptation: new items warmed up from their first raters' support ratings."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tfmetarec.config import ExperimentConfig, ModelConfig
from tfmetarec.data import make_synthetic
from tfmetarec.evaluation.protocol import evaluation_passes, predict_scenarios, rows_features
from tfmetarec.learners import Pretrain
from tfmetarec.learners.item_warmup import item_offsets, new_item_rows, warm_up_items
from tfmetarec.tasks.episode import Rows
from tfmetarec.workflows import build_model, prepare

CONFIG = ExperimentConfig(model=ModelConfig("melu", embedding_dim=4, hidden_units=(8,)))


@pytest.fixture(scope="module")
def prepared():
    return prepare(CONFIG, make_synthetic(num_users=200, num_items=120, seed=3))


def _model(prepared, seed: int = 0):
    model = build_model(CONFIG, prepared.encoded)
    rng = np.random.default_rng(seed)
    for v in model.trainable_variables:  # away from the initialisation, so residuals differ by item
        v.assign(v.numpy() + 0.3 * rng.standard_normal(v.shape).astype("float32"))
    return model


def _predict(model, encoded, rows: Rows) -> np.ndarray:
    return model({k: v[None] for k, v in rows_features(encoded, rows).items()}).numpy()[0]


def _warm(model, encoded, rows: Rows, **options) -> np.ndarray:
    return warm_up_items(model, rows_features(encoded, rows), rows.rating, **options)


def test_a_new_item_moves_by_the_shrunk_mean_residual_of_its_support_ratings(prepared):
    model, encoded = _model(prepared), prepared.encoded
    parts = [prepared.scenarios[s].support for s in ("warm", "item_cold")]  # trained items, then new ones
    rows = Rows.from_groups([(p.user_row, p.item_row, p.rating) for p in parts])
    before = _predict(model, encoded, rows)
    offsets = _warm(model, encoded, rows, shrinkage=2.0)

    new = rows.item_row >= model.num_items
    assert new.any() and (~new).any()
    residual = rows.rating - before
    expected = np.zeros(model.num_table_items)
    for item in np.unique(rows.item_row[new]):
        mine = rows.item_row == item
        expected[item] = residual[mine].sum() / (mine.sum() + 2.0)
    np.testing.assert_allclose(offsets, expected, atol=1e-5)  # trained and unrated items: 0
    np.testing.assert_allclose(model.item_offsets, expected, atol=1e-5)
    np.testing.assert_allclose(_predict(model, encoded, rows), before + expected[rows.item_row], atol=1e-5)
    # warming again from the same ratings replaces the offsets, it does not add to them
    np.testing.assert_allclose(_warm(model, encoded, rows, shrinkage=2.0), expected, atol=1e-5)
    # every item, trained ones included, when asked
    everything = _warm(model, encoded, rows, shrinkage=2.0, new_items_only=False)
    assert everything[rows.item_row[~new]].any()


def test_bad_shrinkage_and_bad_offsets_are_refused_and_nothing_changes(prepared):
    model, encoded = _model(prepared), prepared.encoded
    rows = prepared.scenarios["item_cold"].support
    for shrinkage in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="shrinkage must be a finite number >= 0"):
            _warm(model, encoded, rows, shrinkage=shrinkage)
    outside = dataclasses.replace(rows, item_row=np.full_like(rows.item_row, model.num_table_items))
    with pytest.raises(ValueError, match="outside the model's item table"):
        _warm(model, encoded, outside)
    bad = np.zeros(model.num_table_items)
    bad[3] = np.nan
    with pytest.raises(ValueError, match=r"item offsets must be finite; rows \[3\]"):
        model.set_item_offsets(bad)
    with pytest.raises(ValueError, match="one value per item table row"):
        model.set_item_offsets(np.zeros(2))
    assert not model.item_offsets.any()
    added = model.add_items(encoded.item_table[1:3])
    assert model.item_offsets.shape == (model.num_table_items,) and not model.item_offsets[added].any()


def test_the_protocol_warms_new_items_from_supports_only_and_restores_the_model(prepared):
    model = _model(prepared)
    learners = {"frozen": Pretrain(model)}
    scenarios = {k: prepared.scenarios[k] for k in ("user_cold", "item_cold")}
    plain = predict_scenarios(learners, prepared.encoded, scenarios, jit_compile=False)
    warm = predict_scenarios(learners, prepared.encoded, scenarios, jit_compile=False, item_warmup=3.0)
    assert not model.item_offsets.any()  # restored after each scenario

    def flat(results):
        return np.concatenate([p for p, _, _ in results])

    # only items new to the model move: in user-cold, the trained items' scores stay (its supports may
    # rate the split's held-out pseudo-new items, which are warmed up too)
    rows = np.concatenate([r for _, _, r in plain[("frozen", "user_cold")]])
    trained = rows < model.num_items
    assert trained.mean() > 0.5
    np.testing.assert_array_equal(flat(warm[("frozen", "user_cold")])[trained],
                                  flat(plain[("frozen", "user_cold")])[trained])
    moved = flat(warm[("frozen", "item_cold")]) - flat(plain[("frozen", "item_cold")])
    query_rows = np.concatenate([r for _, _, r in plain[("frozen", "item_cold")]])
    assert (query_rows >= model.num_items).all() and (np.abs(moved) > 1e-4).mean() > 0.5

    # the query's ratings are never read: other query ratings, the same predictions
    tasks = scenarios["item_cold"]
    shuffled = dataclasses.replace(tasks, query=dataclasses.replace(tasks.query, rating=tasks.query.rating[::-1].copy()))
    again = predict_scenarios(learners, prepared.encoded, {"item_cold": shuffled}, jit_compile=False, item_warmup=3.0)
    np.testing.assert_allclose(flat(again[("frozen", "item_cold")]), flat(warm[("frozen", "item_cold")]), atol=1e-6)


def test_scenarios_share_a_pass_unless_their_supports_warm_up_new_items(prepared):
    model, encoded = _model(prepared, seed=1), prepared.encoded
    learners = {"frozen": Pretrain(model)}
    names = ("warm", "user_cold", "item_cold", "user_item_cold")
    scenarios = {k: prepared.scenarios[k] for k in names}
    alone = {k: predict_scenarios(learners, encoded, {k: scenarios[k]})[("frozen", k)] for k in names}
    assert evaluation_passes(model, encoded, scenarios) == [(list(names), None)]  # no warm-up: one pass
    pooled = predict_scenarios(learners, encoded, scenarios)
    assert list(pooled) == [("frozen", k) for k in names]
    for k in names:  # the same predictions, task by task, whichever tasks share their batches
        assert len(pooled[("frozen", k)]) == len(scenarios[k])
        for (p, y, rows), (p0, y0, rows0) in zip(pooled[("frozen", k)], alone[k]):
            np.testing.assert_allclose(p, p0, atol=1e-5)
            np.testing.assert_array_equal(y, y0)
            np.testing.assert_array_equal(rows, rows0)

    # with warm-up, a scenario whose supports rate new items runs alone with its own offsets
    plain = {"plain": dataclasses.replace(scenarios["warm"], support=_known_only(model, scenarios["warm"].support))}
    passes = evaluation_passes(model, encoded, {**scenarios, **plain}, item_warmup=3.0)
    warmed = [k for k in names if new_item_rows(model, scenarios[k].support.item_row).any()]
    assert warmed and [p for p, _ in passes] == [[k] for k in warmed] + [["plain"]] and passes[-1][1] is None
    for (name,), offsets in passes[:-1]:
        support = scenarios[name].support
        expected = item_offsets(model, rows_features(encoded, support), support.rating, 3.0)
        np.testing.assert_array_equal(offsets, expected)


def _known_only(model, rows: Rows) -> Rows:
    """``rows`` without the rows of items new to ``model``."""
    groups = []
    for t in range(len(rows.sizes())):
        u, i, r = rows.task(t)
        keep = ~new_item_rows(model, i)
        groups.append((u[keep], i[keep], r[keep]))
    return Rows.from_groups(groups)
