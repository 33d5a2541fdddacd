"""Export: SavedModels for stock TF Serving and ONNX graphs that embed the adaptation step,
both taking raw IDs under one serving contract.

The ONNX part (:mod:`tfmetarec.export.onnx`) needs the ``onnx`` extra and is imported
from there, so that ``import tfmetarec.export`` works without it.
"""

from __future__ import annotations

from tfmetarec.export.contract import Buckets, RequestError, ServingContract, check_request, make_request
from tfmetarec.export.raw_inputs import RawInputs
from tfmetarec.export.saved_model import ServingModule, export_saved_model, load_contract

__all__ = [
    "Buckets",
    "RawInputs",
    "RequestError",
    "ServingContract",
    "ServingModule",
    "check_request",
    "export_saved_model",
    "load_contract",
    "make_request",
]
