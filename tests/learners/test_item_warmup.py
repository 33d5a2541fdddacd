"""Two-sided adaptation: new items warmed up from their first raters' support ratings."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tfmetarec import learners as learner_zoo
from tfmetarec import models as model_zoo
from tfmetarec.config import ExperimentConfig, ModelConfig
from tfmetarec.data import make_synthetic
from tfmetarec.evaluation.protocol import predict_scenarios, rows_features, scenario_offsets
from tfmetarec.learners import Pretrain
from tfmetarec.learners.item_warmup import item_offsets, item_residuals, new_item_rows, warm_up_items
from tfmetarec.tasks import build_tasks, eval_batches
from tfmetarec.tasks.episode import Rows
from tfmetarec.types import ITEM_ID, ITEM_OFFSET
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
    given = {**rows_features(encoded, rows), ITEM_OFFSET: np.full(len(rows.rating), 9.0, np.float32)}
    np.testing.assert_allclose(item_residuals(model, given, rows.rating), residual, atol=1e-5)  # no offset either way
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


def test_the_protocol_warms_new_items_from_supports_only_and_leaves_the_model_as_it_was(prepared):
    model = _model(prepared)
    learners = {"frozen": Pretrain(model)}
    scenarios = {k: prepared.scenarios[k] for k in ("user_cold", "item_cold")}
    plain = predict_scenarios(learners, prepared.encoded, scenarios, jit_compile=False)
    warm = predict_scenarios(learners, prepared.encoded, scenarios, jit_compile=False, item_warmup=3.0)
    assert not model.item_offsets.any()  # never changed: each row carries its scenario's offsets

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


def test_every_scenario_in_one_pass_scores_as_each_alone_with_its_warm_up_in_the_model(prepared):
    model, encoded = _model(prepared, seed=1), prepared.encoded
    learners = {"frozen": Pretrain(model)}
    names = ("warm", "user_cold", "item_cold", "user_item_cold")
    scenarios = {k: prepared.scenarios[k] for k in names}
    offsets = scenario_offsets(model, encoded, scenarios, item_warmup=3.0)
    pooled = predict_scenarios(learners, encoded, scenarios, item_warmup=3.0)
    assert list(pooled) == [("frozen", k) for k in names] and not model.item_offsets.any()  # the model unchanged
    warmed = 0
    for k in names:
        support = scenarios[k].support
        if new_item_rows(model, support.item_row).any():
            expected = item_offsets(model, rows_features(encoded, support), support.rating, 3.0)
            np.testing.assert_array_equal(offsets[k], expected)
            warmed += 1
        else:
            np.testing.assert_array_equal(offsets[k], model.item_offsets)
        model.set_item_offsets(offsets[k])  # the scenario alone, its warm-up held by the model
        alone = predict_scenarios(learners, encoded, {k: scenarios[k]})[("frozen", k)]
        model.set_item_offsets(np.zeros(model.num_table_items))
        assert len(pooled[("frozen", k)]) == len(alone) == len(scenarios[k])
        for (p, y, rows), (p0, y0, rows0) in zip(pooled[("frozen", k)], alone):
            np.testing.assert_allclose(p, p0, atol=1e-5)
            np.testing.assert_array_equal(y, y0)
            np.testing.assert_array_equal(rows, rows0)
    assert warmed >= 2
    # item tasks beside user tasks: a pass of their own, the same answers as alone
    items = build_tasks(encoded, prepared.split.partitions["item_cold"], task_key="item", query_size=4)
    mixed = predict_scenarios(learners, encoded, {"warm": scenarios["warm"], "items": items})
    for (p, _, _), (p0, _, _) in zip(mixed[("frozen", "items")],
                                     predict_scenarios(learners, encoded, {"items": items})[("frozen", "items")]):
        np.testing.assert_allclose(p, p0, atol=1e-5)


ZOO = ([("metaemb" if n == "metaemb_generator" else "melu", n) for n in learner_zoo.available()]
       + [(m, "maml") for m in model_zoo.available() if m != "melu"])


@pytest.mark.parametrize(("model_name", "learner_name"), ZOO)
def test_offsets_given_with_the_rows_score_as_the_models_own(prepared, model_name, learner_name):
    """Every learner and model reads a row's ``item_offset`` feature where it would read the model's
    offset: one evaluation pass can hold scenarios warmed up differently."""
    encoded = prepared.encoded
    cls = model_zoo.get(model_name)
    sizes = {"embedding_dim": 4, "seed": 0, **({"hidden_units": (8,)} if "hidden_units" in cls.settings() else {})}
    model = cls.from_spec(encoded.spec, item_table=encoded.item_table, item_raw_ids=encoded.item_raw_ids, **sizes)
    learner = learner_zoo.create(learner_name, model)
    item_tasks = learner.task_key == "item"
    if learner.needs_training_ratings:
        rated = prepared.split.meta_train
        learner.fit_statistics(encoded.item_vocab_ids(rated["item"]), rated["rating"].to_numpy())
    tasks = (build_tasks(encoded, prepared.split.partitions["item_cold"], task_key="item", query_size=4)
             if item_tasks else prepared.scenarios["item_cold"])
    episode, _ = next(eval_batches(encoded, tasks, batch_size=6))
    table = np.random.default_rng(3).normal(0.0, 0.5, model.num_table_items).astype(np.float32)
    table[0] = 0.0
    given = {k: ({**v, ITEM_OFFSET: table[v[ITEM_ID]]} if isinstance(v, dict) else v) for k, v in episode.items()}
    with_rows = learner(given).numpy()
    model.set_item_offsets(table)
    np.testing.assert_allclose(with_rows, learner(episode).numpy(), atol=1e-5)
    if not learner.needs_training_ratings:  # the rating statistics (item mean, popularity) read no model
        model.set_item_offsets(np.zeros_like(table))
        assert np.abs(learner(episode).numpy() - with_rows).max() > 1e-3  # the offsets do move the scores
