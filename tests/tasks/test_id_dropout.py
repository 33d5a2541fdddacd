"""ID dropout (DropoutNet's idea): training episodes hide some users' and items' IDs, so a model with
ID embeddings learns to score the users and items whose IDs it never trained on."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfmetarec.tasks import EpisodeSampler
from tfmetarec.types import ITEM_ID, ITEM_ID_HIDDEN, MASK, QUERY, SUPPORT, USER_FIELDS, USER_ID


def _samplers(split, encoded, p, **kw):
    args = dict(batch_size=8, query_size=5, seed=2, **kw)
    return EpisodeSampler(encoded, split.meta_train, **args), EpisodeSampler(encoded, split.meta_train, id_dropout=p,
                                                                             **args)


def test_episodes_hide_ids_at_the_given_rate_and_keep_everything_else(small_synthetic):
    _, split, encoded = small_synthetic
    plain, dropped = _samplers(split, encoded, 0.5)
    assert plain.state()["fingerprint"] != dropped.state()["fingerprint"]  # a resumed run must not mix them
    hidden_rows, real_rows, hidden_users, users = 0, 0, 0, 0
    for index in range(30):
        a, b = plain.sample(index), dropped.sample(index)
        for key in (SUPPORT, QUERY):
            assert ITEM_ID_HIDDEN not in a[key]
            for name in (ITEM_ID, USER_FIELDS, MASK):  # the same tasks and rows, content kept
                np.testing.assert_array_equal(a[key][name], b[key][name])
            real = a[key][MASK] > 0
            hidden_rows += int((b[key][ITEM_ID_HIDDEN][real] > 0).sum())
            real_rows += int(real.sum())
            # a user's ID is hidden in the whole task (support and query alike) or nowhere
            gone = (b[key][USER_ID] == 0) & (a[key][USER_ID] != 0) & real
            kept = (b[key][USER_ID] == a[key][USER_ID]) | ~real
            assert (gone | kept).all()
        support_gone = ((b[SUPPORT][USER_ID] == 0) & (a[SUPPORT][USER_ID] != 0)).any(axis=1)
        query_gone = ((b[QUERY][USER_ID] == 0) & (a[QUERY][USER_ID] != 0)).any(axis=1)
        np.testing.assert_array_equal(support_gone, query_gone)
        hidden_users += int(support_gone.sum())
        users += int((a[SUPPORT][USER_ID] != 0).any(axis=1).sum())
    assert 0.4 < hidden_rows / real_rows < 0.6 and 0.3 < hidden_users / users < 0.7

    # each shard hides exactly its part of what the whole episode hides
    whole = dropped.sample(7)
    parts = [dropped.sample(7, shard=s, num_shards=2) for s in range(2)]
    for key in (SUPPORT, QUERY):
        for name in (ITEM_ID_HIDDEN, USER_ID):
            np.testing.assert_array_equal(np.concatenate([p[key][name] for p in parts]), whole[key][name])
    # the masks have their own generator: the tasks and rows of a group's later episodes are unchanged
    group_plain, group_dropped = plain.sample_group(4, 3), dropped.sample_group(4, 3)
    np.testing.assert_array_equal(group_plain[SUPPORT][ITEM_ID], group_dropped[SUPPORT][ITEM_ID])
    # item tasks: each task's item is hidden in all its rows, its raters row by row
    items = EpisodeSampler(encoded, split.meta_train, task_key="item", batch_size=8, query_size=5, seed=2,
                           id_dropout=0.5).sample(0)
    hidden = items[SUPPORT][ITEM_ID_HIDDEN][items[SUPPORT][MASK] > 0]
    per_task = [set(items[SUPPORT][ITEM_ID_HIDDEN][t][items[SUPPORT][MASK][t] > 0].tolist()) for t in range(8)]
    assert all(len(s) == 1 for s in per_task) and 0 < hidden.mean() < 1
    streamed = next(iter(dropped.dataset(start=3)))
    np.testing.assert_array_equal(streamed[QUERY][ITEM_ID_HIDDEN].numpy(), dropped.sample(3)[QUERY][ITEM_ID_HIDDEN])
    with pytest.raises(ValueError, match=r"id_dropout is a probability in \[0, 1\)"):
        EpisodeSampler(encoded, split.meta_train, id_dropout=1.0)


def test_a_hidden_item_reads_the_unknown_items_id_row_and_keeps_its_content(small_synthetic):
    from tfmetarec.config import ExperimentConfig, ModelConfig
    from tfmetarec.workflows import build_model

    _, _, encoded = small_synthetic
    model = build_model(ExperimentConfig(model=ModelConfig(embedding_dim=4, hidden_units=(8,), use_ids=True)), encoded)
    rows = tf.constant([[3, 4, 5]], tf.int32)
    hidden = tf.constant([[1.0, 0.0, 1.0]])
    np.testing.assert_array_equal(model.item_id_index({ITEM_ID: rows, ITEM_ID_HIDDEN: hidden}).numpy(), [[0, 4, 0]])
    np.testing.assert_array_equal(model.item_field_indices({ITEM_ID: rows, ITEM_ID_HIDDEN: hidden}).numpy(),
                                  model.item_field_indices({ITEM_ID: rows}).numpy())
    plain = build_model(ExperimentConfig(model=ModelConfig(embedding_dim=4)), encoded)
    assert model.embeds_ids and not plain.embeds_ids
    from tfmetarec.models.base import ID_WEIGHT

    assert all(ID_WEIGHT.search(n) for n in ("user_id_embedding", "cf_item_id_factors", "item_id_bias",
                                              "item_id_residual"))
    assert not any(ID_WEIGHT.search(n) for n in ("user_city_id_embedding", "item_genres_embedding"))


def test_training_with_id_dropout_trains_the_unknown_ids_rows_and_needs_id_embeddings():
    from tfmetarec.config import ExperimentConfig, ModelConfig, TrainConfig
    from tfmetarec.data import make_synthetic
    from tfmetarec.workflows import build_learner, build_model, fit_learner
    from tfmetarec.workflows.prepare import prepare

    data = make_synthetic(num_users=120, num_items=80, seed=4)

    def unknown_rows(id_dropout):
        config = ExperimentConfig(model=ModelConfig(embedding_dim=4, hidden_units=(8,), use_ids=True),
                                  train=TrainConfig(batch_size=8, jit_compile=False, select_every=0,
                                                    id_dropout=id_dropout))
        prepared = prepare(config, data)
        learner = build_learner(config, build_model(config, prepared.encoded), prepared)
        weights = {v.name.split("/")[-1].split(":")[0]: v for v in learner.model.variables}
        before = {k: weights[k].numpy()[0].copy() for k in ("user_id_embedding", "item_id_embedding")}
        fit_learner(learner, prepared, 5)
        return {k: np.abs(weights[k].numpy()[0] - v).max() for k, v in before.items()}

    # without dropout no training row has ID 0, so the unknown user's and item's rows never move
    assert unknown_rows(0.0) == {"user_id_embedding": 0.0, "item_id_embedding": 0.0}
    moved = unknown_rows(0.5)
    assert moved["user_id_embedding"] > 1e-4 and moved["item_id_embedding"] > 1e-4

    config = ExperimentConfig(model=ModelConfig(embedding_dim=4, hidden_units=(8,)),
                              train=TrainConfig(batch_size=8, jit_compile=False, select_every=0, id_dropout=0.5))
    prepared = prepare(config, data)
    with pytest.raises(ValueError, match="id_dropout hides ID embeddings, and this MeLU has none"):
        fit_learner(build_learner(config, build_model(config, prepared.encoded), prepared), prepared, 5)
    with pytest.raises(ValueError, match="train.id_dropout"):
        TrainConfig(id_dropout=1.0)
    from tfmetarec.cli import build_parser, config_from_args

    args = build_parser().parse_args(["train", "--id-dropout", "0.3", "--select-metric", "nDCG@3"])
    assert config_from_args(args).train.id_dropout == 0.3 and config_from_args(args).train.select_metric == "nDCG@3"
