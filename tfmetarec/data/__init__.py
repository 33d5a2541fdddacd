"""Datasets, feature encoding and cold-start splits.

Every loader returns an :class:`InteractionData`; :func:`cold_start_split`
divides it into meta-training ratings and the four cold-start scenarios (or
:func:`published_split` reads a split someone else drew), and a
:class:`FeatureEncoder` fitted on the existing users and items turns every
:class:`Field` into small integers: users' field rows and the item table the
models hold.

Names are imported on first use, so the settings (``SplitConfig``) load without
numpy, pandas or TensorFlow.
"""

from __future__ import annotations

from tfmetarec._lazy import lazy_names
from tfmetarec.config import DEFAULT_NEW_ITEM_YEAR, SCENARIOS, SplitConfig

_NAMES = {
    "AGE_BUCKETS": "transforms",
    "EncodedData": "features",
    "FeatureEncoder": "features",
    "FeatureSpec": "features",
    "DATASETS": "movielens",
    "load_dataset": "movielens",
    "load_movielens_1m": "movielens",
    "load_movielens_100k": "movielens",
    "load_movielens_latest_small": "movielens",
    "load_movielens_20m": "movielens",
    "load_movielens_25m": "movielens",
    "default_data_dir": "paths",
    "movielens_100k_dir": "paths",
    "DataFormatError": "schema",
    "Field": "schema",
    "InteractionData": "schema",
    "infer_fields": "schema",
    "select_fields": "schema",
    "ColdStartSplit": "splits",
    "cold_start_split": "splits",
    "make_synthetic": "synthetic",
    "published_split": "published",
    "load_split": "published",
    "read_split_file": "published",
    "read_melu_split": "published",
    "read_split": "published",
}


__getattr__, __dir__ = lazy_names("tfmetarec.data", _NAMES)

__all__ = [  # noqa: F822 (the names of _NAMES load on first use)
    "AGE_BUCKETS",
    "DATASETS",
    "DEFAULT_NEW_ITEM_YEAR",
    "SCENARIOS",
    "ColdStartSplit",
    "DataFormatError",
    "EncodedData",
    "FeatureEncoder",
    "FeatureSpec",
    "Field",
    "InteractionData",
    "load_split",
    "SplitConfig",
    "cold_start_split",
    "default_data_dir",
    "infer_fields",
    "load_dataset",
    "load_movielens_100k",
    "load_movielens_1m",
    "load_movielens_20m",
    "load_movielens_25m",
    "load_movielens_latest_small",
    "make_synthetic",
    "movielens_100k_dir",
    "published_split",
    "read_melu_split",
    "read_split",
    "read_split_file",
    "select_fields",
]
