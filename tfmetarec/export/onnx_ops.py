"""Lowering of TensorFlow gradient ops into standard ONNX ops, as tf2onnx handlers.

A learner's adaptation step differentiates the model inside the served graph, so the
graph holds the ops that ``tf.GradientTape`` emits. tf2onnx 1.17 has no handler for
several of them; the functions here fill that gap. Each takes tf2onnx's
``(ctx, node, name, args)`` and replaces ``node`` by ONNX nodes writing the same outputs.

Covered: ``BroadcastGradientArgs``, ``ReluGrad``, ``SigmoidGrad``, ``TanhGrad``,
``SoftplusGrad``, ``BiasAddGrad``, ``StridedSliceGrad`` (slices that only add axes or
take whole dimensions, which is what indexing like ``bias[:, None, :]`` produces) and
``DynamicStitch`` with scalar indices (the reduced-shape computation in the gradient of
``reduce_sum``), and ``ShapeN`` and ``ConcatOffset`` (the gradient of ``tf.concat``,
which the factorisation, content, hybrid and two-tower models use); also ``Log1p``,
which tf2onnx lacks, and ``SelectV2``, kept a true select (see :func:`select_v2`). Anything else a graph needs and tf2onnx lacks makes the export fail.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from onnx import TensorProto, helper
from tf2onnx import utils


class LoweringError(ValueError):
    """A gradient op appears in a form these handlers do not lower."""


def _replace(ctx, node, op_type: str, inputs: list[str], attr: dict | None = None):
    """Swap ``node`` for one ONNX node with the same outputs, shapes and dtypes."""
    outputs = list(node.output)
    shapes = [ctx.get_shape(o) for o in outputs]
    dtypes = [ctx.get_dtype(o) for o in outputs]
    ctx.remove_node(node.name)
    return ctx.make_node(op_type, inputs, attr=attr or {}, outputs=outputs, name=node.name,
                         shapes=shapes, dtypes=dtypes)


def _scalar(ctx, node, value: float, like: str) -> str:
    """A scalar constant of the dtype of tensor ``like``."""
    np_type = helper.tensor_dtype_to_np_dtype(ctx.get_dtype(like))
    return ctx.make_const(utils.make_name(node.name), np.array(value, np_type)).output[0]


def _op(ctx, op_type: str, inputs: list[str], attr: dict | None = None) -> str:
    return ctx.make_node(op_type, inputs, attr=attr or {}).output[0]


def log1p(ctx, node, name, args) -> None:
    """Log1p(x) = Log(1 + x) (tf2onnx 1.17 has no handler; the task encoder uses it)."""
    (x,) = node.input
    _replace(ctx, node, "Log", [_op(ctx, "Add", [x, _scalar(ctx, node, 1.0, x)])])


def select_v2(ctx, node, name, args) -> None:
    """SelectV2(cond, x, y) = Where(cond, x, y), a true select with numpy broadcasting.

    tf2onnx's own conversion turns a float select into ``cond * x + (1 - cond) * y``,
    so a NaN on the side not taken (a padded row's rating) leaks into the result; the
    served graphs sanitise padding with ``tf.where`` and need the select kept."""
    cond, x, y = node.input
    _replace(ctx, node, "Where", [cond, x, y])


def relu_grad(ctx, node, name, args) -> None:
    """ReluGrad(dy, x) = dy where x > 0, else 0."""
    dy, x = node.input
    zero = _scalar(ctx, node, 0.0, dy)
    positive = _op(ctx, "Greater", [x, _scalar(ctx, node, 0.0, x)])
    _replace(ctx, node, "Where", [positive, dy, zero])


def sigmoid_grad(ctx, node, name, args) -> None:
    """SigmoidGrad(y, dy) = dy * y * (1 - y)."""
    y, dy = node.input
    one_minus = _op(ctx, "Sub", [_scalar(ctx, node, 1.0, y), y])
    _replace(ctx, node, "Mul", [_op(ctx, "Mul", [dy, y]), one_minus])


def tanh_grad(ctx, node, name, args) -> None:
    """TanhGrad(y, dy) = dy * (1 - y^2)."""
    y, dy = node.input
    one_minus = _op(ctx, "Sub", [_scalar(ctx, node, 1.0, y), _op(ctx, "Mul", [y, y])])
    _replace(ctx, node, "Mul", [dy, one_minus])


def softplus_grad(ctx, node, name, args) -> None:
    """SoftplusGrad(dy, x) = dy * sigmoid(x)."""
    dy, x = node.input
    _replace(ctx, node, "Mul", [dy, _op(ctx, "Sigmoid", [x])])


def bias_add_grad(ctx, node, name, args) -> None:
    """BiasAddGrad(dy) sums dy over every axis but the channel axis."""
    (dy,) = node.input
    fmt = node.get_attr_value("data_format", b"NHWC")
    fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
    rank = ctx.get_rank(dy)
    if rank is None:
        raise LoweringError(f"{node.name}: BiasAddGrad needs the rank of its input to be known.")
    channel = 1 if fmt == "NCHW" and rank > 2 else rank - 1
    axes = ctx.make_const(utils.make_name(node.name), np.array([a for a in range(rank) if a != channel], np.int64))
    _replace(ctx, node, "ReduceSum", [dy, axes.output[0]], {"keepdims": 0})


def broadcast_gradient_args(ctx, node, name, args) -> None:
    """BroadcastGradientArgs(s0, s1) -> the axes each operand's gradient sums over.

    Both shapes are left-padded with ones to a common length; an operand's gradient
    sums over the axes where its padded shape is 1. TensorFlow leaves out axes where
    both are 1, but summing a gradient over an axis of size 1 changes nothing (the
    consumer reshapes the sum back to the operand's shape), so the results agree.
    """
    s0, s1 = node.input
    out_type = ctx.get_dtype(node.output[0])
    i64 = TensorProto.INT64
    shapes = [_op(ctx, "Cast", [s], {"to": i64}) for s in (s0, s1)]
    lengths = [_op(ctx, "Shape", [s]) for s in shapes]
    longest = _op(ctx, "Max", lengths)
    one = ctx.make_const(utils.make_name(node.name), np.array([1], np.int64)).output[0]
    minus_one = ctx.make_const(utils.make_name(node.name), np.array([-1], np.int64)).output[0]
    outputs = list(node.output)
    dtypes = [ctx.get_dtype(o) for o in outputs]
    ctx.remove_node(node.name)
    for k, (shape, length) in enumerate(zip(shapes, lengths)):
        ones = _op(ctx, "Expand", [one, _op(ctx, "Sub", [longest, length])])
        padded = _op(ctx, "Concat", [ones, shape], {"axis": 0})
        where_one = _op(ctx, "NonZero", [_op(ctx, "Equal", [padded, one])])  # [1, K]
        flat = _op(ctx, "Reshape", [where_one, minus_one])
        ctx.make_node("Cast", [flat], attr={"to": out_type}, outputs=[outputs[k]], shapes=[[-1]], dtypes=[dtypes[k]])


def strided_slice_grad(ctx, node, name, args) -> None:
    """StridedSliceGrad for slices that only insert axes or take whole dimensions.

    Such a slice is a reshape, so its gradient is ``dy`` reshaped to the input shape.
    Other slices (offsets, strides, shrinking an axis) are refused with the node's name.
    """
    shape, begin, end, strides, dy = node.input
    if not all(ctx.is_const(t) for t in (begin, end, strides)):
        raise LoweringError(f"{node.name}: StridedSliceGrad with non-constant begin/end/strides.")
    strides_v = ctx.get_tensor_value(strides)
    begin_mask = node.get_attr_value("begin_mask", 0)
    end_mask = node.get_attr_value("end_mask", 0)
    new_axis = node.get_attr_value("new_axis_mask", 0)
    ellipsis = node.get_attr_value("ellipsis_mask", 0)
    shrink = node.get_attr_value("shrink_axis_mask", 0)
    for i, stride in enumerate(strides_v):
        bit = 1 << i
        whole = bool(begin_mask & bit) and bool(end_mask & bit) and stride == 1
        if not (new_axis & bit or ellipsis & bit or whole) or shrink & bit:
            raise LoweringError(
                f"{node.name}: StridedSliceGrad of a slice that does more than add axes or take whole "
                "dimensions is not lowered; rewrite the indexing with tf.expand_dims / tf.reshape.")
    target = _op(ctx, "Cast", [shape], {"to": TensorProto.INT64})
    _replace(ctx, node, "Reshape", [dy, target])


def dynamic_stitch(ctx, node, name, args) -> None:
    """DynamicStitch where every index tensor has the rank of its data (scalar items).

    This is the form TensorFlow builds for the kept-dims shape in the gradient of a
    reduction. Later (index, value) pairs overwrite earlier ones, as in TensorFlow.
    """
    n = len(node.input) // 2
    indices, data = node.input[:n], node.input[n:]
    for idx, dat in zip(indices, data):
        if ctx.get_rank(idx) is None or ctx.get_rank(idx) != ctx.get_rank(dat):
            raise LoweringError(f"{node.name}: DynamicStitch is lowered only for one scalar per index.")
    i64 = TensorProto.INT64
    minus_one = ctx.make_const(utils.make_name(node.name), np.array([-1], np.int64)).output[0]
    flat_idx = [_op(ctx, "Reshape", [_op(ctx, "Cast", [i], {"to": i64}), minus_one]) for i in indices]
    flat_dat = [_op(ctx, "Reshape", [d, minus_one]) for d in data]
    size = _op(ctx, "Add", [
        _op(ctx, "ReduceMax", [_op(ctx, "Concat", flat_idx, {"axis": 0})], {"keepdims": 1}),
        ctx.make_const(utils.make_name(node.name), np.array([1], np.int64)).output[0],
    ])
    out = _op(ctx, "Expand", [_scalar(ctx, node, 0, data[0]), size])
    last = len(flat_idx) - 1
    for k, (idx, dat) in enumerate(zip(flat_idx, flat_dat)):
        column = _op(ctx, "Unsqueeze", [idx, ctx.make_const(utils.make_name(node.name), np.array([1], np.int64)).output[0]])
        if k < last:
            out = _op(ctx, "ScatterND", [out, column, dat])
        else:
            _replace(ctx, node, "ScatterND", [out, column, dat])


def _replace_outputs(ctx, node, sources: list[str]) -> None:
    """Swap a multi-output ``node`` for one node per output, output ``i`` taking
    tensor ``sources[i]`` (cast to the output's dtype when it differs)."""
    outputs = list(node.output)
    shapes = [ctx.get_shape(o) for o in outputs]
    dtypes = [ctx.get_dtype(o) for o in outputs]
    have = [ctx.get_dtype(src) for src in sources]
    ctx.remove_node(node.name)
    for i, src in enumerate(sources):
        cast = have[i] != dtypes[i]
        ctx.make_node("Cast" if cast else "Identity", [src], attr={"to": dtypes[i]} if cast else {},
                      outputs=[outputs[i]], name=node.name if i == 0 else utils.make_name(node.name),
                      shapes=[shapes[i]], dtypes=[dtypes[i]])


def _const(ctx, node, value) -> str:
    return ctx.make_const(utils.make_name(node.name), np.asarray(value)).output[0]


def shape_n(ctx, node, name, args) -> None:
    """ShapeN(x_0, ..., x_n) = Shape(x_i) for each input (in the gradient of ``tf.concat``)."""
    _replace_outputs(ctx, node, [_op(ctx, "Shape", [x]) for x in node.input])


def concat_offset(ctx, node, name, args) -> None:
    """ConcatOffset(axis, s_0, ..., s_n): for each shape ``s_i``, zeros with
    ``sum(s_j[axis] for j < i)`` at ``axis``: where input ``i`` starts in the
    concatenation (the gradient of ``tf.concat`` slices with these)."""
    axis, *shapes = node.input
    i64 = TensorProto.INT64
    dims = [_op(ctx, "Cast", [s], {"to": i64}) for s in shapes]
    rank = _op(ctx, "Gather", [_op(ctx, "Shape", [dims[0]]), _const(ctx, node, np.int64(0))])
    axis = _op(ctx, "Mod", [_op(ctx, "Cast", [axis], {"to": i64}), rank])
    ones = _op(ctx, "Expand", [_const(ctx, node, np.int64(1)), _op(ctx, "Shape", [dims[0]])])
    positions = _op(ctx, "Sub", [_op(ctx, "CumSum", [ones, _const(ctx, node, np.int64(0))]), ones])
    at_axis = _op(ctx, "Cast", [_op(ctx, "Equal", [positions, axis])], {"to": i64})
    start = _const(ctx, node, np.int64(0))
    offsets = []
    for d in dims:
        offsets.append(_op(ctx, "Mul", [at_axis, start]))
        start = _op(ctx, "Add", [start, _op(ctx, "Gather", [d, axis])])
    _replace_outputs(ctx, node, offsets)


HANDLERS: dict[str, Callable] = {
    "SelectV2": select_v2,
    "ShapeN": shape_n,
    "ConcatOffset": concat_offset,
    "BroadcastGradientArgs": broadcast_gradient_args,
    "ReluGrad": relu_grad,
    "SigmoidGrad": sigmoid_grad,
    "TanhGrad": tanh_grad,
    "SoftplusGrad": softplus_grad,
    "BiasAddGrad": bias_add_grad,
    "StridedSliceGrad": strided_slice_grad,
    "DynamicStitch": dynamic_stitch,
    "Log1p": log1p,
}


def custom_op_handlers(disabled: tuple[str, ...] = ()) -> dict[str, tuple[Callable, list]]:
    """The handlers in tf2onnx's ``custom_op_handlers`` form, minus ``disabled`` op types."""
    return {op: (fn, []) for op, fn in HANDLERS.items() if op not in disabled}
