"""ONNX graphs of the serving signatures, adaptation step included.

``export_onnx`` converts one signature of :class:`ServingModule` with tf2onnx, lowering
the gradient ops of the inner loop with :mod:`tfmetarec.export.onnx_ops`. It reports
success only after the graph holds nothing but standard ONNX ops, passes the ONNX
checker's full check, loads in ONNX Runtime and matches TensorFlow on a sample request.
Input and output names are those of the SavedModel signature (``support_user_id``, ...,
``scores``), with dynamic task, support and query axes.

tf2onnx drops TensorFlow's runtime assertions, so the request checks of the SavedModel
live in :class:`OnnxScorer`, the ONNX Runtime client: shapes, dtypes, mask values and
NaN ratings are refused with a message naming the input. Out-of-range IDs are mapped to
the out-of-vocabulary index inside the graph, as in the SavedModel.

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

from tfmetarec.export.onnx_ops import LoweringError, custom_op_handlers
from tfmetarec.export.saved_model import ServingModule, feature_widths
from tfmetarec.learners.base import MetaLearner
from tfmetarec.types import ITEM_ID, MASK, RATING, USER_FIELDS, USER_ID

SIGNATURES = ("adapt_and_score", "serving_default", "adapt", "score_with_state")
METADATA_KEY = "tfmetarec_request"


def _require(module: str):
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"ONNX export needs {module!r}: pip install 'tfmetarec[onnx]'.") from err


def sample_request(learner: MetaLearner, tasks: int = 2, support: int = 4, query: int = 3,
                   seed: int = 0) -> dict[str, np.ndarray]:
    """A random valid request for every input a signature may take (support and query)."""
    rng = np.random.default_rng(seed)
    model = learner.model
    columns = [int(f.vocab_size) for f in model.user_field_specs for _ in range(int(f.width))]
    out: dict[str, np.ndarray] = {}
    for part, rows in (("support", support), ("query", query)):
        out[f"{part}_{USER_ID}"] = rng.integers(0, max(int(getattr(model, "num_users", 1)), 1), (tasks, rows)).astype("int32")
        out[f"{part}_{ITEM_ID}"] = rng.integers(0, max(model.num_table_items, 1), (tasks, rows)).astype("int32")
        cols = [rng.integers(0, v, (tasks, rows)) for v in columns]
        out[f"{part}_{USER_FIELDS}"] = (np.stack(cols, -1) if cols else np.zeros((tasks, rows, 0))).astype("int32")
    out[f"support_{RATING}"] = rng.integers(1, 6, (tasks, support)).astype("float32")
    mask = np.ones((tasks, support), "float32")
    mask[0, support // 2:] = 0.0
    out[f"support_{MASK}"] = mask
    return out


def _input_specs(fn) -> dict[str, tf.TensorSpec]:
    return dict(fn.input_signature[0])


def _unknown_ops(model) -> list[str]:
    from onnx import defs

    return sorted({f"{n.op_type} ({n.name})" for n in model.graph.node
                   if not defs.has(n.op_type, n.domain or "")})


def export_onnx(
    learner: MetaLearner,
    path: str | os.PathLike,
    signature: str = "adapt_and_score",
    opset: int = 17,
    atol: float = 1e-4,
    disabled_handlers: tuple[str, ...] = (),
) -> Path:
    """Write one serving signature of ``learner`` as an ONNX file and prove it runs.

    Raises :class:`LoweringError` naming the ops left unconverted, ``onnx`` checker
    errors for an invalid graph, and ``ValueError`` when ONNX Runtime disagrees with
    TensorFlow by more than ``atol`` on a sample request. ``disabled_handlers`` leaves
    out some of the gradient-op lowerings (for tests of the failure path).
    """
    if signature not in SIGNATURES:
        raise ValueError(f"Unknown signature {signature!r}; choose from {SIGNATURES}.")
    tf2onnx = _require("tf2onnx")
    onnx = _require("onnx")
    ort = _require("onnxruntime")
    path = Path(path)
    module = ServingModule(learner)
    fn = getattr(module, signature)
    specs = _input_specs(fn)
    try:
        model, _ = tf2onnx.convert.from_function(
            fn, input_signature=[specs], opset=opset,
            custom_op_handlers=custom_op_handlers(disabled_handlers),
        )
    except Exception as err:  # tf2onnx raises the first handler failure it met
        raise LoweringError(f"tf2onnx could not convert {signature!r}: {err}") from err
    unknown = _unknown_ops(model)
    if unknown:
        raise LoweringError(
            f"{signature!r} still holds ops that are not standard ONNX after conversion: {', '.join(unknown)}.")
    model.graph.name = signature
    request = {"signature": signature, "widths": feature_widths(learner), "inputs": sorted(specs)}
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(request)
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, os.fspath(path))

    sample = {k: v for k, v in sample_request(learner).items() if k in specs}
    if signature == "score_with_state":
        state = module.adapt({k: tf.constant(v) for k, v in sample_request(learner).items() if k.startswith("support_")})
        sample.update({k: v.numpy() for k, v in state.items()})
    expected = fn({k: tf.constant(v) for k, v in sample.items()})
    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    got = session.run(None, sample)
    names = [o.name for o in session.get_outputs()]
    for name, value in zip(names, got):
        want = expected[name].numpy()
        if want.shape != value.shape or not np.allclose(value, want, atol=atol):
            diff = np.max(np.abs(value - want)) if want.shape == value.shape else f"shape {value.shape} vs {want.shape}"
            path.unlink(missing_ok=True)
            raise ValueError(f"ONNX Runtime disagrees with TensorFlow on {signature!r} output {name!r}: {diff}.")
    return path


def quantize_onnx(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Dynamic int8 quantisation of the weights of ``src`` (matmuls), written to ``dst``."""
    _require("onnxruntime")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(os.fspath(src), os.fspath(dst), weight_type=QuantType.QInt8)
    return Path(dst)


class OnnxScorer:
    """An ONNX Runtime session for one exported signature, with the request checks.

    ``scorer(request)`` takes a mapping from input names to arrays (lists are fine) and
    returns the outputs by name. Requests are checked before they reach the graph:
    every input present, integer IDs, ``[tasks, rows]`` agreeing across a part, support
    and query with the same number of tasks, a 0/1 mask and finite ratings on rows
    whose mask is 1. An empty support (zero rows) is sent as one masked row.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        ort = _require("onnxruntime")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"No ONNX model at {self.path}.")
        self.session = ort.InferenceSession(os.fspath(self.path), options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise ValueError(f"{self.path} was not written by tfmetarec.export.export_onnx (no request metadata).")
        info = json.loads(meta[METADATA_KEY])
        self.signature: str = info["signature"]
        self.widths: dict[str, int] = info["widths"]
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        self.outputs = [o.name for o in self.session.get_outputs()]

    def check(self, request: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The request as arrays of the graph's dtypes; raises ``ValueError`` on bad input."""
        missing = sorted(set(self.inputs) - set(request))
        if missing:
            raise ValueError(f"Request lacks inputs {missing} for {self.signature!r}.")
        unknown = sorted(set(request) - set(self.inputs))
        if unknown:
            raise ValueError(f"Request has inputs {unknown} that {self.signature!r} does not take.")
        arrays: dict[str, np.ndarray] = {}
        for name, info in self.inputs.items():
            value = np.asarray(request[name])
            want = np.int32 if info.type == "tensor(int32)" else np.float32
            if want is np.int32 and value.size and not np.issubdtype(value.dtype, np.integer):
                raise ValueError(f"{name} must hold integer IDs, got {value.dtype}.")
            if value.ndim != len(info.shape):
                raise ValueError(f"{name} must have rank {len(info.shape)} {info.shape}, got shape {value.shape}.")
            key = name.split("_", 1)[1]
            width = self.widths.get(key)
            if len(info.shape) == 3 and width is not None and value.shape[-1] != width:
                raise ValueError(f"{name} must have {width} columns in its last axis, got {value.shape[-1]}.")
            arrays[name] = value.astype(want)
        for part in ("support", "query"):
            keys = [n for n in arrays if n.startswith(f"{part}_")]
            if not keys:
                continue
            lead = arrays[keys[0]].shape[:2]
            for n in keys:
                if arrays[n].shape[:2] != lead:
                    raise ValueError(f"{n} has [tasks, rows] {arrays[n].shape[:2]}, but {keys[0]} has {lead}.")
        if "support_user_id" in arrays and "query_user_id" in arrays:
            if arrays["support_user_id"].shape[0] != arrays["query_user_id"].shape[0]:
                raise ValueError("support and query must have the same number of tasks.")
        if "support_user_id" in arrays and arrays["support_user_id"].shape[1] == 0:
            # An empty support axis: one masked row means the same (the learner's prior)
            # and keeps zero-sized shapes out of ONNX reshapes.
            for name in [n for n in arrays if n.startswith("support_")]:
                a = arrays[name]
                arrays[name] = np.zeros((a.shape[0], 1, *a.shape[2:]), a.dtype)
        if f"support_{MASK}" in arrays:
            mask, rating = arrays[f"support_{MASK}"], arrays[f"support_{RATING}"]
            if not np.isin(mask, (0.0, 1.0)).all():
                raise ValueError("support_mask must hold only 0 and 1.")
            if not np.isfinite(rating[mask > 0]).all():
                raise ValueError("support_rating has NaN or infinite values on real (mask 1) rows.")
            arrays[f"support_{RATING}"] = np.where(mask > 0, rating, 0.0).astype(np.float32)
        return arrays

    def __call__(self, request: Mapping[str, Any]) -> dict[str, np.ndarray]:
        arrays = self.check(request)
        return dict(zip(self.outputs, self.session.run(self.outputs, arrays)))


__all__ = ["LoweringError", "OnnxScorer", "export_onnx", "quantize_onnx", "sample_request"]
