"""The item table a model holds: content gathered in the graph, items added by content
alone, raw IDs, and the checks on what goes in."""

import keras
import numpy as np
import pandas as pd
import pytest

from helpers import ITEM_TABLE, NUM_ITEMS, TABLE_ROWS
from model_checks import perturbed, query_features, small_model
from tfmetarec import models
from tfmetarec.data import FeatureEncoder, InteractionData


def _world():
    """Ten items with directors and genres; items 9 and 10 are new (never rated in training)."""
    items = pd.DataFrame({"item": np.arange(1, 11), "year": pd.array([1990 + i for i in range(10)], dtype="Int64"),
                          "genres": [["Drama"] if i % 2 else ["Comedy", "Drama"] for i in range(10)],
                          "directors": [[f"d{i % 3}"] for i in range(10)]})
    users = pd.DataFrame({"user": np.arange(1, 6), "gender": list("MFMFM")})
    ratings = pd.DataFrame({"user": np.repeat(np.arange(1, 6), 8), "item": np.tile(np.arange(1, 9), 5),
                            "rating": 3.0})
    return InteractionData("world", ratings, users, items)


@pytest.mark.parametrize("name", models.available())
def test_an_item_added_by_content_scores_like_the_same_item_present_at_training(name):
    data = _world()
    encoder = FeatureEncoder().fit(data, train_items=range(1, 9))
    encoded = encoder.transform(data)
    spec = encoded.spec
    assert encoded.num_table_items == 11 and spec.num_items == 9
    # a model that knew item 10 from the start (as a new item of the encoded data) ...
    cls = models.get(name)
    options = {"embedding_dim": 4, "seed": 0, **({"hidden_units": (4,)} if "hidden_units" in cls.settings() else {})}
    present = cls.from_spec(spec, item_table=encoded.item_table, item_raw_ids=encoded.item_raw_ids, **options)
    perturbed(present, seed=1)
    # ... and one that only had the training items, then got item 10 by its content
    added = cls.from_spec(spec, item_table=encoded.item_table[:9], item_raw_ids=encoded.item_raw_ids[:9], **options)
    added.set_weights(present.get_weights())
    frame = data.items[data.items.item == 10]
    rows = added.add_items(encoder.encode_items(frame), frame["item"].to_numpy())
    assert rows.tolist() == [9] and added.item_raw_ids[9] == 10
    feats = {"user_id": np.zeros((1, 2), "int32"), "user_fields": np.ones((1, 2, 1), "int32")}
    on_present = present({**feats, "item_id": np.array([[10, 1]], "int32")}).numpy()
    on_added = added({**feats, "item_id": np.array([[9, 1]], "int32")}).numpy()
    np.testing.assert_allclose(on_added, on_present, rtol=1e-6)
    # its content matters: with item 9's content instead, the score moves
    other = added({**feats, "item_id": np.array([[9, 1]], "int32"),
                   "item_fields": encoded.item_table[[9, 1]][None]}).numpy()
    assert abs(other[0, 0] - on_added[0, 0]) > 1e-6


def test_rows_outside_the_table_are_the_unknown_item_and_the_table_is_saved(tmp_path):
    model = perturbed(small_model("melu", seed=3), seed=4)
    q = query_features(1)
    outside = {**q, "item_id": np.full_like(q["item_id"], 1000)}
    unknown = {**q, "item_id": np.zeros_like(q["item_id"])}
    np.testing.assert_allclose(model(outside).numpy(), model(unknown).numpy(), rtol=1e-6)
    model.set_item_table(ITEM_TABLE, np.arange(100, 100 + TABLE_ROWS))
    assert model.item_raw_ids.tolist() == [-1, *range(101, 100 + TABLE_ROWS)]
    model.save(tmp_path / "m.keras")
    back = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(back.item_table, ITEM_TABLE)
    np.testing.assert_array_equal(back.item_raw_ids, model.item_raw_ids)


def test_bad_item_rows_are_refused_and_nothing_changes():
    model = small_model("cf", seed=0)
    before = model.item_table.copy()
    bad_genre = ITEM_TABLE[1:2].copy()
    bad_genre[0, 2] = 19  # genres has 19 indices (0..18)
    with pytest.raises(ValueError, match="row 0: field 'genres' holds .* outside its vocabulary \\[0, 19\\)"):
        model.add_items(bad_genre)
    with pytest.raises(ValueError, match=r"must be \[items, 5\]"):
        model.add_items(ITEM_TABLE[:, :3])
    with pytest.raises(ValueError, match="integer"):
        model.add_items(ITEM_TABLE[1:2].astype("float32"))
    model.set_item_table(ITEM_TABLE, np.arange(TABLE_ROWS))
    with pytest.raises(ValueError, match=r"Raw item IDs \[3\] would be in the item table twice"):
        model.add_items(ITEM_TABLE[1:2], np.array([3]))
    with pytest.raises(ValueError, match="has 3 rows.*need 5"):
        model.set_item_table(ITEM_TABLE[:3])  # fewer rows than the ID vocabulary
    np.testing.assert_array_equal(model.item_table[: len(before)], ITEM_TABLE[: len(before)])
    assert model.num_table_items == TABLE_ROWS and NUM_ITEMS < TABLE_ROWS
