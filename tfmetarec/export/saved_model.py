"""SavedModels for stock TF Serving: raw IDs in, the learner's adaptation inside, bounded shapes.

Layout: ``<base>/<model_name>/<version>/`` (what TF Serving watches), with
``assets.extra/contract.json`` (:mod:`tfmetarec.export.contract`: inputs, buckets,
limits, state, vocabularies) beside the graph. Signatures (``T`` users per request):

* ``serving_default``: user inputs + ``query_item_id [T, Q]`` -> ``scores [T, Q]``, the
  meta-learned prior with no ratings (a user who has rated nothing yet);
* ``adapt_and_score``: user inputs + the support (``support_item_id``, ``support_rating``,
  ``support_mask`` ``[T, S]``) + ``query_item_id`` -> ``scores``, the learner's own
  adaptation running in the graph;
* ``recommend``: user inputs + the support -> ``item_id [T, K]`` (raw IDs) and
  ``scores [T, K]``: the top ``K`` of the whole catalogue, rated items left out;
* ``adapt``: user inputs + the support -> the state (``state_*`` tensors) to cache;
* ``score_with_state``: ``state_*`` + ``query_item_id`` -> ``scores``;
* ``recommend_with_state``: ``state_*`` -> top ``K``, the state's rated items left out;
* ``update_state``: ``state_*`` + new ratings (``new_item_id``, ``new_rating``,
  ``new_mask`` ``[T, S]``) -> the state after them: a service keeps one small state per
  user and never replays the history.

Raw IDs and field values are looked up in the graph (:class:`~tfmetarec.export.raw_inputs.RawInputs`);
anything unseen is the out-of-vocabulary index. Requests are checked in the graph and
refused with a message naming the input: shapes that disagree, more users or rows than
the largest bucket, a mask other than 0/1, ratings that are NaN, infinite or outside the
trained range on real rows, a state that is not finite or was made by another model.
Padded rows may hold anything. Every request is padded inside the graph to the smallest
bucket of :class:`~tfmetarec.export.contract.Buckets` that holds it, so the runtime sees
a bounded set of shapes. Each signature but ``serving_default`` also exists at static
shapes for one user, once per support bucket (``adapt_and_score.t1.s32``, ``update_state.t1.s8``,
``score_with_state.t1``): the client pads the ratings
(:func:`~tfmetarec.export.contract.bucketed_request`, which the REST and gRPC builders call),
and TF Serving runs a graph with no shape arithmetic left, faster per request. By default nothing
is XLA-compiled (stock TF Serving runs it);
``jit_compile=True`` compiles the adaptation and scoring with XLA, once per bucket shape,
which TF Serving supports only experimentally.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import tensorflow as tf

from tfmetarec.data.features import FeatureEncoder
from tfmetarec.export.names import (
    CONTRACT_FILE,
    NEW_ITEM,
    NEW_MASK,
    NEW_RATING,
    QUERY_ITEM,
    SCORES,
    STATE_FINGERPRINT,
    STATE_PREFIX,
    STATE_TAG,
    STATE_USER,
    SUPPORT_ITEM,
    SUPPORT_MASK,
    SUPPORT_RATING,
    TOP_ITEMS,
    USER_ID,
)
from tfmetarec.export.state_tag import check_key, new_key, tag_tf
from tfmetarec.export.contract import CANDIDATES, EXHAUSTIVE_UP_TO, Buckets, ServingContract, StateEntry, fingerprint
from tfmetarec.export.core import ServingCore
from tfmetarec.export.raw_inputs import RawInputs
from tfmetarec.export.rules import assertions, rules
from tfmetarec.learners.base import MetaLearner
from tfmetarec.models.functional import graph_function

DTYPES = {"int64": tf.int64, "int32": tf.int32, "float32": tf.float32, "string": tf.string, "float64": tf.float64}


def learner_fingerprint(learner: MetaLearner) -> int:
    """The digest every state of this learner carries (config and weights, item table included)."""
    model = learner.model
    return fingerprint(learner.get_config(), [*learner.get_weights(), model.item_table, model.item_raw_ids,
                                              model.item_offsets, *model.item_vectors.values()])


def _bucket(n: tf.Tensor, sizes: tuple[int, ...]) -> tf.Tensor:
    """The smallest of ``sizes`` that is >= ``n`` (``n`` checked against the largest first)."""
    table = tf.constant(sizes, tf.int32)
    return tf.gather(table, tf.reduce_sum(tf.cast(table < n, tf.int32)))


def _pad(x: tf.Tensor, users: tf.Tensor | int, rows: tf.Tensor | None = None) -> tf.Tensor:
    """``x`` ``[T, ...]`` (or ``[T, N, ...]`` with ``rows``) padded with zeros to ``users`` (and ``rows``);
    a Python ``users`` makes the user axis static."""
    rank = len(x.shape)
    pads = [[0, users - tf.shape(x)[0]]]
    if rows is not None:
        pads.append([0, rows - tf.shape(x)[1]])
    pads += [[0, 0]] * (rank - len(pads))
    out = tf.pad(x, pads)
    return tf.ensure_shape(out, [users, *out.shape[1:]]) if isinstance(users, int) else out


class ServingModule(tf.Module):
    """The exported graph: lookups, checks and padding around a :class:`ServingCore`.

    Args:
        learner: the trained learner (its model holds the item table with raw IDs).
        encoder: the fitted encoder the model was trained with (vocabularies, rating range).
        buckets: the padded sizes (default :class:`Buckets`).
        top_k: items per ``recommend`` answer.
        jit_compile: XLA-compile the adaptation and scoring (opt-in, see the module docstring).
        rating_range: ``(lowest, highest)`` rating a request may carry; default: the encoder's.
        state_key: the secret key of the states' integrity tags (two integers in [0, 2**63);
            default: a fresh random one, so another export refuses this one's states).
        candidates: items a two-stage ``recommend`` scores exactly after its candidate stage
            (:mod:`tfmetarec.export.candidates`): a count, ``"auto"`` (grows with the catalogue,
            :func:`~tfmetarec.export.contract.candidate_count`), or None: always score the whole catalogue.
        exhaustive_up_to: catalogues of at most this many items are scored whole (the
            contract's ``recommend_search`` says which search an export runs, and why).
        static: also serve one-user requests through signatures at static shapes, one per
            signature that takes a user and support bucket (``adapt_and_score.t1.s32``, the
            contract's ``static_signatures``): the client pads the ratings to the bucket
            (:func:`~tfmetarec.export.contract.bucketed_request`), and the graph runs without
            shape arithmetic (:meth:`static_function`). Needs a users bucket of 1.
    """

    def __init__(self, learner: MetaLearner, encoder: FeatureEncoder, buckets: Buckets | None = None,
                 top_k: int = 50, jit_compile: bool = False, rating_range: tuple[float, float] | None = None,
                 state_key: tuple[int, int] | None = None, candidates: int | str | None = CANDIDATES,
                 exhaustive_up_to: int = EXHAUSTIVE_UP_TO, static: bool = True):
        super().__init__()
        self._state_key = check_key(state_key) if state_key is not None else new_key()
        span = rating_range or encoder.rating_range
        if span is None:
            raise ValueError("The encoder records no rating range; pass rating_range=(lowest, highest).")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}.")
        if learner.task_key not in (None, "user"):
            raise ValueError(f"The {type(learner).__name__} learner adapts {learner.task_key} tasks; the serving "
                             "signatures adapt to a user's ratings, so it cannot be exported.")
        self.buckets = buckets or Buckets()
        self.jit_compile = bool(jit_compile)
        self.learner = learner
        self.raw = RawInputs(encoder, learner.model.item_raw_ids)
        self.core = ServingCore(learner, learner_fingerprint(learner), top_k, self.buckets.limit("support"),
                                candidates=candidates, exhaustive_up_to=exhaustive_up_to,
                                rating_range=(float(span[0]), float(span[1])))
        # the Keras variables' tf.Variables, the keras-rs search's item vectors among them: tracked here, so
        # the SavedModel's restore op (what the v1 session, TF Serving's path, runs) restores every one
        searched = self.core.retrieval.variables if self.core.retrieval is not None else []
        self.tracked_variables = [getattr(v, "value", v) for v in (*learner.variables, *searched)]
        model = learner.model
        self.tracked_tables = [model._item_table, model._item_raw_ids, model._item_offset,
                               *(table for _, table in model._item_vector_tables)]
        example = self.core.adapt(*self._empty_support(1, self.buckets.support[0]))
        self.contract = ServingContract(
            user_fields=tuple(f.name for f in self.raw.user_fields),
            user_fields_width=int(sum(s.width for s in self.raw.user_specs)),
            rating_range=(float(span[0]), float(span[1])),
            buckets=self.buckets,
            top_k=self.core.top_k,
            state=(*(StateEntry(k, v.dtype.name, tuple(int(d) for d in v.shape[1:]))
                     for k, v in sorted(example.items())),
                   StateEntry(STATE_USER, "int64", ()), StateEntry(STATE_TAG, "int64", ())),
            fingerprint=self.core.fingerprint,
            learner=type(learner).__name__,
            model=type(learner.model).__name__,
            extra={"encoder": encoder.to_dict(), "item_raw_ids": [int(r) for r in learner.model.item_raw_ids],
                   "recommend_search": self.core.search_summary()},
        )
        if static and self.buckets.users[0] == 1:
            self.contract = replace(self.contract, static_signatures=tuple(self.contract.one_user_buckets()))
        xla, core = self.jit_compile, self.core
        # the core's functions, which the signatures call (XLA compiles each when asked); held by a
        # plain namespace, which a SavedModel does not track: the signatures' graphs carry what they
        # call, and saving a tracked function lists (and saves) every trace of it once more
        self._fn = SimpleNamespace(
            adapt=graph_function(core.adapt, jit_compile=xla),
            score=graph_function(core.score, jit_compile=xla),
            adapt_score=graph_function(lambda u, f, i, r, m, q: core.score(core.adapt(u, f, i, r, m), q),
                                       jit_compile=xla),
            recommend=graph_function(core.recommend, jit_compile=xla),
            adapt_recommend=graph_function(lambda u, f, i, r, m: core.recommend(core.adapt(u, f, i, r, m), i, m),
                                           jit_compile=xla),
            recommend_state=graph_function(core.recommend_state, jit_compile=xla),
            update=graph_function(core.update, jit_compile=xla))
        self._rules = {name: rules(self.contract, name) for name in self.contract.signatures}
        # the signatures (``module.adapt_and_score(...)``), held untracked as well: a function the
        # module tracks is traced once more inside the save and its graph written twice
        self._signature_fns = SimpleNamespace(**{
            name: graph_function(self._served(name), input_signature=[self._specs(name)])
            for name in self.contract.signatures})

    def __getattr__(self, name: str):
        if not name.startswith("_") and name in vars(self.__dict__.get("_signature_fns", SimpleNamespace())):
            return getattr(self._signature_fns, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _specs(self, name: str, users: int | None = None, support: int | None = None) -> dict:
        """The input specs of signature ``name``: any shape the contract allows, or one user with
        its ratings at ``support`` rows (a static signature)."""
        shapes, dtypes = self.contract.input_shapes(), self.contract.input_dtypes()
        rated = self.contract.rated_inputs(name)
        out = {}
        for n in self.contract.inputs(name):
            shape = list(shapes[n])
            if users is not None:
                shape[0] = users
                if n in rated:
                    shape[1] = support
            out[n] = tf.TensorSpec(shape, DTYPES[dtypes[n]], n)
        return out

    def static_function(self, key: str):
        """The static signature ``key`` (one of the contract's ``static_signatures``) as a new
        ``tf.function``: one user, the ratings already at their bucket, so every shape is known
        while tracing and TF's graph optimiser folds the shape arithmetic away (the query axis stays
        free and is padded in the graph). Made on demand, not kept on the module: a SavedModel
        saves a module's functions once more beside its signatures (+50 % export time)."""
        if key not in self.contract.static_signatures:
            raise KeyError(f"No static signature {key!r}; this export has {list(self.contract.static_signatures)}.")
        name, support = self.contract.one_user_buckets()[key]
        work = getattr(self, f"_{name}")
        return graph_function(lambda inputs: work(self._checked(name, inputs), 1),
                              input_signature=[self._specs(name, 1, support)])

    def _served(self, name: str):
        """The signature ``name``: its checks, then its work at the padded user count. A one-user
        request runs a graph whose user axis is static (1), so the learner's per-user weights
        multiply as plain matrices instead of batched ones (half the time through a v1 session);
        larger requests run the graph of every other user bucket."""
        work = getattr(self, f"_{name}")

        def run(inputs: dict) -> dict:
            inputs = self._checked(name, inputs)
            users = tf.shape(inputs[USER_ID])[0]
            if self.buckets.users[0] != 1:
                return work(inputs, _bucket(users, self.buckets.users))
            return tf.cond(users <= 1, lambda: work(inputs, 1), lambda: work(inputs, _bucket(users, self.buckets.users)))
        return run

    def _empty_support(self, users: int, rows: int) -> tuple[tf.Tensor, ...]:
        width = int(sum(s.width for s in self.raw.user_specs))
        return (tf.zeros([users], tf.int32), tf.zeros([users, width], tf.int32), tf.zeros([users, rows], tf.int32),
                tf.zeros([users, rows]), tf.zeros([users, rows]))

    # -- checks (a failing one stops the request with its message) ---------------------------
    def _checked(self, signature: str, inputs: dict) -> dict:
        """``inputs`` once every rule of the signature's request holds (:mod:`tfmetarec.export.rules`,
        the same rules the clients run in numpy) and a state's tag is the one this export made.
        Each input's shape is checked first: a signature called through TF2's ``signatures[...]``
        does not check it itself (a rank-3 rating would otherwise fail inside the graph)."""
        shapes = self.contract.input_shapes()
        inputs = {k: tf.ensure_shape(v, shapes[k], name=f"shape_of_{k}") for k, v in inputs.items()}
        checks = assertions(self._rules[signature], inputs)
        if STATE_PREFIX + STATE_TAG in inputs:
            with tf.control_dependencies(checks):
                made = self._tag({e.name: inputs[STATE_PREFIX + e.name] for e in self.contract.state
                                  if e.name != STATE_TAG})
                checks.append(tf.debugging.Assert(
                    tf.reduce_all(tf.equal(made, inputs[STATE_PREFIX + STATE_TAG])),
                    [f"{STATE_PREFIX}{STATE_TAG}: the state was changed, cut, or made by another export; "
                     "adapt again."]))
        with tf.control_dependencies(checks):
            return {k: tf.identity(v) for k, v in inputs.items()}

    def _tag(self, state: dict) -> tf.Tensor:
        return tag_tf(state, self._state_key)

    def _sealed(self, state: dict, user: tf.Tensor) -> dict:
        """The served state: the learner's entries, the user's raw ID and the tag over both."""
        out = {**state, STATE_USER: tf.cast(user, tf.int64)}
        out[STATE_TAG] = self._tag(out)
        return {STATE_PREFIX + k: v for k, v in out.items()}

    # -- encoded, padded inputs -------------------------------------------------------------------
    def _encoded_users(self, inputs: dict, padded: tf.Tensor | int) -> tuple[tf.Tensor, tf.Tensor]:
        values = {f: inputs[f"user_{f}"] for f in self.contract.user_fields}
        fields = self.raw.user_field_indices(values, tf.shape(inputs[USER_ID]))
        return _pad(self.raw.user_ids(inputs[USER_ID]), padded), _pad(fields, padded)

    def _encoded_support(self, inputs: dict, padded: tf.Tensor | int, rows: tf.Tensor) -> tuple[tf.Tensor, ...]:
        items = _pad(self.raw.item_rows(inputs[SUPPORT_ITEM]), padded, rows)
        mask = _pad(inputs[SUPPORT_MASK], padded, rows)
        rating = _pad(tf.where(inputs[SUPPORT_MASK] > 0, inputs[SUPPORT_RATING], 0.0), padded, rows)
        return items, rating, mask

    def _prepare(self, inputs: dict, padded: tf.Tensor | int, support: bool = True, query: bool = True
                 ) -> tuple[tuple, tf.Tensor, tf.Tensor]:
        users = tf.shape(inputs[USER_ID])[0]
        user_index, user_fields = self._encoded_users(inputs, padded)
        if support:
            rows = _bucket(tf.shape(inputs[SUPPORT_ITEM])[1], self.buckets.support)
            items, rating, mask = self._encoded_support(inputs, padded, rows)
        else:
            smallest = self.buckets.support[0]
            items = tf.zeros(tf.stack([padded, smallest]), tf.int32)
            rating = mask = tf.zeros(tf.stack([padded, smallest]), tf.float32)
        out = (user_index, user_fields, items, rating, mask)
        q_rows = tf.shape(inputs[QUERY_ITEM])[1] if query else None
        q = _pad(self.raw.item_rows(inputs[QUERY_ITEM]), padded, _bucket(q_rows, self.buckets.query)) if query else None
        return (*out, q), users, q_rows

    # -- the signatures ------------------------------------------------------------------------------
    # (each takes the checked inputs and the padded user count: see _served)
    def _serving_default(self, inputs: dict, padded: tf.Tensor | int) -> dict:
        (u, f, i, r, m, q), users, rows = self._prepare(inputs, padded, support=False)
        return {SCORES: self._fn.adapt_score(u, f, i, r, m, q)[:users, :rows]}

    def _adapt_and_score(self, inputs: dict, padded: tf.Tensor | int) -> dict:
        (u, f, i, r, m, q), users, rows = self._prepare(inputs, padded)
        return {SCORES: self._fn.adapt_score(u, f, i, r, m, q)[:users, :rows]}

    def _adapt(self, inputs: dict, padded: tf.Tensor | int) -> dict:
        (u, f, i, r, m, _), users, _ = self._prepare(inputs, padded, query=False)
        state = self._fn.adapt(u, f, i, r, m)
        return self._sealed({k: v[:users] for k, v in state.items()}, inputs[USER_ID])

    def _recommend(self, inputs: dict, padded: tf.Tensor | int) -> dict:
        (u, f, i, r, m, _), users, _ = self._prepare(inputs, padded, query=False)
        items, scores = self._fn.adapt_recommend(u, f, i, r, m)
        return {TOP_ITEMS: items[:users], SCORES: scores[:users]}

    def _state(self, inputs: dict, padded: tf.Tensor | int) -> tuple[dict, tf.Tensor]:
        state = {e.name: inputs[STATE_PREFIX + e.name] for e in self.contract.core_state}
        users = tf.shape(state[STATE_FINGERPRINT])[0]
        return {k: _pad(v, padded) for k, v in state.items()}, users

    def _score_with_state(self, inputs: dict, padded: tf.Tensor | int) -> dict:
        state, users = self._state(inputs, padded)
        rows = tf.shape(inputs[QUERY_ITEM])[1]
        q = _pad(self.raw.item_rows(inputs[QUERY_ITEM]), padded, _bucket(rows, self.buckets.query))
        return {SCORES: self._fn.score(state, q)[:users, :rows]}

    def _recommend_with_state(self, inputs: dict, padded: tf.Tensor | int) -> dict:
        state, users = self._state(inputs, padded)
        top, scores = self._fn.recommend_state(state)
        return {TOP_ITEMS: top[:users], SCORES: scores[:users]}

    def _update_state(self, inputs: dict, padded: tf.Tensor | int) -> dict:
        state, users = self._state(inputs, padded)
        size = _bucket(tf.shape(inputs[NEW_ITEM])[1], self.buckets.support)
        items = _pad(self.raw.item_rows(inputs[NEW_ITEM]), padded, size)
        mask = _pad(inputs[NEW_MASK], padded, size)
        rating = _pad(tf.where(inputs[NEW_MASK] > 0, inputs[NEW_RATING], 0.0), padded, size)
        new = self._fn.update(state, items, rating, mask)
        return self._sealed({k: v[:users] for k, v in new.items()}, inputs[USER_ID])

    def warm_up(self) -> int:
        """Run every bucket shape once (compiling each with XLA when enabled); returns how many."""
        count = 0
        for t in self.buckets.users:
            for s in self.buckets.support:
                for q in self.buckets.query:
                    u, f, i, r, m = self._empty_support(t, s)
                    self._fn.adapt_score(u, f, i, r, m, tf.zeros([t, q], tf.int32))
                    count += 1
        return count


def export_saved_model(
    learner: MetaLearner,
    base_dir: str | os.PathLike,
    model_name: str = "tfmetarec",
    version: int = 1,
    *,
    encoder: FeatureEncoder,
    buckets: Buckets | None = None,
    top_k: int = 50,
    jit_compile: bool = False,
    rating_range: tuple[float, float] | None = None,
    state_key: tuple[int, int] | None = None,
    candidates: int | str | None = CANDIDATES,
    exhaustive_up_to: int = EXHAUSTIVE_UP_TO,
    static: bool = True,
) -> Path:
    """Write ``learner`` as a TF Serving SavedModel; returns ``<base>/<model_name>/<version>``.

    ``encoder`` is the fitted encoder of the learner's training data (its vocabularies
    become lookup tables in the graph). Stock TF Serving runs the default export;
    ``jit_compile=True`` compiles the learner's work with XLA per bucket shape (faster
    on CPU; XLA in TF Serving is experimental). A catalogue of more than ``exhaustive_up_to``
    items is ranked in two stages, ``candidates`` of them scored exactly; ``static`` adds the
    one-user signatures at static shapes (see :class:`ServingModule`).
    """
    if version < 1:
        raise ValueError(f"TF Serving versions are positive integers, got {version}.")
    path = Path(base_dir) / model_name / str(int(version))
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"{path} already holds a model; choose another version.")
    module = ServingModule(learner, encoder, buckets, top_k, jit_compile, rating_range, state_key, candidates,
                           exhaustive_up_to, static)
    signatures = {name: getattr(module, name).get_concrete_function() for name in module.contract.signatures}
    signatures.update({key: module.static_function(key).get_concrete_function()
                       for key in module.contract.static_signatures})
    tf.saved_model.save(module, os.fspath(path), signatures=signatures)
    extra = path / "assets.extra"
    extra.mkdir(exist_ok=True)
    (extra / CONTRACT_FILE).write_text(module.contract.to_json(), encoding="utf-8")
    return path


def load_contract(path: str | os.PathLike) -> ServingContract:
    """The contract written beside a SavedModel (``<version>/assets.extra/contract.json``) or an ONNX export."""
    folder = Path(path)
    for candidate in (folder / "assets.extra" / CONTRACT_FILE, folder / CONTRACT_FILE):
        if candidate.is_file():
            return ServingContract.from_json(candidate.read_text(encoding="utf-8"))
    raise FileNotFoundError(f"No {CONTRACT_FILE} in {folder} (nor in its assets.extra/): not a tfmetarec export.")


__all__ = ["ServingModule", "export_saved_model", "learner_fingerprint", "load_contract"]
