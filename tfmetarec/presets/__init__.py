"""Published checkpoints (presets): save, load with checksums, fine-tune on other data."""

from __future__ import annotations

from tfmetarec.presets.finetune import finetune, finetune_config, preset_metrics
from tfmetarec.presets.store import (
    Preset,
    PresetError,
    available_presets,
    from_preset,
    presets_dir,
    save_to_preset,
    verify,
)
from tfmetarec.presets.transfer import TransferReport, transfer

__all__ = [
    "Preset",
    "PresetError",
    "TransferReport",
    "available_presets",
    "finetune",
    "finetune_config",
    "from_preset",
    "preset_metrics",
    "presets_dir",
    "save_to_preset",
    "transfer",
    "verify",
]
