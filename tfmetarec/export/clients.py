"""Request builders for TF Serving: REST bodies and gRPC ``PredictRequest`` protos.

Both check the request against the export's contract first
(:func:`~tfmetarec.export.contract.check_request`), so a bad request fails here with a
message naming the input instead of reaching the server, and by default send a one-user
request to the export's static signature for its support bucket, its ratings padded
(:func:`~tfmetarec.export.contract.bucketed_request`; ``static=False``: the signature named). The gRPC builder needs the
client protos of ``tensorflow-serving-api`` (the ``serving`` extra; install it with your
TensorFlow pinned, e.g. ``pip install "tfmetarec[serving]" "tensorflow==$(installed)"``);
the TF Serving server itself is a separate binary or Docker image.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tfmetarec.export.contract import ServingContract, bucketed_request, check_request

TF_DTYPES = {"int64": "int64", "int32": "int32", "float32": "float32", "string": "string"}


def _checked(contract: ServingContract, signature: str, request: Mapping[str, Any],
             static: bool) -> tuple[str, dict[str, np.ndarray]]:
    return bucketed_request(contract, signature, request) if static else (
        signature, check_request(contract, signature, request))


def rest_body(contract: ServingContract, signature: str, request: Mapping[str, Any],
              static: bool = True) -> dict[str, Any]:
    """The JSON body of a TF Serving REST ``:predict`` call, in the columnar ``inputs`` form
    (users differ in support length, so the row form does not fit)."""
    signature, arrays = _checked(contract, signature, request, static)
    inputs = {}
    for name, value in arrays.items():
        if value.dtype == object:
            inputs[name] = [v.decode() if isinstance(v, bytes) else str(v) for v in value.reshape(-1)]
            inputs[name] = np.asarray(inputs[name], dtype=object).reshape(value.shape).tolist()
        else:
            inputs[name] = value.tolist()
    return {"signature_name": signature, "inputs": inputs}


def grpc_request(contract: ServingContract, signature: str, request: Mapping[str, Any], model_name: str = "tfmetarec",
                 version: int | None = None, static: bool = True):
    """A ``tensorflow_serving.apis.predict_pb2.PredictRequest`` for ``signature``."""
    try:
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2
    except ImportError as err:
        raise ImportError("gRPC requests need tensorflow-serving-api: pip install 'tfmetarec[serving]' "
                          "with your TensorFlow version pinned.") from err
    signature, arrays = _checked(contract, signature, request, static)
    dtypes = contract.input_dtypes()
    out = predict_pb2.PredictRequest()
    out.model_spec.name = model_name
    out.model_spec.signature_name = signature
    if version is not None:
        out.model_spec.version.value = int(version)
    for name, value in arrays.items():
        dtype = tf.as_dtype(TF_DTYPES[dtypes[name]])
        if dtype == tf.string:
            value = np.asarray([str(v).encode() if not isinstance(v, bytes) else v for v in value.reshape(-1)],
                               dtype=object).reshape(value.shape)
        out.inputs[name].CopyFrom(tf.make_tensor_proto(value, dtype=dtype, shape=value.shape))
    return out


def from_grpc(request) -> dict[str, np.ndarray]:
    """The inputs of a ``PredictRequest`` back as arrays (what a server decodes)."""
    import tensorflow as tf

    return {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}


__all__ = ["from_grpc", "grpc_request", "rest_body"]
