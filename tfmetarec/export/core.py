"""What every runtime executes: the learner's adaptation, scoring and top-k on encoded,
padded tensors.

:class:`ServingCore` works on the model's own indices (user ID index, user field
indices, item table rows) at fixed, padded shapes. The SavedModel calls it after its
in-graph lookups, checks and padding; the ONNX export converts its functions at each
bucket's static shape; the ONNX client does the lookups, checks and padding itself.
Nothing here reads a raw ID.

A *state* is a dict of tensors with a leading user axis: the learner's adapted state
(adapted weights, prototype sums, ...) plus ``fingerprint`` (the exported model that
made it), ``version``, ``user_index`` and ``user_fields`` (the user's encoded
features, so scoring needs nothing but the state and the candidates), and
``rated_item`` / ``rated_mask`` (the most recent ``rated_capacity`` items the user
rated, which a recommendation leaves out). ``update`` advances a state with new ratings.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from tfmetarec.evaluation.retrieval import uses_vector_search
from tfmetarec.export.candidates import ITEMS_PER_ANCHOR, TaylorCandidates
from tfmetarec.export.contract import CANDIDATES, EXHAUSTIVE_UP_TO, candidate_count
from tfmetarec.export.names import STATE_FINGERPRINT, STATE_FORMAT, STATE_RATED_ITEM, STATE_RATED_MASK, STATE_USER_FIELDS, STATE_USER_ID, STATE_VERSION
from tfmetarec.learners.base import MetaLearner
from tfmetarec.learners.online import append_rows, fit_rows
from tfmetarec.types import ITEM_ID, ITEM_REPRESENTATION, MASK, RATING, USER_FIELDS, USER_ID, fields_width

OWN_KEYS = (STATE_FINGERPRINT, STATE_FORMAT, STATE_USER_ID, STATE_USER_FIELDS, STATE_RATED_ITEM, STATE_RATED_MASK)
SCORE_CHUNK = 16_384  # catalogue items scored per pass when the model does not factorise
PROBE_USERS, PROBE_SUPPORT = 32, 16  # made-up users whose gradients choose the candidate stage's directions


def sanitise(rating: tf.Tensor, mask: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Ratings with every padding row (mask 0) or non-finite value replaced by 0, as a true
    select, so nothing on a padded row can reach the arithmetic (NaN * 0 is NaN)."""
    mask = tf.cast(mask, tf.float32)
    keep = (mask > 0) & tf.math.is_finite(rating)
    return tf.where(keep, rating, tf.zeros_like(rating)), tf.where(keep, mask, tf.zeros_like(mask))


class ServingCore(tf.Module):
    """The learner behind every exported signature (see the module docstring).

    Args:
        learner: the trained learner; its model holds the item table.
        fingerprint: the contract's fingerprint, written into every state.
        top_k: how many items ``recommend`` returns per user.
        max_support: the largest support bucket (the keras-rs search depth is ``top_k``
            plus this, so excluding the rated items never runs short).
        candidates: items a two-stage ``recommend`` scores exactly, after a candidate stage
            (:class:`~tfmetarec.export.candidates.TaylorCandidates`) estimated the score of every
            item the user has not rated: a count, ``"auto"`` (:func:`~tfmetarec.export.contract.candidate_count`),
            or None: always score the whole catalogue (so does a catalogue too small to hold the
            candidates and the rated items besides).
        exhaustive_up_to: a catalogue of at most this many items is scored whole.
        anchors: the candidate stage's clusters (default: one per ``ITEMS_PER_ANCHOR`` items, 16 to 1,024).
        rating_range: ``(lowest, highest)`` rating: the made-up users of the export's own checks and of
            the candidate stage's probe (:meth:`made_up_support`) rate within it.

    ``search`` says how ``recommend`` ranks: ``"vector"`` (a dot-product model: keras-rs'
    search over its item vectors), ``"two-stage"`` or ``"exhaustive"``; ``search_note`` says
    why a large catalogue is still scored whole (a model whose item side adapts, or that does
    not read a given item representation). ``one_user_row`` says whether a user's inputs reach the
    model once per request rather than once per scored item (:attr:`MetaModel.reads_one_user_row`).
    """

    def __init__(self, learner: MetaLearner, fingerprint: int, top_k: int, max_support: int,
                 rated_capacity: int | None = None, candidates: int | str | None = CANDIDATES,
                 exhaustive_up_to: int = EXHAUSTIVE_UP_TO, anchors: int | None = None,
                 rating_range: tuple[float, float] = (1.0, 5.0)):
        super().__init__()
        self.rated_capacity = int(rated_capacity or max_support)
        self.rating_range = (float(rating_range[0]), float(rating_range[1]))
        self.learner = learner
        self.model = learner.model
        self.fingerprint = int(fingerprint)
        raw = self.model.item_raw_ids
        rows = np.flatnonzero(raw >= 0).astype(np.int32)
        if len(rows) == 0:
            raise ValueError("The model's item table names no item by a raw ID; nothing could be recommended.")
        # numpy, so each traced graph embeds them as constants (a captured tensor would become
        # an input of a converted ONNX graph)
        self.catalogue_rows = rows  # table rows of the items a recommendation may name
        self.catalogue_raw = raw[rows].astype(np.int64)
        self.row_position = np.full(len(raw), -1, np.int32)  # table row -> catalogue position, -1 outside it
        self.row_position[rows] = np.arange(len(rows), dtype=np.int32)
        self.top_k = int(min(top_k, len(rows)))
        self.one_user_row = False
        self.one_user_row = self._reads_one_user_row()  # the user's side computed once per request, not per item
        self.vector_search = uses_vector_search(learner)
        self.retrieval = None
        if self.vector_search:
            from keras_rs.layers import BruteForceRetrieval

            vectors = self.model.search_item_vectors(self.model.variable_values(), {ITEM_ID: rows})
            depth = int(min(self.top_k + max_support, len(rows)))
            self.retrieval = BruteForceRetrieval(candidate_embeddings=vectors, candidate_ids=np.arange(len(rows)),
                                                 k=depth, return_scores=True)
        self.search, self.search_note, self.candidates = ("vector" if self.vector_search else "exhaustive"), "", None
        if not self.vector_search and candidates is not None and len(rows) > exhaustive_up_to:
            self.candidate_count = candidate_count(candidates, len(rows))
            if self.candidate_count < self.top_k:
                raise ValueError(f"candidates={candidates} is fewer than top_k ({self.top_k}); choose at least "
                                 f"{self.top_k}.")
            self.search_note = self._item_side_changes()
            # the rated items (a state's, or a request's support) are never candidates: enough others must remain
            rated = max(self.rated_capacity, int(max_support))
            if not self.search_note and self.candidate_count + rated > len(rows):
                self.search_note = (f"{self.candidate_count} candidates plus the {rated} rated items a request may "
                                    f"leave out do not fit in the catalogue's {len(rows)} items.")
            if not self.search_note:
                count = anchors or int(np.clip(len(rows) // ITEMS_PER_ANCHOR, 16, 1024))
                reps = self._item_representations(rows)
                self.candidates = TaylorCandidates(reps, self.model.item_offsets[rows], count,
                                                   gradients=self.probe_gradients)
                self.search = "two-stage"

    def search_summary(self) -> dict:
        """How ``recommend`` ranks, for the contract."""
        out = {"kind": self.search, "catalogue": len(self.catalogue_rows)}
        if self.candidates is not None:
            out.update(candidates=self.candidate_count, anchors=self.candidates.anchors, block=self.candidates.block,
                       directions=self.candidates.rank, padding=round(self.candidates.padding, 4))
        if self.search_note:
            out["why_exhaustive"] = self.search_note
        return out

    # -- the candidate stage's requirements ----------------------------------------------------
    def _item_representations(self, rows: np.ndarray) -> np.ndarray:
        params = self.model.variable_values()
        return np.concatenate([self.model.item_representation(params, {ITEM_ID: tf.constant(rows[lo:lo + SCORE_CHUNK])})
                               .numpy() for lo in range(0, len(rows), SCORE_CHUNK)])

    def _item_side_changes(self) -> str:
        """Why scores cannot be estimated from fixed item representations ('' when they can): the
        model must read ``ITEM_REPRESENTATION``, and an adapted state must score the catalogue
        from the meta-learned item representations exactly as from the items themselves."""
        if not self.model.reads_item_representation:
            return f"{type(self.model).__name__} does not take a given item representation."
        rows = self.catalogue_rows[:64][None]
        support = {USER_ID: tf.zeros([1, 4], tf.int32), ITEM_ID: tf.constant(self.catalogue_rows[:4][None]),
                   USER_FIELDS: tf.zeros([1, 4, fields_width(self.model.user_field_specs)], tf.int32),
                   RATING: tf.ones([1, 4]), MASK: tf.ones([1, 4])}
        state = self.learner.adapt(support)
        features = {USER_ID: tf.zeros(rows.shape, tf.int32), ITEM_ID: tf.constant(rows),
                    USER_FIELDS: tf.zeros([*rows.shape, support[USER_FIELDS].shape[-1]], tf.int32)}
        exact = self.learner.score(state, features).numpy()
        given = self.learner.score(state, {**features, ITEM_REPRESENTATION: self._item_representations(rows[0])[None]})
        if not np.allclose(given.numpy(), exact, atol=1e-4, rtol=1e-4):
            return (f"{type(self.learner).__name__} changes the item side when it adapts "
                    f"({list(self.learner.adapted_parameters())}), so fixed item representations do not predict its scores.")
        return ""

    # -- pieces ------------------------------------------------------------------------------
    @staticmethod
    def rows_like(user_values: tf.Tensor, rows: tf.Tensor) -> tf.Tensor:
        """A per-user ``[T]`` or ``[T, W]`` value repeated over the ``N`` rows of ``rows [T, N]``."""
        shape = tf.shape(rows)
        if len(user_values.shape) == 1:
            return tf.broadcast_to(user_values[:, None], shape)
        return tf.broadcast_to(user_values[:, None, :], tf.concat([shape, tf.shape(user_values)[-1:]], 0))

    def features(self, state: Mapping[str, tf.Tensor], items: tf.Tensor, one_user_row: bool | None = None
                 ) -> dict[str, tf.Tensor]:
        """The model inputs of ``items [T, N]`` (table rows) for the users of ``state``: the user's
        inputs once per task (``[T, 1, ...]``) where the model reads them so (``one_user_row``,
        default :attr:`one_user_row`), else repeated on every row."""
        if self.one_user_row if one_user_row is None else one_user_row:
            return {USER_ID: state[STATE_USER_ID][:, None], ITEM_ID: items,
                    USER_FIELDS: state[STATE_USER_FIELDS][:, None]}
        return {USER_ID: self.rows_like(state[STATE_USER_ID], items), ITEM_ID: items,
                USER_FIELDS: self.rows_like(state[STATE_USER_FIELDS], items)}

    def learner_state(self, state: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {k: v for k, v in state.items() if k not in OWN_KEYS}

    # -- the work -------------------------------------------------------------------------------
    def adapt(self, user_index: tf.Tensor, user_fields: tf.Tensor, items: tf.Tensor, rating: tf.Tensor,
              mask: tf.Tensor) -> dict[str, tf.Tensor]:
        """The adapted state of ``T`` users from their support ``[T, S]``."""
        rating, mask = sanitise(rating, mask)
        support = {USER_ID: self.rows_like(user_index, items), ITEM_ID: items,
                   USER_FIELDS: self.rows_like(user_fields, items), RATING: rating, MASK: mask}
        state = self.learner.serving_state(self.learner.adapt(support))
        users = tf.shape(user_index)[0]
        state[STATE_FINGERPRINT] = tf.fill([users], tf.constant(self.fingerprint, tf.int64))
        state[STATE_FORMAT] = tf.fill([users], tf.constant(STATE_VERSION, tf.int32))
        state[STATE_USER_ID] = tf.cast(user_index, tf.int32)
        state[STATE_USER_FIELDS] = tf.cast(user_fields, tf.int32)
        rated = fit_rows({"item": tf.cast(items, tf.int32), "mask": mask}, self.rated_capacity)
        state[STATE_RATED_ITEM], state[STATE_RATED_MASK] = rated["item"], rated["mask"]
        return state

    def update(self, state: Mapping[str, tf.Tensor], items: tf.Tensor, rating: tf.Tensor, mask: tf.Tensor
               ) -> dict[str, tf.Tensor]:
        """The state after the ratings ``[T, S]`` of ``items`` arrive (padding: mask 0)."""
        rating, mask = sanitise(rating, mask)
        new = {USER_ID: self.rows_like(state[STATE_USER_ID], items), ITEM_ID: items,
               USER_FIELDS: self.rows_like(state[STATE_USER_FIELDS], items), RATING: rating, MASK: mask}
        out = self.learner.serving_state(self.learner.update(self.learner_state(state), new))
        rated = append_rows({"item": state[STATE_RATED_ITEM], "mask": state[STATE_RATED_MASK]},
                            {"item": tf.cast(items, tf.int32), "mask": mask}, self.rated_capacity)
        out.update({k: state[k] for k in (STATE_FINGERPRINT, STATE_FORMAT, STATE_USER_ID, STATE_USER_FIELDS)})
        out[STATE_RATED_ITEM], out[STATE_RATED_MASK] = rated["item"], rated["mask"]
        return out

    def recommend_state(self, state: Mapping[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        """:meth:`recommend` leaving out the items the state remembers as rated."""
        return self.recommend(state, state[STATE_RATED_ITEM], state[STATE_RATED_MASK])

    def score(self, state: Mapping[str, tf.Tensor], items: tf.Tensor) -> tf.Tensor:
        """Scores ``[T, Q]`` of the table rows ``items`` for the users of ``state``."""
        return self.learner.score(self.learner_state(state), self.features(state, items))

    def recommend(self, state: Mapping[str, tf.Tensor], rated: tf.Tensor, rated_mask: tf.Tensor
                  ) -> tuple[tf.Tensor, tf.Tensor]:
        """The top ``top_k`` raw item IDs and scores ``[T, K]`` over the catalogue, the
        items of ``rated [T, S]`` (table rows, where ``rated_mask`` is 1) left out."""
        users = tf.shape(rated)[0]
        size = len(self.catalogue_rows)
        row_position = tf.constant(self.row_position)
        rated = tf.cast(rated, tf.int32)
        inside = (rated >= 0) & (rated < len(self.row_position))
        rated_pos = tf.gather(row_position, tf.where(inside, rated, tf.zeros_like(rated)))
        is_rated = inside & (rated_pos >= 0) & (rated_mask > 0)
        rated_pos = tf.maximum(rated_pos, 0)
        neg = tf.constant(-np.inf, tf.float32)
        if self.retrieval is not None:
            params = {**self.model.variable_values(), **self.learner_state(state)}
            one = self.features(state, tf.zeros([users, 1], tf.int32))
            query = self.model.search_query(params, one)[:, 0]
            scores, positions = self.retrieval(query)
            scores = scores + self._global_bias(params)
            positions = tf.cast(positions, tf.int32)
        elif self.candidates is not None:  # rated items are left out of the candidates
            positions = self._shortlist(state, users, rated_pos, is_rated)
            scores = self.score(state, tf.gather(tf.constant(self.catalogue_rows), positions))
        else:
            chunks = []
            for lo in range(0, size, SCORE_CHUNK):
                rows = tf.constant(self.catalogue_rows[lo:lo + SCORE_CHUNK])
                items = tf.broadcast_to(rows[None, :], tf.stack([users, tf.shape(rows)[0]]))
                chunks.append(self.score(state, items))
            scores = tf.concat(chunks, axis=1) if len(chunks) > 1 else chunks[0]
            t = tf.broadcast_to(tf.range(users)[:, None], tf.shape(rated_pos))
            updates = tf.where(is_rated, neg, tf.zeros_like(rated_pos, tf.float32))
            scores = tf.tensor_scatter_nd_add(scores, tf.stack([t, rated_pos], -1), updates)
            positions = tf.broadcast_to(tf.range(size)[None, :], tf.shape(scores))
        if self.retrieval is not None:  # the rated items among the found ones
            hit = tf.reduce_any((positions[:, :, None] == rated_pos[:, None, :]) & is_rated[:, None, :], axis=-1)
            scores = tf.where(hit, neg, scores)
        top, where = tf.math.top_k(scores, k=self.top_k)
        chosen = tf.gather(positions, where, batch_dims=1)
        raw = tf.gather(tf.constant(self.catalogue_raw), chosen)
        return tf.where(tf.math.is_finite(top), raw, tf.constant(-1, tf.int64)), top

    def _shortlist(self, state: Mapping[str, tf.Tensor], users: tf.Tensor, rated_pos: tf.Tensor,
                   is_rated: tf.Tensor) -> tf.Tensor:
        """Catalogue positions ``[T, candidates]`` of the items the candidate stage estimates best
        among those not rated: the adapted model and its gradient at every cluster centre, then a
        linear estimate per item."""
        value, gradient = self.at_centres(state, self.candidates.centres, users)
        return self.candidates.shortlist(value, gradient, self.candidate_count, rated_pos, is_rated)

    def at_centres(self, state: Mapping[str, tf.Tensor], centres: tf.Tensor, users: tf.Tensor
                   ) -> tuple[tf.Tensor, tf.Tensor]:
        """The adapted model's scores ``[T, J]`` of the item representations ``centres [J, d]``, and
        their gradients ``[T, J, d]`` with respect to them."""
        given = tf.broadcast_to(centres[None], tf.concat([[users], tf.shape(centres)], 0))
        features = {**self.features(state, tf.zeros(tf.shape(given)[:2], tf.int32)), ITEM_REPRESENTATION: given}
        with tf.GradientTape() as tape:
            tape.watch(given)
            value = self.learner.score(self.learner_state(state), features)
        return value, tape.gradient(value, given)

    def probe_gradients(self, centres: np.ndarray) -> np.ndarray:
        """Gradients ``[PROBE_USERS * J, d]`` at ``centres [J, d]`` under the states of made-up new
        users (:meth:`made_up_support`): the sample the candidate stage chooses its directions by."""
        state = self.adapt(*self.made_up_support(PROBE_USERS, PROBE_SUPPORT))
        _, gradient = self.at_centres(state, tf.constant(centres, tf.float32), tf.constant(PROBE_USERS))
        return gradient.numpy().reshape(-1, centres.shape[-1])

    def made_up_support(self, users: int, size: int) -> tuple[tf.Tensor, ...]:
        """:meth:`adapt`'s inputs for ``users`` new users whose field values are drawn uniformly,
        each rating ``size`` catalogue items uniformly over the rating range (seeded: an export is
        reproducible)."""
        rng = np.random.default_rng(0)
        fields = np.zeros([users, fields_width(self.model.user_field_specs)], np.int32)
        column = 0
        for spec in self.model.user_field_specs:  # one value per field (a list field: one item of its list)
            fields[:, column] = rng.integers(0, spec.vocab_size, users)
            column += spec.width
        items = rng.choice(self.catalogue_rows, (users, size)).astype(np.int32)
        ratings = rng.uniform(*self.rating_range, (users, size)).astype(np.float32)
        return (tf.zeros([users], tf.int32), tf.constant(fields), tf.constant(items), tf.constant(ratings),
                tf.ones([users, size]))

    def _reads_one_user_row(self) -> bool:
        """Whether the learner scores items for user inputs given once per task exactly as for them
        repeated on every row (the model says it can, and two made-up users' scores agree)."""
        if not self.model.reads_one_user_row:
            return False
        state = self.adapt(*self.made_up_support(2, 4))
        items = tf.constant(np.resize(self.catalogue_rows, (2, 16)))
        shared = self.score(state, items)
        repeated = self.learner.score(self.learner_state(state), self.features(state, items, one_user_row=False))
        return bool(np.allclose(shared.numpy(), repeated.numpy(), atol=1e-5, rtol=1e-5))

    def _global_bias(self, params: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """The score's constant term of a dot-product model (its ``global_bias``)."""
        mu = params.get("global_bias")
        return tf.zeros([], tf.float32) if mu is None else tf.cast(mu, tf.float32)


def state_widths(learner: MetaLearner) -> dict[str, int]:
    """User field width of the states this learner's core makes (for the contract)."""
    return {STATE_USER_FIELDS: fields_width(learner.model.user_field_specs)}
