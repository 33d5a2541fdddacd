"""Names and type aliases shared by every layer of the library.

A *feature batch* is a mapping from the keys below to tensors whose leading
axes are either ``[N]`` (a flat batch of (user, item) pairs) or ``[T, N]``
(``T`` tasks of ``N`` padded rows each).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tensorflow as tf

USER_ID = "user_id"  # int32 [...]: user ID vocabulary index, 0 = out of vocabulary
ITEM_ID = "item_id"  # int32 [...]: item ID vocabulary index, 0 = out of vocabulary
USER_CAT = "user_cat"  # int32 [..., F_user]: each user field's vocabulary index
ITEM_CAT = "item_cat"  # int32 [..., F_item]: each item field's vocabulary index
ITEM_MULTI = "item_multi"  # float32 [..., G]: multi-hot item content (genres)

RATING = "rating"  # float32 [T, N]: the label of each row
MASK = "mask"  # float32 [T, N]: 1 for a real row, 0 for padding
TASK_MASK = "task_mask"  # float32 [T]: 1 for a real task, 0 for a padding task
SUPPORT = "support"
QUERY = "query"

FEATURE_KEYS = (USER_ID, ITEM_ID, USER_CAT, ITEM_CAT, ITEM_MULTI)

Features = Mapping[str, tf.Tensor]
Params = Mapping[str, tf.Tensor]
Episode = Mapping[str, Any]
"""``{"support": {...features, rating, mask}, "query": {...}, "task_mask": [T]}``."""


def features_of(part: Mapping[str, Any]) -> dict[str, Any]:
    """The model inputs of a support or query part (drops rating and mask)."""
    return {k: part[k] for k in FEATURE_KEYS if k in part}
