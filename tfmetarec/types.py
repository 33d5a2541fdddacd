"""Names and small types shared by every layer of the library.

A *feature batch* is a mapping from the keys below to tensors whose leading
axes are either ``[N]`` (a flat batch of (user, item) pairs) or ``[T, N]``
(``T`` tasks of ``N`` padded rows each). It carries small integers only: the
item's content (genres, directors, ...) lives in the model's item table and is
gathered inside the graph.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import tensorflow as tf

USER_ID = "user_id"  # int32 [...]: user ID vocabulary index, 0 = out of vocabulary
ITEM_ID = "item_id"  # int32 [...]: item index = row of the model's item table, 0 = unknown item
USER_FIELDS = "user_fields"  # int32 [..., W_user]: the user fields' indices (see FieldSpec)
ITEM_FIELDS = "item_fields"  # int32 [..., W_item]: optional; item content given with the rows
# instead of gathered from the item table (an item the table does not hold)
ITEM_ID_HIDDEN = "item_id_hidden"  # float32 [...]: optional, training only; 1 where a row's item ID
# embedding is hidden (read as the unknown item's, ID dropout) while its content is kept
ITEM_OFFSET = "item_offset"  # float32 [...]: optional; each row's item offset given instead of read from the
# model's offsets (one evaluation pass over scenarios whose new items are warmed up differently); a state's
# history (update_mode="history") does not keep it: later updates re-adapt on the model's offsets
ITEM_REPRESENTATION = "item_representation"  # float32 [..., item_dim]: optional; the item side's output
# given instead of computed (a model that reads it says so with ``reads_item_representation``)

RATING = "rating"  # float32 [T, N]: the label of each row
MASK = "mask"  # float32 [T, N]: 1 for a real row, 0 for padding
TASK_MASK = "task_mask"  # float32 [T]: 1 for a real task, 0 for a padding task
SUPPORT = "support"
QUERY = "query"

EPISODE_SOURCE = "_tfmetarec_episode_source"
"""Attribute of a ``tf.data.Dataset`` made by ``EpisodeSampler.dataset()``: ``(sampler, start)``, so a
trainer given the dataset continues the sampler's stream instead of replaying the dataset."""

FEATURE_KEYS = (USER_ID, ITEM_ID, USER_FIELDS)
"""The inputs every episode part carries (``ITEM_FIELDS`` is optional)."""
OPTIONAL_FEATURE_KEYS = (ITEM_FIELDS, ITEM_ID_HIDDEN, ITEM_OFFSET)

CATEGORICAL = "categorical"
LIST = "list"
VECTOR = "vector"
FIELD_KINDS = (CATEGORICAL, LIST, VECTOR)

Features = Mapping[str, tf.Tensor]
Params = Mapping[str, tf.Tensor]
Episode = Mapping[str, Any]
"""``{"support": {...features, rating, mask}, "query": {...}, "task_mask": [T]}``."""


@dataclass(frozen=True)
class FieldSpec:
    """The encoded shape of one user or item field, which is what a model embeds.

    A *categorical* field (gender, occupation, release-year bucket, MPAA rate) is
    one column holding a vocabulary index, 0 meaning missing or unseen. A *list*
    field (genres, directors, cast, tags) is ``width`` columns of indices, padded
    with 0; unseen values are dropped. ``vocab_size`` counts index 0. A *vector*
    field (an item's text or image embedding) is one column saying whether the item
    has a vector (1) or not (0); the ``dim``-wide vectors themselves live in the
    model beside its item table.
    """

    name: str
    kind: str
    vocab_size: int
    width: int = 1
    dim: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FIELD_KINDS:
            raise ValueError(f"Field {self.name!r}: kind must be one of {FIELD_KINDS}, got {self.kind!r}.")
        if int(self.vocab_size) < 1 or int(self.width) < 1:
            raise ValueError(f"Field {self.name!r}: vocab_size and width must be >= 1, got "
                             f"{self.vocab_size} and {self.width}.")
        if self.kind in (CATEGORICAL, VECTOR) and int(self.width) != 1:
            raise ValueError(f"{self.kind.capitalize()} field {self.name!r} has width 1, got {self.width}.")
        if (self.kind == VECTOR) != (int(self.dim) > 0):
            raise ValueError(f"Field {self.name!r}: a vector field has a dimension >= 1 and no other kind has one "
                             f"(kind {self.kind!r}, dim {self.dim}).")

    def to_config(self) -> list:
        """``[name, kind, vocab_size, width]`` and, for a vector field, its ``dim`` (JSON-safe;
        what models keep in their config)."""
        out = [self.name, self.kind, int(self.vocab_size), int(self.width)]
        return [*out, int(self.dim)] if self.kind == VECTOR else out

    @classmethod
    def of(cls, value: FieldSpec | Sequence | Mapping) -> FieldSpec:
        """A FieldSpec from itself, ``[name, kind, vocab_size, width]`` or a dict of those."""
        if isinstance(value, FieldSpec):
            return value
        if isinstance(value, Mapping):
            return cls(str(value["name"]), str(value["kind"]), int(value["vocab_size"]), int(value.get("width", 1)),
                       int(value.get("dim", 0)))
        name, kind, vocab, *rest = value
        return cls(str(name), str(kind), int(vocab), int(rest[0]) if rest else 1, int(rest[1]) if len(rest) > 1 else 0)


def fields_width(fields: Sequence[FieldSpec]) -> int:
    """Columns of the encoded array holding ``fields`` side by side."""
    return sum(int(f.width) for f in fields)


def features_of(part: Mapping[str, Any]) -> dict[str, Any]:
    """The model inputs of a support or query part (drops rating and mask)."""
    return {k: part[k] for k in (*FEATURE_KEYS, *OPTIONAL_FEATURE_KEYS) if k in part}
