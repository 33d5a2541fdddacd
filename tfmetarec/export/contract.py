"""The serving contract, written once: request names and dtypes, buckets, limits, state.

Every exported runtime and every client reads this module, so they cannot drift: the
SavedModel builds its signatures from :meth:`ServingContract.input_specs`, the ONNX
export its static graphs from :class:`Buckets`, and the clients check requests with
:func:`check_request` before they send them. ``contract.json`` (written beside every
export) carries the same description, vocabularies included.

A request names users and items by their **raw IDs** (int64) and gives user features
as raw strings:

==========================  =========  ===========  ===================================
input                       dtype      shape        meaning
==========================  =========  ===========  ===================================
``user_id``                 int64      ``[T]``      the users (unknown or new: any ID)
``user_<field>``            string     ``[T]``      each user field's raw value ("" = missing)
``support_item_id``         int64      ``[T, S]``   the items each user rated
``support_rating``          float32    ``[T, S]``   their ratings
``support_mask``            float32    ``[T, S]``   1 for a real rating, 0 for padding
``query_item_id``           int64      ``[T, Q]``   the candidates to score
``state_<name>``            per state  ``[T, ...]``  a cached adapted state (``adapt``'s output)
==========================  =========  ===========  ===================================

A state carries its user's raw ID (``state_user``) and a keyed integrity tag (``state_tag``,
:mod:`tfmetarec.export.state_tag`); the signatures that take a state also take ``user_id`` and
refuse a state made for another user, changed, or made by another export.

The graphs pad ``T``, ``S`` and ``Q`` to the smallest bucket that holds them
(:class:`Buckets`), so a runtime sees a bounded set of shapes; larger requests are
refused with the limit in the message.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tfmetarec.export.names import (  # the contract's names live in one small module
    ENVELOPE,
    NEW_ITEM,
    NEW_MASK,
    NEW_RATING,
    QUERY_ITEM,
    SCORES,
    SIGNATURES,
    STATE_PREFIX,
    STATE_VERSION,
    SUPPORT_ITEM,
    SUPPORT_MASK,
    SUPPORT_RATING,
    TOP_ITEMS,
    USER_ID,
    bucket_name,
)
from tfmetarec.export.rules import NEW_GROUP, SUPPORT_GROUP, check_numpy, rules

CANDIDATES = "auto"
"""Items a two-stage ``recommend`` scores exactly (:mod:`tfmetarec.export.candidates`): a count, or
``"auto"``: :func:`candidate_count` of the catalogue (1,500 up to 375,000 items, 0.4 % of it beyond:
on the serving benchmark Recall@100 0.965 at 100,000 items and 0.964 at a million, BENCHMARKS.md)."""
MIN_CANDIDATES = 1_500
CANDIDATE_SHARE = 0.004


def candidate_count(candidates: int | str, items: int) -> int:
    """The number of candidates ``candidates`` (a count or ``"auto"``) means for ``items`` items."""
    if candidates == "auto":
        return max(MIN_CANDIDATES, int(np.ceil(CANDIDATE_SHARE * items)))
    if isinstance(candidates, str) or int(candidates) != candidates or candidates < 1:
        raise ValueError(f"candidates must be a positive count or 'auto', got {candidates!r}.")
    return int(candidates)


EXHAUSTIVE_UP_TO = 20_000
"""Catalogues of at most this many items are scored whole by ``recommend``."""
CONTRACT_FORMAT = 2  # 2: states carry their user and a keyed tag; the state signatures take user_id


class RequestError(ValueError):
    """A request a serving signature refuses; the message names the input and the limit."""


@dataclass(frozen=True)
class Buckets:
    """The sizes the exported graphs pad users, support and query rows to.

    A request of ``T`` users, ``S`` support rows and ``Q`` candidates runs at the
    smallest bucket of each axis that holds it; the largest bucket of an axis is that
    axis's limit. Defaults: users 1, 8, 32; support 8, 32, 128, 512; query 16, 128, 1024.
    """

    users: tuple[int, ...] = (1, 8, 32)
    support: tuple[int, ...] = (8, 32, 128, 512)
    query: tuple[int, ...] = (16, 128, 1024)

    def __post_init__(self) -> None:
        for axis in ("users", "support", "query"):
            sizes = tuple(int(v) for v in getattr(self, axis))
            if not sizes or any(v < 1 for v in sizes) or list(sizes) != sorted(set(sizes)):
                raise ValueError(f"Buckets.{axis} must be increasing positive sizes, got {getattr(self, axis)}.")
            object.__setattr__(self, axis, sizes)

    def limit(self, axis: str) -> int:
        return int(getattr(self, axis)[-1])

    def size_for(self, axis: str, n: int) -> int:
        """The smallest ``axis`` bucket that holds ``n`` rows; :class:`RequestError` above the limit."""
        for size in getattr(self, axis):
            if n <= size:
                return int(size)
        raise RequestError(f"{n} {AXIS_WORDS[axis]} exceed the limit of {self.limit(axis)}.")

    def to_dict(self) -> dict[str, list[int]]:
        return {k: list(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Sequence[int]]) -> Buckets:
        return cls(**{k: tuple(v) for k, v in d.items()})


AXIS_WORDS = {"users": "users in one request", "support": "support ratings per user",
              "query": "candidate items per user"}


def fingerprint(config: Mapping[str, Any], weights: Sequence[np.ndarray]) -> int:
    """A 63-bit digest of a learner's config and weights: a state is only valid for the
    model that made it."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for w in weights:
        digest.update(np.ascontiguousarray(w).tobytes())
    return int.from_bytes(digest.digest()[:8], "big") >> 1


@dataclass(frozen=True)
class StateEntry:
    """One tensor of an adapted state: ``state_<name>``, ``[T, *shape]`` of ``dtype``."""

    name: str
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ServingContract:
    """What the exported signatures take and give, and the limits they enforce."""

    user_fields: tuple[str, ...]
    user_fields_width: int
    rating_range: tuple[float, float]
    buckets: Buckets
    top_k: int
    state: tuple[StateEntry, ...]
    fingerprint: int
    learner: str
    model: str
    signatures: tuple[str, ...] = SIGNATURES
    format: int = CONTRACT_FORMAT
    extra: dict[str, Any] = field(default_factory=dict)
    static_signatures: tuple[str, ...] = ()
    """Signatures at one static bucket (one user, one support bucket: ``adapt_and_score.t1.s32``,
    :func:`~tfmetarec.export.names.bucket_name`): the request padded by the client to the bucket
    (:func:`bucketed_request`), no shape arithmetic in the graph."""

    # -- inputs --------------------------------------------------------------------------
    def user_inputs(self) -> list[str]:
        return [USER_ID, *[f"user_{f}" for f in self.user_fields]]

    @property
    def core_state(self) -> tuple[StateEntry, ...]:
        """The state entries the learner computes (all but the envelope: user and tag)."""
        return tuple(e for e in self.state if e.name not in ENVELOPE)

    def inputs(self, signature: str) -> list[str]:
        """The input names of a signature, in a stable order."""
        support = [SUPPORT_ITEM, SUPPORT_RATING, SUPPORT_MASK]
        state = [USER_ID, *(STATE_PREFIX + e.name for e in self.state)]
        new = [NEW_ITEM, NEW_RATING, NEW_MASK]
        table = {
            "serving_default": [*self.user_inputs(), QUERY_ITEM],
            "adapt_and_score": [*self.user_inputs(), *support, QUERY_ITEM],
            "adapt": [*self.user_inputs(), *support],
            "score_with_state": [*state, QUERY_ITEM],
            "recommend": [*self.user_inputs(), *support],
            "recommend_with_state": state,
            "update_state": [*state, *new],
        }
        if signature not in table:
            raise ValueError(f"Unknown signature {signature!r}; the contract has {list(table)}.")
        return table[signature]

    def rated_inputs(self, signature: str) -> tuple[str, ...]:
        """The inputs on a signature's support axis (its ratings or new ratings); empty without one."""
        names = self.inputs(signature)
        for group in (SUPPORT_GROUP, NEW_GROUP):
            if group[0] in names:
                return group
        return ()

    def one_user_buckets(self) -> dict[str, tuple[str, int | None]]:
        """Every signature but ``serving_default`` at one user and each support bucket (one entry for
        a signature without ratings): ``{"adapt_and_score.t1.s32": ("adapt_and_score", 32), ...}``,
        the static signatures an export may hold."""
        return {bucket_name(name, 1, support): (name, support) for name in self.signatures
                if name != "serving_default"
                for support in (self.buckets.support if self.rated_inputs(name) else (None,))}

    def static_signature(self, signature: str, users: int, rows: int | None) -> str | None:
        """The static signature that runs ``users`` users with ``rows`` support rows each
        (padded to their bucket), or None when the export has none for them."""
        if self.rated_inputs(signature):
            if rows is None or rows > self.buckets.limit("support"):
                return None
            support: int | None = self.buckets.size_for("support", rows)
        else:
            support = None
        name = bucket_name(signature, users, support)
        return name if name in self.static_signatures else None

    def input_dtypes(self) -> dict[str, str]:
        out = {USER_ID: "int64", SUPPORT_ITEM: "int64", SUPPORT_RATING: "float32", SUPPORT_MASK: "float32",
               QUERY_ITEM: "int64", NEW_ITEM: "int64", NEW_RATING: "float32", NEW_MASK: "float32"}
        out.update({f"user_{f}": "string" for f in self.user_fields})
        out.update({STATE_PREFIX + e.name: e.dtype for e in self.state})
        return out

    def input_shapes(self) -> dict[str, list[int | None]]:
        out: dict[str, list[int | None]] = {USER_ID: [None]}
        out.update({f"user_{f}": [None] for f in self.user_fields})
        out.update({k: [None, None] for k in (SUPPORT_ITEM, SUPPORT_RATING, SUPPORT_MASK, QUERY_ITEM,
                                              NEW_ITEM, NEW_RATING, NEW_MASK)})
        out.update({STATE_PREFIX + e.name: [None, *e.shape] for e in self.state})
        return out

    def catalogue_size(self) -> int:
        """Items a recommendation may name (the item table's rows with a raw ID)."""
        return sum(1 for r in self.extra.get("item_raw_ids", []) if int(r) >= 0)

    def outputs(self, signature: str) -> list[str]:
        if signature in ("adapt", "update_state"):
            return [STATE_PREFIX + e.name for e in self.state]
        if signature in ("recommend", "recommend_with_state"):
            return [TOP_ITEMS, SCORES]
        return [SCORES]

    # -- persistence -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "user_fields": list(self.user_fields),
            "user_fields_width": self.user_fields_width,
            "rating_range": list(self.rating_range),
            "buckets": self.buckets.to_dict(),
            "top_k": self.top_k,
            "state": [[e.name, e.dtype, list(e.shape)] for e in self.state],
            "fingerprint": str(self.fingerprint),
            "learner": self.learner,
            "model": self.model,
            "signatures": list(self.signatures),
            "static_signatures": list(self.static_signatures),
            "state_version": STATE_VERSION,
            **self.extra,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ServingContract:
        if d.get("format") != CONTRACT_FORMAT:
            raise ValueError(f"Serving contract format {d.get('format')!r}; this library reads {CONTRACT_FORMAT} (export the "
                             "model again with this version).")
        known = {"format", "user_fields", "user_fields_width", "rating_range", "buckets", "top_k", "state",
                 "fingerprint", "learner", "model", "signatures", "static_signatures", "state_version"}
        return cls(
            user_fields=tuple(d["user_fields"]),
            user_fields_width=int(d["user_fields_width"]),
            rating_range=(float(d["rating_range"][0]), float(d["rating_range"][1])),
            buckets=Buckets.from_dict(d["buckets"]),
            top_k=int(d["top_k"]),
            state=tuple(StateEntry(n, t, tuple(s)) for n, t, s in d["state"]),
            fingerprint=int(d["fingerprint"]),
            learner=str(d["learner"]),
            model=str(d["model"]),
            signatures=tuple(d["signatures"]),
            static_signatures=tuple(d.get("static_signatures", ())),  # none in an export made before them
            extra={k: v for k, v in d.items() if k not in known},
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_json(cls, text: str) -> ServingContract:
        return cls.from_dict(json.loads(text))


# -- request checks a client runs before sending (the graphs run the same ones) -------------
def _array(name: str, value: Any, dtype: str) -> np.ndarray:
    if dtype == "string":
        array = np.asarray(value, dtype=object)
        for v in array.flat:  # a plain loop: a request holds a few values, a generator costs more
            if not isinstance(v, (str, bytes)):
                raise RequestError(f"{name} must hold strings (raw field values, '' for missing).")
        return array
    try:
        array = np.asarray(value)
    except (ValueError, OverflowError) as err:
        raise RequestError(f"{name} is not a rectangular array of numbers: {err}.") from err
    if dtype in ("int64", "int32"):
        if array.size and array.dtype.kind not in "iu":
            if array.dtype == object:
                try:
                    array = array.astype(np.int64)
                except (OverflowError, TypeError, ValueError) as err:
                    raise RequestError(f"{name} holds IDs outside the int64 range or not integers: {err}.") from err
            else:
                raise RequestError(f"{name} must hold integer IDs, got {array.dtype}.")
        if array.dtype.kind == "u" and array.size and array.max() > np.iinfo(np.int64).max:
            raise RequestError(f"{name} holds IDs outside the int64 range.")
        if dtype == "int32" and array.size and (array.min() < -2**31 or array.max() >= 2**31):
            raise RequestError(f"{name} holds values outside the int32 range.")
        return array.astype(np.int64 if dtype == "int64" else np.int32, copy=False)
    if array.size and array.dtype.kind not in "iuf":
        raise RequestError(f"{name} must hold numbers, got {array.dtype}.")
    return array.astype(np.float32, copy=False)


def check_request(contract: ServingContract, signature: str, request: Mapping[str, Any],
                  limit_users: bool = True) -> dict[str, np.ndarray]:
    """The request as arrays of the contract's dtypes (an input that has its dtype already is
    passed through, not copied: callers read them), or :class:`RequestError` naming what is
    wrong: a missing or unknown input, a wrong rank or dtype, then the rules the SavedModel
    checks in its graph (:mod:`tfmetarec.export.rules`): users/rows that disagree, limits, a
    mask that is not 0/1, a rating that is NaN, infinite or outside the trained range on a
    real row, a state that is not finite or was made by another model.
    ``limit_users=False`` lets a client that splits requests take more users than a bucket."""
    names, dtypes, checks, expected = _request_checks(contract, signature, limit_users)
    if request.keys() != expected:
        missing = [n for n in names if n not in request]
        if missing:
            raise RequestError(f"{signature} needs inputs {missing}.")
        unknown = sorted(set(request) - expected)
        if unknown:
            raise RequestError(f"{signature} takes no inputs {unknown}; it takes {names}.")
    out = {n: _array(n, request[n], dtypes[n]) for n in names}
    check_numpy(checks, out, RequestError)
    return out


def bucketed_request(contract: ServingContract, signature: str,
                     request: Mapping[str, Any]) -> tuple[str, dict[str, np.ndarray]]:
    """``(signature name, arrays)`` to send: the request checked (:func:`check_request`) and, when
    the export has a static signature for it (one user), its ratings padded with zeros (mask 0)
    to their bucket and the static signature's name; otherwise ``signature`` and the arrays as
    they are. Through TF Serving's session a static signature runs fewer ops (BENCHMARKS.md)."""
    arrays = check_request(contract, signature, request)
    if not contract.static_signatures:
        return signature, arrays
    rated = contract.rated_inputs(signature)
    rows = arrays[rated[0]].shape[1] if rated else None
    users = len(arrays[contract.inputs(signature)[0]])
    name = contract.static_signature(signature, users, rows)
    if name is None:
        return signature, arrays
    if rated:
        size = contract.buckets.size_for("support", rows)
        for key in rated:
            padded = np.zeros((users, size), arrays[key].dtype)
            padded[:, :rows] = arrays[key]
            arrays[key] = padded
    return name, arrays


def _request_checks(contract: ServingContract, signature: str,
                    limit_users: bool) -> tuple[list, dict, list, frozenset]:
    """A signature's input names, their dtypes, its rules and the names as a set, made once per
    contract (a client checks every request with them: building the rules cost more than running them)."""
    made = contract.__dict__.setdefault("_request_checks", {})  # the frozen contract's own cache
    key = (signature, limit_users)
    if key not in made:
        names = contract.inputs(signature)
        made[key] = (names, contract.input_dtypes(), rules(contract, signature, limit_users), frozenset(names))
    return made[key]


def make_request(
    users: Sequence[Mapping[str, Any]],
    support: Sequence[Sequence[tuple[int, float]]] | None = None,
    candidates: Sequence[Sequence[int]] | None = None,
    user_fields: Sequence[str] = (),
) -> dict[str, np.ndarray]:
    """A raw request from plain Python values, padded where users differ in length.

    ``users``: one mapping per user with ``"user_id"`` (any int; 0 for a new user) and raw
    field values by field name (missing fields are sent as ""). ``support``: each user's
    ``(item_id, rating)`` pairs. ``candidates``: each user's candidate item IDs. The result
    has the contract's input names (``user_id``, ``user_<field>``, ``support_item_id``, ...).
    """
    out: dict[str, np.ndarray] = {USER_ID: np.array([int(u.get("user_id", 0)) for u in users], np.int64)}
    for f in user_fields:
        out[f"user_{f}"] = np.array(["" if u.get(f) is None else str(u[f]) for u in users], dtype=object)
    if support is not None:
        if len(support) != len(users):
            raise RequestError(f"{len(support)} support lists for {len(users)} users.")
        rows = max([len(s) for s in support] + [0])
        items = np.zeros((len(users), rows), np.int64)
        ratings = np.zeros((len(users), rows), np.float32)
        mask = np.zeros((len(users), rows), np.float32)
        for t, pairs in enumerate(support):
            for j, (item, rating) in enumerate(pairs):
                items[t, j], ratings[t, j], mask[t, j] = int(item), float(rating), 1.0
        out.update({SUPPORT_ITEM: items, SUPPORT_RATING: ratings, SUPPORT_MASK: mask})
    if candidates is not None:
        if len(candidates) != len(users) or len({len(c) for c in candidates}) > 1:
            raise RequestError("candidates need one list per user, all of the same length.")
        out[QUERY_ITEM] = np.array([[int(i) for i in c] for c in candidates], np.int64).reshape(len(users), -1)
    return out
