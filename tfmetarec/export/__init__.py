"""Export: SavedModels for TF Serving and ONNX graphs that embed the adaptation step.

The ONNX part (:mod:`tfmetarec.export.onnx`) needs the ``onnx`` extra and is imported
from there, so that ``import tfmetarec.export`` works without it.
"""

from __future__ import annotations

from tfmetarec.export.saved_model import ServingModule, export_saved_model, request_inputs

__all__ = ["ServingModule", "export_saved_model", "request_inputs"]
