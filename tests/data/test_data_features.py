"""Feature encoding: vocabularies, out-of-vocabulary handling, buckets and serialisation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tfmetarec.data import DataFormatError, FeatureEncoder, FeatureSpec, InteractionData, make_synthetic


def tiny() -> InteractionData:
    users = pd.DataFrame(
        {
            "user": [1, 2, 3],
            "gender": ["M", "F", "F"],
            "age": [17, 25, 60],
            "occupation": ["writer", "artist", "pilot"],
            "zip": ["85711", "T8H1N", "10001"],
        }
    )
    items = pd.DataFrame(
        {
            "item": [10, 20, 30],
            "title": ["A", "B", "C"],
            "year": pd.array([1990, None, 2003], dtype="Int64"),
            "genres": [["Drama"], ["Comedy", "Drama"], ["Horror"]],
        }
    )
    ratings = pd.DataFrame(
        {"user": [1, 2, 3, 3], "item": [10, 20, 30, 10], "rating": [4, 3, 5, 1], "timestamp": [1, 2, 3, 4]}
    )
    return InteractionData("tiny", ratings, users, items)


def test_unseen_users_and_items_get_id_zero_but_features() -> None:
    data = tiny()
    enc = FeatureEncoder().fit(data, train_users=[1, 2], train_items=[10, 20])
    out = enc.transform(data)
    spec = out.spec
    assert [f.name for f in spec.user_fields] == ["gender", "age", "occupation", "zip"]
    assert [(f.name, f.kind) for f in spec.item_fields] == [("year", "categorical"), ("genres", "list")]
    assert spec.num_users == 3 and spec.num_items == 3  # two known IDs + OOV
    assert enc.vocabulary("item", "genres") == ["Comedy", "Drama"]  # Horror only occurs on an unseen item
    assert out.user_ids.tolist() == [1, 2, 0]
    assert out.user_index.tolist() == [1, 2, 3]
    # the item table: row 0 unknown, the training items in vocabulary order, then the new item
    assert out.item_raw_ids.tolist() == [-1, 10, 20, 30]
    assert out.item_rows([30, 10]).tolist() == [3, 1] and out.item_vocab_ids([30, 10]).tolist() == [0, 1]
    # user 3: gender F is known, age 60 -> bucket 7, occupation "pilot" unseen -> 0, zip "10" unseen -> 0
    uf = out.user_fields
    assert uf[2, 0] == uf[1, 0] != 0
    assert uf[2].tolist()[1:] == [7, 0, 0]
    assert uf[0, 2] != 0
    assert uf[1, 3] == 0  # "T8" is not a numeric prefix
    assert uf.shape == (3, 4) and uf.dtype == np.int32
    assert all(uf[:, j].max() < f.vocab_size for j, f in enumerate(spec.user_fields))
    # items: [year bucket, genres (width 2)]; item 30 has no known genre and its year 2003 is
    # clipped into the newest training bucket; item 20 has no year
    assert spec.item_fields[1].width == 2
    assert out.item_table.tolist() == [[0, 0, 0], [1, 2, 0], [0, 1, 2], [1, 0, 0]]
    assert out.item_table.dtype == np.int32
    rows = out.ratings
    assert rows["user_row"].dtype == np.int32 and rows["item_row"].dtype == np.int32
    assert (out.user_index[rows["user_row"]] == rows["user"]).all()
    assert (out.item_raw_ids[rows["item_row"]] == rows["item"]).all()
    with pytest.raises(ValueError, match="99"):
        out.item_rows([10, 99])


def test_year_buckets_span_training_years() -> None:
    data = make_synthetic(num_users=60, num_items=80, seed=2)
    old = data.items.loc[data.items["year"] < 1998, "item"]
    enc = FeatureEncoder(year_bucket_size=5).fit(data, train_items=old)
    out = enc.transform(data)
    years = data.items.set_index("item").loc[out.item_raw_ids[1:], "year"].to_numpy(dtype=int)
    buckets = out.item_table[1:, 0]
    assert buckets.min() >= 1 and buckets.max() == out.spec.item_fields[0].vocab_size - 1
    assert np.all(np.diff(buckets[np.argsort(years, kind="stable")]) >= 0)  # ordered by year
    assert len(set(buckets[years >= 1998])) == 1  # new releases share the newest bucket


def test_round_trip_gives_identical_transforms() -> None:
    data = make_synthetic(num_users=80, num_items=60, seed=5)
    enc = FeatureEncoder(year_bucket_size=3, zip_prefix_len=1).fit(
        data, train_users=range(1, 60), train_items=range(1, 40)
    )
    restored = FeatureEncoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    a, b = enc.transform(data), restored.transform(data)
    assert a.spec == b.spec
    assert FeatureSpec.from_dict(json.loads(json.dumps(a.spec.to_dict()))) == a.spec
    for name in ("user_ids", "user_fields", "item_table", "item_raw_ids"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    pd.testing.assert_frame_equal(a.ratings, b.ratings)
    old = {k: v for k, v in enc.to_dict().items() if k != "format"}
    with pytest.raises(ValueError, match="format 1.*one vocabulary per field"):
        FeatureEncoder.from_dict(old)


def test_no_demographics_and_custom_ratings() -> None:
    data = tiny()
    bare = InteractionData("bare", data.ratings, data.users[["user"]], data.items)
    out = FeatureEncoder().fit(bare).transform(bare, ratings=bare.ratings.iloc[:2])
    assert out.spec.user_fields == () and out.user_fields.shape == (3, 0)
    assert len(out.ratings) == 2
    stranger = bare.ratings.assign(user=99)
    with pytest.raises(ValueError, match="99"):
        FeatureEncoder().fit(bare).transform(bare, ratings=stranger)
    with pytest.raises(RuntimeError):
        FeatureEncoder().transform(bare)


def with_lists() -> InteractionData:
    base = tiny()
    items = base.items.assign(
        directors=[["Nolan"], ["Nolan", "Bigelow"], None],
        cast=[("X",), (), ("Y", "X")],
        url=["a", "b", "c"],  # a plain string column is not content unless declared
    )
    return InteractionData("tiny", base.ratings, base.users, items)


def test_list_columns_become_list_fields_learned_on_training_items() -> None:
    data = with_lists()
    assert [f.name for f in data.fields if f.side == "item"] == ["year", "genres", "directors", "cast"]
    enc = FeatureEncoder().fit(data, train_items=[10, 20])
    assert enc.vocabulary("item", "directors") == ["Bigelow", "Nolan"]
    assert enc.vocabulary("item", "cast") == ["X"]
    table = enc.transform(data).item_table
    # columns: year, genres x2, directors x2 (longest training row), cast x1
    assert table.shape == (4, 6)
    np.testing.assert_array_equal(table[1:, 3:], [[2, 0, 1], [2, 1, 0], [0, 0, 1]])  # "Y" unseen: dropped
    assert table[3, 1:3].sum() == 0  # Horror was never a training genre

    rare = FeatureEncoder(min_tag_items=2).fit(data)
    assert rare.vocabulary("item", "directors") == ["Nolan"] and rare.vocabulary("item", "cast") == ["X"]
    assert rare.vocabulary("item", "genres") == ["Comedy", "Drama", "Horror"]  # genres keep every value

    again = FeatureEncoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    np.testing.assert_array_equal(again.transform(data).item_table, table)
    with pytest.raises(ValueError, match="min_tag_items"):
        FeatureEncoder(min_tag_items=0)


def test_declared_fields_categorical_items_widths_and_errors() -> None:
    from tfmetarec.data import Field

    base = with_lists()
    items = base.items.assign(rate=["PG", "R", "PG"])
    fields = (Field("gender", "user"), Field("rate", "item"),
              Field("cast", "item", "list", max_values=1), Field("genres", "item", "list"))
    data = InteractionData("tiny", base.ratings, base.users, items, fields=fields)
    out = FeatureEncoder().fit(data).transform(data)
    assert [(f.name, f.kind, f.vocab_size, f.width) for f in out.spec.item_fields] == [
        ("rate", "categorical", 3, 1), ("cast", "list", 3, 1), ("genres", "list", 4, 2)]
    assert out.item_table[1:, 0].tolist() == [1, 2, 1]  # PG, R, PG
    assert out.item_table[3, 1] == 2  # ("Y", "X") keeps its first value only
    assert out.user_fields.shape == (3, 1)
    with pytest.raises(DataFormatError, match="reads column 'studio'"):
        InteractionData("tiny", base.ratings, base.users, items, fields=(Field("studio", "item"),))
    with pytest.raises(DataFormatError, match="list field 'rate'"):
        InteractionData("tiny", base.ratings, base.users, items, fields=(Field("rate", "item", "list"),))
    with pytest.raises(ValueError, match="side"):
        Field("x", "movie")


def test_encode_items_matches_the_table_for_new_content() -> None:
    data = with_lists()
    enc = FeatureEncoder().fit(data, train_items=[10, 20])
    table = enc.transform(data).item_table
    frame = data.items.set_index("item").loc[[30, 10]].reset_index()
    np.testing.assert_array_equal(enc.encode_items(frame), table[[3, 1]])
    ids, fields = enc.encode_users(pd.DataFrame({"user": [2, 99], "gender": ["F", "?"], "age": [30, None]}))
    assert ids.tolist() == [2, 0]
    assert fields[:, 0].tolist()[1] == 0 and fields[:, 1].tolist() == [3, 0]
    assert fields[:, 2:].tolist() == [[0, 0], [0, 0]]  # absent columns are missing


def test_a_content_model_learns_new_items_from_a_list_column() -> None:
    """Ratings set by the director alone: with the column, new items are scored well."""
    import tensorflow as tf

    from tfmetarec import models
    from tfmetarec.types import ITEM_ID, USER_FIELDS, USER_ID

    rng = np.random.default_rng(0)
    n_items, n_users = 40, 20
    directors = [["Good"] if i % 2 else ["Bad"] for i in range(n_items)]
    items = pd.DataFrame({"item": np.arange(n_items), "title": "t", "year": pd.array([2000] * n_items, dtype="Int64"),
                          "genres": [["Drama"]] * n_items, "directors": directors})
    users = pd.DataFrame({"user": np.arange(n_users)})
    pairs = [(u, i) for u in range(n_users) for i in rng.choice(n_items, 12, replace=False)]
    ratings = pd.DataFrame({"user": [u for u, _ in pairs], "item": [i for _, i in pairs], "timestamp": 0,
                            "rating": [4.5 if i % 2 else 1.5 for _, i in pairs]})
    ratings["rating"] += rng.normal(0, 0.1, len(ratings))
    data = InteractionData("directors", ratings, users, items)
    train_items, new_items = np.arange(30), np.arange(30, 40)

    def errors(data: InteractionData) -> float:
        enc = FeatureEncoder().fit(data, train_items=train_items)
        encoded = enc.transform(data)
        rows = encoded.ratings
        u, i = rows["user_row"].to_numpy(), rows["item_row"].to_numpy()
        feats = {USER_ID: encoded.user_ids[u], USER_FIELDS: encoded.user_fields[u], ITEM_ID: i}
        new = rows["item"].isin(new_items).to_numpy()
        part = lambda mask: {k: tf.constant(v[mask][None]) for k, v in feats.items()}  # noqa: E731
        train, test = part(~new), part(new)
        y_train = tf.constant(rows["rating"].to_numpy("float32")[~new][None])
        model = models.get("content").from_spec(encoded.spec, item_table=encoded.item_table, embedding_dim=4,
                                                hidden_units=(8,), seed=0)
        opt = tf.keras.optimizers.Adam(0.05)
        for _ in range(150):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(model(train) - y_train))
            opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return float(np.mean(np.abs(model(test).numpy()[0] - rows["rating"].to_numpy()[new])))

    with_column = errors(data)
    without = errors(InteractionData("directors", data.ratings, data.users, data.items.drop(columns="directors")))
    assert with_column < 0.35 < 1.2 < without, (with_column, without)
