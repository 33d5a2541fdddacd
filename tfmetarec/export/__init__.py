"""Export: SavedModels for TF Serving that embed the adaptation step."""

from __future__ import annotations

from tfmetarec.export.saved_model import ServingModule, export_saved_model, request_inputs

__all__ = ["ServingModule", "export_saved_model", "request_inputs"]
