"""The request rules, written once: rows of (input, predicate, message), from which both the numpy
checker (the clients: :func:`~tfmetarec.export.contract.check_request`) and the in-graph checker
(the SavedModel) are made.

A predicate is a function of an ``ops`` namespace and the request's arrays: with :data:`NUMPY`
it returns a numpy boolean, with :data:`TENSORFLOW` a boolean tensor, so the two checkers
cannot drift. The stages run in order: ``"rank"`` (each input's rank and fixed dimensions),
``"shape"`` (rows per user, limits), then ``"value"`` (masks, ratings, states) once the shapes
are known good. In the graph the ``"rank"`` stage is one ``tf.ensure_shape`` per input
(:func:`assertions` leaves it to the caller): a signature called through TF2 does not check
shapes itself, and an assertion on a static rank would be folded away.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tfmetarec.export.names import (
    STATE_FINGERPRINT,
    STATE_FORMAT,
    STATE_PREFIX,
    STATE_TAG,
    STATE_USER,
    STATE_VERSION,
    USER_ID,
)

ServingContract = Any  # tfmetarec.export.contract.ServingContract (which imports this module)

SUPPORT_GROUP = ("support_item_id", "support_rating", "support_mask")
NEW_GROUP = ("new_item_id", "new_rating", "new_mask")


STAGES = ("rank", "shape", "value")


class _NumpyOps:
    """The predicates' operations on numpy arrays."""

    # the checker's arrays are numpy arrays (check_request makes them): their own shape is read
    # directly, as np.shape / np.ndim cost more than the checks themselves on a small request
    @staticmethod
    def rank(x: Any) -> int:
        return x.ndim if isinstance(x, np.ndarray) else np.ndim(x)

    @staticmethod
    def dims(x: Any) -> Any:
        return np.asarray(np.shape(x)[1:])

    @staticmethod
    def rows(x: Any, axis: int = 0) -> Any:
        return (x.shape if isinstance(x, np.ndarray) else np.shape(x))[axis]

    @staticmethod
    def same_shape(a: Any, b: Any) -> Any:
        return np.shape(a) == np.shape(b)

    @staticmethod
    def all(x: Any) -> Any:  # the array's own method: np.all's dispatch costs more than a small check
        return x.all() if isinstance(x, (np.ndarray, np.generic)) else np.all(x)

    isfinite = staticmethod(np.isfinite)
    where = staticmethod(np.where)

    @staticmethod
    def floating(x: Any) -> bool:
        return np.asarray(x).dtype.kind == "f"


class _TensorFlowOps:
    """The same operations on tensors (imported on first use)."""

    @staticmethod
    def rows(x: Any, axis: int = 0) -> Any:
        import tensorflow as tf

        return tf.shape(x)[axis]

    @staticmethod
    def same_shape(a: Any, b: Any) -> Any:
        import tensorflow as tf

        sa, sb = tf.shape(a), tf.shape(b)
        return tf.reduce_all(tf.equal(tf.size(sa), tf.size(sb))) & tf.reduce_all(tf.equal(sa, sb))

    @staticmethod
    def all(x: Any) -> Any:
        import tensorflow as tf

        return tf.reduce_all(x)

    @staticmethod
    def isfinite(x: Any) -> Any:
        import tensorflow as tf

        return tf.math.is_finite(x)

    @staticmethod
    def where(c: Any, x: Any, y: Any) -> Any:
        import tensorflow as tf

        return tf.where(c, x, tf.cast(y, x.dtype))

    @staticmethod
    def floating(x: Any) -> bool:
        return x.dtype.is_floating


NUMPY = _NumpyOps()
TENSORFLOW = _TensorFlowOps()

Predicate = Callable[[Any, Mapping[str, Any]], Any]


@dataclass(frozen=True)
class Rule:
    """One check of a request: the input it names, when it runs, what must hold, what to say."""

    input: str
    stage: str  # one of STAGES
    holds: Predicate
    message: str


def _count(names: Sequence[str]) -> Callable[[Any, Mapping[str, Any]], Any]:
    return lambda ops, x: ops.rows(x[names[0]])


def rules(contract: ServingContract, signature: str, limit_users: bool = True) -> list[Rule]:
    """The rules of one signature's request, in the order they run: stage by stage."""
    names = contract.inputs(signature)
    state_inputs = [n for n in names if n.startswith("state_")]
    first = names[0]
    out: list[Rule] = []
    shapes = contract.input_shapes()
    for n in names:
        want = shapes[n]
        rank = len(want)
        out.append(Rule(n, "rank", lambda ops, x, n=n, k=rank: ops.rank(x[n]) == k,
                        f"{n} must have rank {len(want)} ({'[T]' if len(want) == 1 else '[T, rows]'}"
                        f"{'' if len(want) <= 2 else ' + state shape'})."))
        fixed = want[1:]
        if any(w is not None for w in fixed):
            out.append(Rule(n, "rank", lambda ops, x, n=n, fixed=tuple(fixed): ops.all(ops.dims(x[n]) == fixed),
                            f"{n} must be [T, {', '.join(map(str, fixed))}]."))
    out.append(Rule(first, "shape", lambda ops, x: ops.rows(x[first]) > 0,
                    f"{first}: a request needs at least one user."))
    if limit_users:
        limit = contract.buckets.limit("users")
        out.append(Rule(first, "shape", lambda ops, x: ops.rows(x[first]) <= limit,
                        f"{first}: more users than the limit of {limit} per request."))
    for n in names[1:]:
        if n.startswith("user_") or n in state_inputs or n in (*SUPPORT_GROUP[:1], *NEW_GROUP[:1], "query_item_id"):
            out.append(Rule(n, "shape", lambda ops, x, n=n: ops.rows(x[n]) == ops.rows(x[first]),
                            f"{n} has another number of users than {first}: every input must have one row per "
                            "user (T)."))
    for group, axis in ((SUPPORT_GROUP, "support"), (NEW_GROUP, "support"), (("query_item_id",), "query")):
        present = [n for n in group if n in names]
        if not present:
            continue
        head, limit = present[0], contract.buckets.limit(axis)
        for n in present[1:]:
            out.append(Rule(n, "shape", lambda ops, x, n=n, head=head: ops.same_shape(x[n], x[head]),
                            f"{n} must have the shape of {head}."))
        out.append(Rule(head, "shape", lambda ops, x, head=head, limit=limit: ops.rows(x[head], 1) <= limit,
                        f"{head}: more rows than the limit of {limit} per user."))
        if len(present) == 3:
            _, rating, mask = present
            lo, hi = contract.rating_range
            out += [
                Rule(mask, "value", lambda ops, x, mask=mask: ops.all((x[mask] == 0.0) | (x[mask] == 1.0)),
                     f"{mask} must hold only 0 (padding) and 1 (a rating)."),
                Rule(rating, "value",
                     lambda ops, x, r=rating, m=mask: ops.all(ops.isfinite(ops.where(x[m] > 0, x[r], lo))),
                     f"{rating} holds NaN or infinite values on real (mask 1) rows."),
                Rule(rating, "value",
                     lambda ops, x, r=rating, m=mask: _within(ops, ops.where(x[m] > 0, x[r], lo), lo, hi),
                     f"{rating} holds ratings outside the trained range [{lo:g}, {hi:g}]."),
            ]
    out += state_rules(contract, state_inputs)
    return [rule for stage in STAGES for rule in out if rule.stage == stage]


def _within(ops: Any, values: Any, lo: float, hi: float) -> Any:
    return ops.all((values >= lo) & (values <= hi))


def state_rules(contract: ServingContract, inputs: Sequence[str]) -> list[Rule]:
    """The rules a cached state must pass: one row per user, finite values, made by this model."""
    if not inputs:
        return []
    out: list[Rule] = []
    head = inputs[0]
    for n in inputs:
        out.append(Rule(n, "shape", lambda ops, x, n=n: ops.rows(x[n]) == ops.rows(x[head]),
                        f"{n} must have one row per user of the state."))
    rows = len(contract.extra.get("item_raw_ids", [])) or None
    for e in contract.state:
        n = STATE_PREFIX + e.name
        if e.dtype.startswith("float"):
            out.append(Rule(n, "value", lambda ops, x, n=n: ops.all(ops.isfinite(x[n])),
                            f"{n} holds NaN or infinite values: not a state adapt made."))
            if e.name.endswith("mask"):
                out.append(Rule(n, "value", lambda ops, x, n=n: ops.all((x[n] == 0.0) | (x[n] == 1.0)),
                                f"{n} must hold only 0 and 1: not a state adapt made."))
        elif e.name.endswith(("item", "item_id")) and rows:
            out.append(Rule(n, "value", lambda ops, x, n=n: ops.all((x[n] >= 0) & (x[n] < rows)),
                            f"{n} holds item rows outside the model's item table [0, {rows}): not a state adapt "
                            "made."))
        elif e.dtype.startswith("int") and e.name not in (STATE_FINGERPRINT, STATE_FORMAT, STATE_USER, STATE_TAG):
            out.append(Rule(n, "value", lambda ops, x, n=n: ops.all(x[n] >= 0),
                            f"{n} holds negative indices: not a state adapt made."))
    fingerprint, version = STATE_PREFIX + STATE_FINGERPRINT, STATE_PREFIX + STATE_FORMAT
    owner = STATE_PREFIX + STATE_USER
    if owner in inputs:
        out.append(Rule(owner, "value", lambda ops, x: ops.all(x[owner] == x[USER_ID]),
                        f"{owner}: this state was adapted for another user than {USER_ID} names."))
    out += [
        Rule(fingerprint, "value", lambda ops, x: ops.all(x[fingerprint] == contract.fingerprint),
             f"{fingerprint}: this state was made by another model; adapt again with this one."),
        Rule(version, "value", lambda ops, x: ops.all(x[version] == STATE_VERSION),
             f"{version}: this model reads state version {STATE_VERSION}."),
    ]
    return out


def check_numpy(rules_: Sequence[Rule], arrays: Mapping[str, np.ndarray], error: type[Exception]) -> None:
    """Raise ``error(message)`` at the first rule ``arrays`` break, in the order given (stage by
    stage, as :func:`rules` gives them)."""
    for rule in rules_:
        if not bool(rule.holds(NUMPY, arrays)):
            raise error(rule.message)


def assertions(rules_: Sequence[Rule], tensors: Mapping[str, Any]) -> list:
    """The in-graph checks of ``rules_`` but the ``"rank"`` stage (``tf.ensure_shape`` on the inputs
    does it: see the module docstring); each stage waits for the one before."""
    import tensorflow as tf

    done: list = []
    for stage in STAGES[1:]:
        with tf.control_dependencies(done):
            # Assert with only a string to print runs as one node: assert_equal's data (the
            # predicate) would wrap it in a cond, ~10 nodes a rule on every request
            done = done + [tf.debugging.Assert(rule.holds(TENSORFLOW, tensors), [rule.message])
                           for rule in rules_ if rule.stage == stage]
    return done


__all__ = ["NUMPY", "STAGES", "TENSORFLOW", "Rule", "assertions", "check_numpy", "rules", "state_rules"]
