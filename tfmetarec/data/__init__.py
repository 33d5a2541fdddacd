"""Datasets, feature encoding and cold-start splits.

Every loader returns an :class:`InteractionData`; :func:`cold_start_split`
divides it into meta-training ratings and the four cold-start scenarios, and a
:class:`FeatureEncoder` fitted on the existing users and items turns every
:class:`Field` into small integers: users' field rows and the item table the
models hold.
"""

from __future__ import annotations

from tfmetarec.data.features import AGE_BUCKETS, EncodedData, FeatureEncoder, FeatureSpec
from tfmetarec.data.movielens import (
    DATASETS,
    load_dataset,
    load_movielens_1m,
    load_movielens_100k,
    load_movielens_20m,
    load_movielens_25m,
    load_movielens_latest_small,
)
from tfmetarec.data.paths import default_data_dir, movielens_100k_dir
from tfmetarec.data.schema import DataFormatError, Field, InteractionData, infer_fields
from tfmetarec.data.splits import (
    DEFAULT_NEW_ITEM_YEAR,
    SCENARIOS,
    ColdStartSplit,
    SplitConfig,
    cold_start_split,
)
from tfmetarec.data.synthetic import make_synthetic

__all__ = [
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
]
