"""Two-sided adaptation: a new item adapted from its first raters, as a user is from their ratings.

A learner adapts to a *user* from the user's support ratings. A *new* item (one the model
never trained on, scored from its content alone) is adapted here from the ratings its first
raters gave it: its offset is the shrunk mean residual of those ratings under the model,

    b_i = sum_r (rating_r - f(u_r, i)) / (n_i + shrinkage)

and the model adds ``b_i`` to every score of item ``i`` (:meth:`MetaModel.item_offset`). The
shrinkage is a pseudo-count toward 0 (no change): one rating moves a new item by a fraction
``1 / (1 + shrinkage)`` of its residual. The offsets live in the model, so adapted users,
exports and the vector searches of dot-product models all see them.

In the cold-start protocol the residuals come from the support rows of a scenario's tasks
(the new items' first raters) and never from a query row.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfmetarec.models.base import MetaModel
from tfmetarec.types import ITEM_ID, ITEM_OFFSET, Features

CHUNK = 4096
"""Ratings scored per model call while computing residuals."""


def new_item_rows(model: MetaModel, item_rows: np.ndarray) -> np.ndarray:
    """Which of ``item_rows`` (item table rows) are new to ``model``: outside its ID vocabulary."""
    return np.asarray(item_rows) >= model.num_items


def item_residuals(model: MetaModel, features: Features, ratings: np.ndarray) -> np.ndarray:
    """``rating - prediction`` of each flat rating row (``features`` ``[N, ...]`` with ``item_id``
    table rows) under ``model`` with its item offsets left out."""
    ratings = np.asarray(ratings, np.float32)
    out = np.zeros(len(ratings), np.float32)
    for lo in range(0, len(out), CHUNK):
        chunk = {k: tf.constant(np.asarray(v)[lo:lo + CHUNK][None]) for k, v in features.items()}
        chunk[ITEM_OFFSET] = tf.zeros(tf.shape(chunk[ITEM_ID]), tf.float32)  # no offset, the model's or given
        out[lo:lo + CHUNK] = ratings[lo:lo + CHUNK] - model(chunk).numpy()[0]
    return out


def item_offsets(model: MetaModel, features: Features, ratings: np.ndarray, shrinkage: float,
                 new_items_only: bool = True) -> np.ndarray:
    """Every table row's offset ``[rows]`` warmed from the flat rating rows ``features`` /
    ``ratings`` (0 for items without any; with ``new_items_only``, also 0 for the items the
    model trained on)."""
    if not np.isfinite(shrinkage) or shrinkage < 0:
        raise ValueError(f"item warm-up shrinkage must be a finite number >= 0, got {shrinkage}.")
    items = np.asarray(features[ITEM_ID]).astype(np.int64)
    ratings = np.asarray(ratings, np.float64)
    if items.ndim != 1 or ratings.shape != items.shape:
        raise ValueError(f"item warm-up takes flat rows: item_id {items.shape} and ratings {ratings.shape} must be "
                         "the same [N].")
    if not np.isfinite(ratings).all():
        raise ValueError(f"item warm-up ratings must be finite; row {int(np.flatnonzero(~np.isfinite(ratings))[0])} "
                         "is not.")
    size = model.num_table_items
    if len(items) and (items.min() < 0 or items.max() >= size):
        raise ValueError(f"Ratings name item rows outside the model's item table [0, {size}).")
    keep = (new_item_rows(model, items) if new_items_only else np.ones(len(items), bool)) & (items > 0)
    residual = item_residuals(model, {k: np.asarray(v)[keep] for k, v in features.items()}, ratings[keep])
    count = np.bincount(items[keep], minlength=size)
    total = np.bincount(items[keep], weights=residual, minlength=size)
    offsets = np.zeros(size, np.float64)
    rated = count > 0
    offsets[rated] = total[rated] / (count[rated] + shrinkage)
    return offsets


def warm_up_items(model: MetaModel, features: Features, ratings: np.ndarray, shrinkage: float = 3.0,
                  new_items_only: bool = True) -> np.ndarray:
    """Set the model's item offsets from flat rating rows (see the module) and return them. Call it
    again as more ratings of new items arrive: it replaces the offsets, it does not add to them."""
    offsets = item_offsets(model, features, ratings, shrinkage, new_items_only)
    model.set_item_offsets(offsets)
    return offsets


__all__ = ["item_offsets", "item_residuals", "new_item_rows", "warm_up_items"]
