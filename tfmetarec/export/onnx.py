"""ONNX graphs of the serving signatures, one static graph per bucket, and their client.

:func:`export_onnx` converts the :class:`~tfmetarec.export.core.ServingCore` functions
with tf2onnx at each bucket's fixed shape (users ``T`` and support ``S`` static, the
query axis free), lowering the gradient ops of the inner loop with
:mod:`tfmetarec.export.onnx_ops`. With static shapes the gradient graph's shape
arithmetic folds away at conversion. Each file is checked before the export reports
success: only standard ONNX ops, the ONNX checker's full check, ONNX Runtime loads it
and agrees with TensorFlow on a sample request. ``contract.json`` beside the files
carries the serving contract, the vocabularies and the item table's raw IDs.

ONNX has no hash tables and no string functions, so :class:`OnnxRecommender`, the ONNX
Runtime client, does what the SavedModel does in its graph: it checks the request with
:func:`~tfmetarec.export.contract.check_request`, looks raw IDs and field values up in the
encoder's vocabularies (the same rules as :class:`~tfmetarec.export.raw_inputs.RawInputs`),
pads to the bucket, runs the graph and cuts the answer back. Its answers equal the
SavedModel's on every request the SavedModel accepts.

Needs the ``onnx`` extra (``pip install "tfmetarec[onnx]"``).
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfmetarec.data.features import FeatureEncoder
from tfmetarec.export.names import (
    CONTRACT_FILE,
    NEW_ITEM,
    NEW_MASK,
    NEW_RATING,
    QUERY_ITEM,
    SCORES,
    STATE_PREFIX,
    STATE_TAG,
    STATE_USER,
    SUPPORT_ITEM,
    SUPPORT_MASK,
    SUPPORT_RATING,
    TOP_ITEMS,
    USER_ID,
    bucket_name,
)
from tfmetarec.export.contract import CANDIDATES, EXHAUSTIVE_UP_TO, Buckets, RequestError, ServingContract, check_request
from tfmetarec.export.onnx_ops import LoweringError, custom_op_handlers
from tfmetarec.export.saved_model import ServingModule
from tfmetarec.export.state_tag import check_key, new_key, read_key, tag_numpy, write_key
from tfmetarec.learners.base import MetaLearner
from tfmetarec.models.functional import graph_function

ONNX_SIGNATURES = ("adapt_and_score", "recommend", "adapt", "score_with_state", "update_state",
                   "recommend_with_state")
STATE_ONLY = ("score_with_state", "recommend_with_state")  # no support axis: one graph per user bucket
DEFAULT_ONNX_BUCKETS = Buckets(users=(1,), support=Buckets().support, query=Buckets().query)
"""One user per graph (the client runs a request's users one after another), the support and
query buckets of the serving contract."""


def onnx_buckets(buckets: Buckets | None = None) -> Buckets:
    """The ONNX graphs' buckets for a SavedModel's ``buckets``: the same support and query sizes,
    one user per graph (the client splits a request)."""
    return DEFAULT_ONNX_BUCKETS if buckets is None else Buckets(users=(1,), support=buckets.support,
                                                                query=buckets.query)
# the encoded graph inputs
G_USER, G_FIELDS, G_ITEMS, G_RATING, G_MASK, G_QUERY = (
    "user_index", "user_fields", "support_item", "support_rating", "support_mask", "query_item")
G_NEW_ITEMS, G_NEW_RATING, G_NEW_MASK = "new_item", "new_rating", "new_mask"
NEXT = "next_"  # update_state's outputs in ONNX: next_state_<name> (the client names them state_<name>)


def _require(module: str):
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"ONNX export needs {module!r}: pip install 'tfmetarec[onnx]'.") from err


def file_name(signature: str, users: int, support: int | None) -> str:
    """``adapt_and_score.t1.s32.onnx`` (:func:`~tfmetarec.export.names.bucket_name` + ``.onnx``)."""
    return bucket_name(signature, users, support) + ".onnx"


def _graph_specs(module: ServingModule, signature: str, users: int, support: int | None) -> dict:
    width = module.contract.user_fields_width
    user = {G_USER: tf.TensorSpec([users], tf.int32, G_USER), G_FIELDS: tf.TensorSpec([users, width], tf.int32, G_FIELDS)}
    sup = {} if support is None else {
        G_ITEMS: tf.TensorSpec([users, support], tf.int32, G_ITEMS),
        G_RATING: tf.TensorSpec([users, support], tf.float32, G_RATING),
        G_MASK: tf.TensorSpec([users, support], tf.float32, G_MASK)}
    query = {G_QUERY: tf.TensorSpec([users, None], tf.int32, G_QUERY)}
    state = {STATE_PREFIX + e.name: tf.TensorSpec([users, *e.shape], tf.as_dtype(e.dtype), STATE_PREFIX + e.name)
             for e in module.contract.core_state}
    new = {} if support is None else {
        G_NEW_ITEMS: tf.TensorSpec([users, support], tf.int32, G_NEW_ITEMS),
        G_NEW_RATING: tf.TensorSpec([users, support], tf.float32, G_NEW_RATING),
        G_NEW_MASK: tf.TensorSpec([users, support], tf.float32, G_NEW_MASK)}
    return {"adapt_and_score": {**user, **sup, **query}, "recommend": {**user, **sup}, "adapt": {**user, **sup},
            "score_with_state": {**state, **query}, "update_state": {**state, **new},
            "recommend_with_state": state}[signature]


def _graph_function(module: ServingModule, signature: str):
    core = module.core

    def adapt_and_score(x):
        state = core.adapt(x[G_USER], x[G_FIELDS], x[G_ITEMS], x[G_RATING], x[G_MASK])
        return {SCORES: core.score(state, x[G_QUERY])}

    def recommend(x):
        state = core.adapt(x[G_USER], x[G_FIELDS], x[G_ITEMS], x[G_RATING], x[G_MASK])
        items, scores = core.recommend(state, x[G_ITEMS], x[G_MASK])
        return {TOP_ITEMS: items, SCORES: scores}

    def adapt(x):
        return {STATE_PREFIX + k: v for k, v in
                core.adapt(x[G_USER], x[G_FIELDS], x[G_ITEMS], x[G_RATING], x[G_MASK]).items()}

    def state_of(x):
        return {k[len(STATE_PREFIX):]: v for k, v in x.items() if k.startswith(STATE_PREFIX)}

    def score_with_state(x):
        return {SCORES: core.score(state_of(x), x[G_QUERY])}

    def update_state(x):  # an ONNX graph cannot give an output the name of an input
        new = core.update(state_of(x), x[G_NEW_ITEMS], x[G_NEW_RATING], x[G_NEW_MASK])
        return {NEXT + STATE_PREFIX + k: v for k, v in new.items()}

    def recommend_with_state(x):
        items, scores = core.recommend_state(state_of(x))
        return {TOP_ITEMS: items, SCORES: scores}

    return {"adapt_and_score": adapt_and_score, "recommend": recommend, "adapt": adapt,
            "score_with_state": score_with_state, "update_state": update_state,
            "recommend_with_state": recommend_with_state}[signature]


def _sample(specs: dict, module: ServingModule, seed: int = 0) -> dict[str, np.ndarray]:
    """A valid encoded input for a graph: real rows and padded rows with garbage on them."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    rows = module.learner.model.num_table_items
    for name, spec in specs.items():
        shape = [d if d is not None else 5 for d in spec.shape.as_list()]
        if name == G_USER:
            out[name] = rng.integers(0, max(int(getattr(module.learner.model, "num_users", 1)), 1), shape)
        elif name == G_FIELDS:
            sizes = [s.vocab_size for s in module.raw.user_specs for _ in range(s.width)]
            out[name] = np.stack([rng.integers(0, v, shape[0]) for v in sizes], -1) if sizes else np.zeros(shape)
        elif name in (G_ITEMS, G_QUERY):
            out[name] = rng.integers(0, rows, shape)
        elif name == G_RATING:
            out[name] = rng.integers(1, 6, shape).astype("float32")
        elif name in (G_MASK, G_NEW_MASK):
            mask = np.ones(shape, "float32")
            mask[:, shape[1] // 2:] = 0.0
            out[name] = mask
        elif name == G_NEW_ITEMS:
            out[name] = rng.integers(0, rows, shape)
        elif name == G_NEW_RATING:
            out[name] = rng.integers(1, 6, shape).astype("float32")
        else:
            continue
        out[name] = np.asarray(out[name]).astype(spec.dtype.as_numpy_dtype)
    for rating, mask in ((G_RATING, G_MASK), (G_NEW_RATING, G_NEW_MASK)):
        if rating in out:
            out[rating][out[mask] == 0] = np.nan  # garbage on padded rows must change nothing
    if any(n.startswith(STATE_PREFIX) for n in specs):
        users = int(next(iter(specs.values())).shape[0])
        x = {k: tf.constant(v) for k, v in _sample(_graph_specs(module, "adapt", users, 8), module, seed).items()}
        state = module.core.adapt(x[G_USER], x[G_FIELDS], x[G_ITEMS], x[G_RATING], x[G_MASK])
        out.update({STATE_PREFIX + k: v.numpy() for k, v in state.items()})
    return out


def _unknown_ops(model) -> list[str]:
    from onnx import defs

    return sorted({f"{n.op_type} ({n.name})" for n in model.graph.node if not defs.has(n.op_type, n.domain or "")})


CATCH_ERRORS = "TF2ONNX_CATCH_ERRORS"
"""tf2onnx's switch for skipping an optimiser that fails (by copying the graph before each)."""


def _tf2onnx(tf2onnx, fn, specs: dict, opset: int, disabled_handlers: tuple[str, ...]):
    """``fn`` as an ONNX model. tf2onnx copies the whole graph before each of its optimisers so that
    one that fails can be skipped (~30 % of a conversion here); the conversion runs without the
    copies first (tf2onnx's ``TF2ONNX_CATCH_ERRORS``, set for the call only) and again with them
    only if that fails. Both give the same graph (the export checks it against TensorFlow anyway)."""
    def convert():
        return tf2onnx.convert.from_function(fn, input_signature=[specs], opset=opset,
                                             custom_op_handlers=custom_op_handlers(disabled_handlers))[0]

    before = os.environ.get(CATCH_ERRORS)
    os.environ[CATCH_ERRORS] = "FALSE"
    try:
        return convert()
    except Exception:  # an optimiser failed (or the lowering did: then the second try fails too)
        pass
    finally:
        if before is None:
            os.environ.pop(CATCH_ERRORS, None)
        else:
            os.environ[CATCH_ERRORS] = before
    return convert()


def _convert(module: ServingModule, signature: str, users: int, support: int | None, path: Path, opset: int,
             atol: float, disabled_handlers: tuple[str, ...]) -> Path:
    tf2onnx, onnx, ort = _require("tf2onnx"), _require("onnx"), _require("onnxruntime")
    specs = _graph_specs(module, signature, users, support)
    fn = graph_function(_graph_function(module, signature), input_signature=[specs])
    try:
        model = _tf2onnx(tf2onnx, fn, specs, opset, disabled_handlers)
    except Exception as err:  # tf2onnx raises the first handler failure it met
        raise LoweringError(f"tf2onnx could not convert {signature!r}: {err}") from err
    unknown = _unknown_ops(model)
    if unknown:
        raise LoweringError(
            f"{signature!r} still holds ops that are not standard ONNX after conversion: {', '.join(unknown)}.")
    model.graph.name = signature
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, os.fspath(path))
    sample = _sample(specs, module)
    expected = fn({k: tf.constant(v) for k, v in sample.items()})
    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, sample)))
    for name, want in expected.items():
        want = want.numpy()
        value = got[name]
        close = value.shape == want.shape and (np.array_equal(value, want) if want.dtype.kind in "iu"
                                               else np.allclose(value, want, atol=atol, equal_nan=False))
        if not close:
            diff = (np.max(np.abs(value.astype("float64") - want)) if want.shape == value.shape
                    else f"shape {value.shape} vs {want.shape}")
            path.unlink(missing_ok=True)
            raise ValueError(f"ONNX Runtime disagrees with TensorFlow on {path.name} output {name!r}: {diff}.")
    return path


def export_onnx(
    learner: MetaLearner,
    folder: str | os.PathLike,
    *,
    encoder: FeatureEncoder,
    signatures: tuple[str, ...] = ONNX_SIGNATURES,
    buckets: Buckets = DEFAULT_ONNX_BUCKETS,
    top_k: int = 50,
    opset: int = 17,
    atol: float = 1e-4,
    disabled_handlers: tuple[str, ...] = (),
    rating_range: tuple[float, float] | None = None,
    state_key: tuple[int, int] | None = None,
    candidates: int | str | None = CANDIDATES,
    exhaustive_up_to: int = EXHAUSTIVE_UP_TO,
) -> Path:
    """Write ``signatures`` as one ONNX file per (users, support) bucket into ``folder``, with
    ``contract.json``; returns the folder. Refuses a folder that already holds an export.

    Raises :class:`LoweringError` naming the ops left unconverted, ``onnx`` checker errors
    for an invalid graph, and ``ValueError`` when ONNX Runtime disagrees with TensorFlow
    on a sample (padded rows holding NaN included). ``disabled_handlers`` leaves out
    gradient-op lowerings (for tests of the failure path). ``state_key``: the secret key of the
    states' integrity tags (default: a fresh random one), kept in ``state_key.json`` for the
    client (:mod:`tfmetarec.export.state_tag`). ``candidates`` and ``exhaustive_up_to``: the
    two-stage ``recommend`` of a large catalogue, as in :func:`~tfmetarec.export.export_saved_model`.
    """
    unknown = sorted(set(signatures) - set(ONNX_SIGNATURES))
    if unknown:
        raise ValueError(f"Unknown ONNX signatures {unknown}; choose from {ONNX_SIGNATURES}.")
    folder = Path(folder)
    if (folder / CONTRACT_FILE).exists():
        raise FileExistsError(f"{folder} already holds an ONNX export; choose another folder.")
    key = check_key(state_key) if state_key is not None else new_key()
    module = ServingModule(learner, encoder, buckets, top_k, False, rating_range, key, candidates, exhaustive_up_to,
                           static=False)  # the ONNX graphs are static per bucket already
    written: dict[str, str] = {}
    try:
        for signature in signatures:
            for users in buckets.users:
                for support in (None,) if signature in STATE_ONLY else buckets.support:
                    name = file_name(signature, users, support)
                    _convert(module, signature, users, support, folder / name, opset, atol, disabled_handlers)
                    written[name] = signature
    except BaseException:
        for name in written:
            (folder / name).unlink(missing_ok=True)
        raise
    contract = module.contract.to_dict()
    contract["onnx"] = {"files": written, "signatures": list(signatures)}
    (folder / CONTRACT_FILE).write_text(json.dumps(contract, indent=1), encoding="utf-8")
    write_key(folder, key)
    return folder


def quantize_onnx(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Dynamic int8 quantisation of the weights of ``src`` (matmuls), written to ``dst``."""
    _require("onnxruntime")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(os.fspath(src), os.fspath(dst), weight_type=QuantType.QInt8)
    return Path(dst)


FIELD_MEMORY = 100_000
"""How many raw user-field values an :class:`OnnxRecommender` remembers the encoding of."""


class OnnxRecommender:
    """An ONNX Runtime client for a folder written by :func:`export_onnx`.

    ``client(signature, request)`` takes the same raw request as the SavedModel signature
    of that name (see :mod:`tfmetarec.export.contract`) and returns the same outputs by
    name. Sessions are opened on first use, one per bucket file.
    """

    def __init__(self, folder: str | os.PathLike, threads: int | None = None):
        self.ort = _require("onnxruntime")
        self.folder = Path(folder)
        path = self.folder / CONTRACT_FILE
        if not path.is_file():
            raise FileNotFoundError(f"No {CONTRACT_FILE} in {self.folder}: not a folder written by export_onnx.")
        info = json.loads(path.read_text(encoding="utf-8"))
        self.contract = ServingContract.from_dict(info)
        extra = self.contract.extra
        self.encoder = FeatureEncoder.from_dict(extra["encoder"])
        self.files: dict[str, str] = extra["onnx"]["files"]
        self.signatures = tuple(extra["onnx"]["signatures"])
        self._state_key = read_key(self.folder)
        self.threads = threads
        self._sessions: dict[str, Any] = {}
        self._output_names: dict[str, tuple[list[str], list[str]]] = {}
        self._prepare_lookups()

    def session(self, name: str):
        if name not in self._sessions:
            options = self.ort.SessionOptions()
            if self.threads:
                options.intra_op_num_threads = self.threads
                options.inter_op_num_threads = 1
            self._sessions[name] = self.ort.InferenceSession(os.fspath(self.folder / name), options,
                                                             providers=["CPUExecutionProvider"])
        return self._sessions[name]

    # -- encoding (the SavedModel's RawInputs, in numpy) --------------------------------------------
    def _prepare_lookups(self) -> None:
        """Sorted ID keys and the user fields' transforms (their numpy faces: the encoder's rules)."""
        encoder = self.encoder
        raw = np.asarray(self.contract.extra["item_raw_ids"], np.int64)
        rows = np.flatnonzero(raw >= 0)
        order = np.argsort(raw[rows], kind="stable")
        self._item_keys, self._item_rows = raw[rows][order], rows[order].astype(np.int32)
        self._user_keys = np.asarray(encoder.user_vocab or [], np.int64)  # sorted by the encoder
        self._user_rows = np.arange(1, len(self._user_keys) + 1, dtype=np.int32)
        self._fields = [(f, encoder.transform_of(f), {}) for f in encoder.fields_of("user")]

    @staticmethod
    def _find(keys: np.ndarray, values: np.ndarray, found: np.ndarray) -> np.ndarray:
        """``found[i]`` where ``keys[i] == value``, else 0 (``keys`` sorted)."""
        if len(keys) == 0:
            return np.zeros(values.shape, np.int32)
        at = keys.searchsorted(values)
        np.minimum(at, len(keys) - 1, out=at)
        out = found[at].astype(np.int32, copy=False)
        out[keys[at] != values] = 0
        return out

    def _users(self, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        ids = self._find(self._user_keys, arrays[USER_ID], self._user_rows)
        cols = [self._field(f"user_{f.name}", transform, seen, arrays[f"user_{f.name}"])
                for f, transform, seen in self._fields]
        fields = np.stack(cols, axis=1) if cols else np.zeros((len(ids), 0), np.int32)
        return ids, fields

    @staticmethod
    def _field(name: str, transform: Any, seen: dict, values: np.ndarray) -> np.ndarray:
        """One user field's indices. A single-valued field remembers the index of each known raw
        value it has encoded (``seen``, keyed by type and value; at most ``FIELD_MEMORY`` values of
        at most 64 characters, and none that encodes to 0, so unknown or junk values cannot fill
        it), so a request of values met before costs a dict lookup each instead of the
        transform's parsing; a list field always runs the transform."""
        keys = [(type(v), v) for v in values.tolist()]
        try:
            return np.array([seen[k] for k in keys], np.int32)
        except (KeyError, TypeError):  # a value not met yet, or a list cell (unhashable)
            pass
        try:
            out = transform.numpy(values, label=name)
        except ValueError as err:
            raise RequestError(str(err)) from None
        if out.ndim == 1 and len(seen) < FIELD_MEMORY:
            try:
                seen.update((k, i) for k, i in zip(keys, out.tolist()) if i and len(k[1]) <= 64)
            except TypeError:  # an unhashable value: not remembered
                pass
        return out

    def _rows(self, raw: np.ndarray) -> np.ndarray:
        return self._find(self._item_keys, np.asarray(raw, np.int64), self._item_rows)

    @staticmethod
    def _pad(x: np.ndarray, users: int, rows: int | None = None) -> np.ndarray:
        """``x`` with zeros after its users (and rows) up to the bucket's sizes."""
        shape = (users, *(() if rows is None else (rows,)), *x.shape[1 if rows is None else 2:])
        out = np.zeros(shape, x.dtype)
        if x.ndim == 2:
            out[: x.shape[0], : x.shape[1]] = x
        else:
            out[tuple(slice(0, n) for n in x.shape)] = x
        return out

    def _run(self, signature: str, users: int, support: int | None, feeds: dict[str, np.ndarray]) -> dict:
        name = file_name(signature, users, support)
        if name not in self.files:
            raise RequestError(f"The export has no {signature!r} graph for {users} users and support {support}.")
        session = self.session(name)
        names = self._output_names.get(name)
        if names is None:  # the graph's output names, and the client's (without the NEXT prefix)
            outs = [o.name for o in session.get_outputs()]
            names = self._output_names[name] = (outs, [k[len(NEXT):] if k.startswith(NEXT) else k for k in outs])
        return dict(zip(names[1], session.run(names[0], feeds)))

    def __call__(self, signature: str, request: Mapping[str, Any]) -> dict[str, np.ndarray]:
        prior = signature == "serving_default" and "adapt_and_score" in self.signatures
        if signature not in self.signatures and not prior:
            raise RequestError(f"This ONNX export has signatures {list(self.signatures)}, not {signature!r}.")
        arrays = check_request(self.contract, signature, request, limit_users=False)
        if STATE_PREFIX + STATE_TAG in arrays:
            state = {e.name: arrays[STATE_PREFIX + e.name] for e in self.contract.state if e.name != STATE_TAG}
            if not np.array_equal(tag_numpy(state, self._state_key), arrays[STATE_PREFIX + STATE_TAG]):
                raise RequestError(f"{STATE_PREFIX}{STATE_TAG}: the state was changed, cut, or made by another "
                                   "export; adapt again.")
        if prior:  # no ratings yet: adapt on an empty support
            count = arrays[USER_ID].shape[0]
            arrays.update({SUPPORT_ITEM: np.zeros((count, 0), np.int64), SUPPORT_RATING: np.zeros((count, 0), np.float32),
                           SUPPORT_MASK: np.zeros((count, 0), np.float32)})
            signature = "adapt_and_score"
        count = next(iter(arrays.values())).shape[0]
        step = self.contract.buckets.limit("users")
        if count <= step:  # one call: no slicing, no concatenation
            out = self._call(signature, arrays)
        else:
            parts = [self._call(signature, {k: v[lo:lo + step] for k, v in arrays.items()})
                     for lo in range(0, count, step)]
            out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        if signature in ("adapt", "update_state"):  # seal the state: its user, then the tag over it all
            out[STATE_PREFIX + STATE_USER] = np.array(arrays[USER_ID], np.int64)  # a copy: not the request's
            state = {k[len(STATE_PREFIX):]: v for k, v in out.items()}
            out[STATE_PREFIX + STATE_TAG] = tag_numpy(state, self._state_key)
        return out

    def _call(self, signature: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        buckets = self.contract.buckets
        count = next(iter(arrays.values())).shape[0]
        users = buckets.size_for("users", count)
        feeds: dict[str, np.ndarray] = {}
        support = None
        if signature in ("score_with_state", "update_state", "recommend_with_state"):
            for e in self.contract.core_state:
                feeds[STATE_PREFIX + e.name] = self._pad(arrays[STATE_PREFIX + e.name].astype(e.dtype), users)
            if signature == "update_state":
                rows = arrays[NEW_ITEM].shape[1]
                support = buckets.size_for("support", rows)
                mask = arrays[NEW_MASK]
                feeds[G_NEW_ITEMS] = self._pad(self._rows(arrays[NEW_ITEM]), users, support)
                feeds[G_NEW_RATING] = self._pad(np.where(mask > 0, arrays[NEW_RATING], 0.0).astype(np.float32),
                                                users, support)
                feeds[G_NEW_MASK] = self._pad(mask, users, support)
        else:
            ids, fields = self._users(arrays)
            feeds[G_USER], feeds[G_FIELDS] = self._pad(ids, users), self._pad(fields, users)
            rows = arrays[SUPPORT_ITEM].shape[1]
            support = buckets.size_for("support", rows)
            mask = arrays[SUPPORT_MASK]
            feeds[G_ITEMS] = self._pad(self._rows(arrays[SUPPORT_ITEM]), users, support)
            feeds[G_RATING] = self._pad(np.where(mask > 0, arrays[SUPPORT_RATING], 0.0).astype(np.float32), users,
                                        support)
            feeds[G_MASK] = self._pad(mask, users, support)
        q_rows = None
        if QUERY_ITEM in arrays:
            q_rows = arrays[QUERY_ITEM].shape[1]
            feeds[G_QUERY] = self._pad(self._rows(arrays[QUERY_ITEM]), users, buckets.size_for("query", q_rows))
        out = self._run(signature, users, support, feeds)
        if SCORES in out and q_rows is not None:
            out[SCORES] = out[SCORES][:, :q_rows]
        return {k: v[:count] for k, v in out.items()}


__all__ = ["DEFAULT_ONNX_BUCKETS", "LoweringError", "OnnxRecommender", "export_onnx", "onnx_buckets", "quantize_onnx"]
