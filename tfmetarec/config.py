"""Small frozen settings objects for an experiment, with JSON round trips; importable without numpy,
pandas or TensorFlow."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from tfmetarec import registry
from tfmetarec.options import OBJECTS, dataclass_options, to_json

DATASETS = ("synthetic", "movielens-100k", "movielens-1m", "movielens-latest-small", "movielens-20m", "movielens-25m")
LEARNERS = registry.names("learner")
"""The registered learner names (:mod:`tfmetarec.registry`), without importing TensorFlow."""
MODELS = registry.names("model")
"""The registered model names, without importing TensorFlow."""
STRATEGIES = ("default", "mirrored", "multi_worker")
"""How meta-training is distributed (``tfmetarec.learners.distribute.make_strategy``): one device,
several local devices (GPUs), or several processes/machines named by ``TF_CONFIG``."""
TASK_KEYS = ("user", "item")
"""What one task is: a user's ratings (user cold start) or an item's (item cold start)."""
CONFIG_FORMAT = 6
"""``config.json`` format: 2 = learner and model settings as their constructors' options; 3 = the
checkpoint choice settings (``split.validation_item_fraction``, ``train.select_every``,
``train.select_patience``); 4 = ``train.trim_supports`` (on by default); 5 =
``train.smallest_bucket`` (6 by default); 6 = ``train.padded_min_real`` (0.85 by default). An older
file is read with the settings it predates as they were (what it trained with)."""
FORMAT_5_DEFAULTS = {"train": {"padded_min_real": None}}
"""Settings a format-5 ``config.json`` predates, with the values it was trained with."""
FORMAT_4_DEFAULTS = {"train": {"smallest_bucket": 8, **FORMAT_5_DEFAULTS["train"]}}
"""Settings a format-4 ``config.json`` predates, with the values it was trained with."""
FORMAT_3_DEFAULTS = {"train": {"trim_supports": False, **FORMAT_4_DEFAULTS["train"]}}
"""Settings a format-3 ``config.json`` predates, with the values it was trained with."""
FORMAT_2_DEFAULTS = {"split": {"validation_item_fraction": 0.0},
                     "train": {"select_every": 0, "select_patience": 0, **FORMAT_3_DEFAULTS["train"]}}
"""Settings a format-2 ``config.json`` predates, with the values it was trained with."""
OLDER_FORMATS = MappingProxyType({2: FORMAT_2_DEFAULTS, 3: FORMAT_3_DEFAULTS, 4: FORMAT_4_DEFAULTS,
                                  5: FORMAT_5_DEFAULTS})


SCENARIOS = ("warm", "user_cold", "item_cold", "user_item_cold")
METHODS = ("melu", "time")
DEFAULT_NEW_ITEM_YEAR = {
    "movielens-100k": 1997,
    "movielens-1m": 1998,
    "synthetic": 1998,
    "movielens-latest-small": 2015,
    "movielens-20m": 2013,  # ratings up to 2015
    "movielens-25m": 2017,  # ratings up to 2019
}


@dataclass(frozen=True)
class SplitConfig:
    """Settings of :func:`cold_start_split`.

    ``method="melu"`` marks items released in or after ``new_item_year`` as new
    (``None`` picks the dataset's entry in ``DEFAULT_NEW_ITEM_YEAR``) and a
    random ``new_user_fraction`` of users as new. ``method="time"`` marks users
    and items as new when their first rating comes after the ``time_quantile``
    of all users' first-rating times.
    """

    method: str = "melu"
    min_user_ratings: int = 13
    max_user_ratings: int = 100
    new_item_year: int | None = None
    new_user_fraction: float = 0.2
    time_quantile: float = 0.8
    query_size: int = 10
    min_support: int = 3
    seed: int = 0
    validation_fraction: float = 0.1
    """Share of the meta-training users held out as validation tasks (they choose the fine-tuning
    baseline's step size and are not meta-trained on); 0 holds out none, as MeLU's protocol does
    (then set ``train.finetune_lr``)."""
    validation_item_fraction: float = 0.1
    """Share of the existing items held out of meta-training as *pseudo-new* items: the other
    users' ratings of them become validation tasks with new items (``train.select_every`` chooses
    the checkpoint on them and on the validation users); 0 holds out none, as MeLU's protocol does."""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if not 0 < self.min_user_ratings <= self.max_user_ratings:
            raise ValueError("need 0 < min_user_ratings <= max_user_ratings")
        if not 0.0 < self.new_user_fraction < 1.0 or not 0.0 < self.time_quantile < 1.0:
            raise ValueError("new_user_fraction and time_quantile must lie strictly between 0 and 1")
        if self.query_size < 1 or self.min_support < 1:
            raise ValueError("query_size and min_support must be positive")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"the split seed must be a non-negative integer, got {self.seed!r}")
        check_number("split.validation_fraction", self.validation_fraction, minimum=0.0)
        if self.validation_fraction >= 1.0:
            raise ValueError(f"split.validation_fraction must be < 1 (some users must train), got "
                             f"{self.validation_fraction!r}.")
        check_number("split.validation_item_fraction", self.validation_item_fraction, minimum=0.0, maximum=0.5)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SplitConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown SplitConfig keys {sorted(unknown)}")
        return cls(**d)


def check_probability(name: str, value: Any) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a probability in [0, 1)."""
    check_number(name, value, minimum=0.0)
    if value >= 1.0:
        raise ValueError(f"{name} is a probability in [0, 1); got {value!r}.")


def check_number(name: str, value: Any, *, minimum: float | None = None, above: float | None = None,
                 integer: bool = False, maximum: float | None = None) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a finite number in range."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise ValueError(f"{name} must be {kind}, got {value!r}.")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}.")
    if above is not None and value <= above:
        raise ValueError(f"{name} must be > {above}, got {value!r}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value!r}.")


def _from_dict(cls, values: dict[str, Any]):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"Unknown {cls.__name__} settings {unknown}; known: {sorted(known)}.")
    out = dict(values)
    for f in dataclasses.fields(cls):
        if f.name in out and isinstance(out[f.name], list):
            out[f.name] = tuple(out[f.name])
    return cls(**out)


@dataclass(frozen=True, init=False, eq=False, repr=False)
class _NamedOptions:
    """A registered name and the options of its class's constructor (see :mod:`tfmetarec.options`).

    ``options`` holds the settings given (checked, in canonical form); :meth:`resolved` adds
    every default; a setting reads as an attribute (``config.inner_lr``). Two configs are equal
    when their name and resolved settings are.
    """

    kind: ClassVar[str] = ""
    default_name: ClassVar[str] = ""
    name: str
    options: Mapping[str, Any]

    def __init__(self, name: str | None = None, options: Mapping[str, Any] | None = None, **more: Any):
        name = self.default_name if name is None else name
        if not isinstance(name, str):
            raise ValueError(f"{self.kind} name must be a string, got {name!r}.")
        values = dict(options or {})
        both = sorted(set(values) & set(more))
        if both:
            raise ValueError(f"{self.kind} options {both} given twice (in options= and as keywords).")
        values.update(more)
        entry = registry.entry(self.kind, name)
        object.__setattr__(self, "name", entry.name)
        object.__setattr__(self, "options", MappingProxyType(registry.check(self.kind, entry.name, values)))

    def resolved(self) -> dict[str, Any]:
        """Every setting of the class: the given ones over the constructor's defaults."""
        defaults = {k: o.default for k, o in registry.options(self.kind, self.name).items()}
        return {**defaults, **self.options}

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_") or key in ("name", "options"):
            raise AttributeError(key)
        settings = self.resolved()
        if key not in settings:
            raise AttributeError(f"{self.kind} {self.name!r} has no option {key!r}; its options are {list(settings)}.")
        return settings[key]

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.name == self.name and other.resolved() == self.resolved()

    def __hash__(self) -> int:
        return hash((self.name, json.dumps(self.to_dict(), sort_keys=True, default=str)))

    def __repr__(self) -> str:
        given = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}({self.name!r}{', ' + given if given else ''})"

    def replace(self, **changes: Any) -> _NamedOptions:
        """A copy with some options changed (``name=`` changes the class and keeps only the
        options it takes)."""
        name = changes.pop("name", self.name)
        options = dict(self.options)
        if name != self.name:
            accepted = registry.options(self.kind, name)
            options = {k: v for k, v in options.items() if k in accepted}
        return type(self)(name, {**options, **changes})

    def to_dict(self) -> dict[str, Any]:
        table = registry.options(self.kind, self.name)
        return {"name": self.name, "options": to_json(table, self.resolved())}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> _NamedOptions:
        values = dict(values)
        extra = sorted(set(values) - {"name", "options"})
        if extra:
            raise ValueError(f"{cls.kind} settings {extra} are not in the format this library reads "
                             f"({{'name': ..., 'options': {{...}}}}, config format {CONFIG_FORMAT}).")
        return cls(values.get("name", cls.default_name), values.get("options") or {})


@dataclass(frozen=True, init=False, eq=False, repr=False)
class ModelConfig(_NamedOptions):
    """Which rating model (a name of ``tfmetarec.models.available()``) and its constructor options:
    ``ModelConfig("melu", embedding_dim=16, hidden_units=(32, 32))``. The options a model reads
    from the encoded features (fields, ID vocabulary sizes) are not settings."""

    kind: ClassVar[str] = "model"
    default_name: ClassVar[str] = "melu"


@dataclass(frozen=True, init=False, eq=False, repr=False)
class LearnerConfig(_NamedOptions):
    """Which meta-learner (a name of ``tfmetarec.learners.available()``) and its constructor
    options: ``LearnerConfig("maml", inner_steps=5, inner_lr=0.05, query_loss=QueryLoss(...))``.
    A named option set such as ``fomaml`` fixes some of them (``first_order=True``)."""

    kind: ClassVar[str] = "learner"
    default_name: ClassVar[str] = "maml"


SELECT_METRICS = MappingProxyType({"MAE": "lowest", "nDCG@3": "highest"})
"""What checkpoint choice (``train.select_metric``) can rank the scored steps by, and which end wins."""


@dataclass(frozen=True)
class TrainConfig:
    """Outer loop settings shared by the meta-learner and the baselines."""

    meta_steps: int = 1500
    pretrain_steps: int = 1500
    batch_size: int = 32
    outer_lr: float = 1e-3
    max_support: int = 128
    jit_compile: bool = True
    seed: int = 0
    steps_per_execution: int = 1
    """Meta-steps per compiled call (see ``MetaTrainer``); more cuts the per-step overhead."""
    task_chunks: int | None = None
    """Compute each meta-step's gradients on at most this many equal slices of the task batch,
    launches of one compiled program that run on different CPU cores at once (the same gradients
    to float rounding; see ``MetaTrainer``); None: 2 under XLA on a CPU without a strategy, else 1."""
    fixed_tasks: bool = False
    """With a published split that gives meta-training rows a role, train on those fixed
    support/query tasks instead of drawing a new query at every step."""
    fit_buckets: bool = False
    """Place the meta-training support buckets where the tasks' support sizes pad the fewest
    rows (as many buckets as ``smallest_bucket`` and the powers of two would give) instead: fewer padded
    rows and faster steps (BENCHMARKS.md), but another episode stream than the default's."""
    trim_supports: bool = True
    """Meta-train on supports trimmed to the support buckets: each draw keeps a random subset of a
    task's support rows the size of the largest bucket it fills, so almost no support row is
    padding (1.4x faster steps, the same quality: BENCHMARKS.md); False pads every support to the
    bucket above it, as the library did before."""
    smallest_bucket: int = 6
    """The smallest meta-training support bucket (the others are the powers of two above it:
    6, 8, 16, ...): with ``trim_supports``, a support of this size or more is trimmed to a bucket
    it fills, a smaller one padded to this size (6 rather than 8: 90 % of the quickstart data's
    support rows real instead of 83 %, the same or better quality: BENCHMARKS.md)."""
    padded_min_real: float | None = 0.85
    """With ``trim_supports`` off: the meta-training support buckets are placed where the supports
    pad the fewest rows, as many as it takes for this share of the support rows to be real (more
    buckets, more compiled shapes: BENCHMARKS.md; ``smallest_bucket`` and ``fit_buckets`` then only
    set the count to start from); None: the powers of two (or ``fit_buckets``)."""
    id_dropout: float = 0.0
    """ID dropout (DropoutNet): in both trainings' episodes, hide each task's user ID and each row's
    item ID embedding with this probability, so a model with ID embeddings (``model.use_ids``, or
    a model that always has them) learns to score the new users and items it has no trained ID
    for. 0 leaves the episode stream unchanged."""

    strategy: str = "default"
    """``default`` (one device), ``mirrored`` (the local GPUs) or ``multi_worker`` (the processes
    of ``TF_CONFIG``); ``batch_size`` is the global task batch, split equally over the replicas."""
    finetune_lr: float | None = None
    """The fine-tuning baseline's step size; None chooses it on the validation users (from a grid
    that includes 0, no adaptation)."""
    item_warmup: float | None = 3.0
    """Two-sided adaptation in evaluation: new items are warmed up from their first raters' support
    ratings with this shrinkage pseudo-count (see :mod:`tfmetarec.learners.item_warmup`), for
    every compared method alike; None: new items are scored from their content alone."""
    select_every: int = 100
    """Every this many steps, both trainings (meta-learner and baseline) are scored on the
    validation tasks (held-out users, and pseudo-new items with ``split.validation_item_fraction``),
    and the weights of the step with the best ``select_metric`` are kept (mean over those task
    sets); 0 keeps the last step's, and so do a training of at most this many steps (one candidate) and a run
    that holds out neither users nor items (the run says so)."""
    select_patience: int = 5
    """With ``select_every``: stop a training once this many scorings in a row found no better step
    (``meta_steps`` / ``pretrain_steps`` are then the most it runs); 0 runs every step."""
    select_metric: str = "MAE"
    """What ``select_every`` chooses the step by: ``MAE`` (lowest) or ``nDCG@3`` (highest: the
    ranking of each validation task's query items)."""

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"Unknown strategy {self.strategy!r}; choose from {STRATEGIES}.")
        check_number("train.meta_steps", self.meta_steps, minimum=0, integer=True)
        check_number("train.pretrain_steps", self.pretrain_steps, minimum=0, integer=True)
        check_number("train.batch_size", self.batch_size, minimum=1, integer=True)
        check_number("train.outer_lr", self.outer_lr, above=0)
        check_number("train.max_support", self.max_support, minimum=1, integer=True)
        check_number("train.seed", self.seed, minimum=0, integer=True)
        check_number("train.steps_per_execution", self.steps_per_execution, minimum=1, integer=True)
        if self.task_chunks is not None:
            check_number("train.task_chunks", self.task_chunks, minimum=1, integer=True)
            if self.task_chunks > 1 and self.strategy != "default":
                raise ValueError(f"train.task_chunks splits a one-device step; with train.strategy={self.strategy!r} "
                                 "the replicas already share the task batch: leave task_chunks unset (or 1).")
        check_number("train.smallest_bucket", self.smallest_bucket, minimum=1, integer=True)
        if self.padded_min_real is not None:
            check_number("train.padded_min_real", self.padded_min_real, above=0.0, maximum=1.0)
        if self.finetune_lr is not None:
            check_number("train.finetune_lr", self.finetune_lr, minimum=0.0)
        if self.item_warmup is not None:
            check_number("train.item_warmup", self.item_warmup, minimum=0.0)
        check_number("train.select_every", self.select_every, minimum=0, integer=True)
        check_number("train.select_patience", self.select_patience, minimum=0, integer=True)
        check_probability("train.id_dropout", self.id_dropout)
        if self.select_metric not in SELECT_METRICS:
            raise ValueError(f"train.select_metric must be one of {tuple(SELECT_METRICS)}; got {self.select_metric!r}.")


VECTOR_FILE_SUFFIXES = (".npz", ".csv", ".tsv", ".parquet")
"""The formats of an item vector file (``tfmetarec.data.vectors.read_item_vectors``)."""


@dataclass(frozen=True)
class FeatureConfig:
    """Which feature fields a run uses and how they are encoded (see
    ``tfmetarec.data.FeatureEncoder`` and ``tfmetarec.data.load_dataset``).

    ``keep_fields`` / ``drop_fields`` choose among the dataset's fields by name (the built-in
    ones, e.g. ``gender``, ``age``, ``occupation``, ``zip``, ``year``, ``genres``, and a side
    file's); dropping a field keeps its column (``year`` still decides which items are new).
    ``list_columns`` and ``list_separator`` say how an item side file's list cells are written.
    """

    zip_prefix_len: int = 2
    """Leading characters of a zip code kept (MeLU keeps 5)."""
    year_bucket_size: int = 5
    """Years per release-year bucket."""
    min_tag_items: int = 1
    """A value of an inferred list field (other than genres) seen on fewer training items is dropped."""
    keep_fields: tuple[str, ...] | None = None
    """Only these fields (None: every field)."""
    drop_fields: tuple[str, ...] = ()
    """Every field but these."""
    list_columns: tuple[str, ...] | None = None
    """Side-file columns that hold lists (None: a column is a list when some cell holds the separator)."""
    list_separator: str = "|"
    """What separates a list cell's values in a side file (MeLU's files: ``", "``)."""
    item_vectors: str | None = None
    """A file of item vectors (``.npz`` with ``item`` and ``vectors``, or CSV / TSV / Parquet with an
    ``item`` column and one column per dimension; see ``tfmetarec.data.vectors``): a vector field
    ``vectors`` of the items."""
    normalize_vectors: bool = True
    """Scale each item vector to length 1 before the model projects it."""

    def __post_init__(self) -> None:
        check_number("features.zip_prefix_len", self.zip_prefix_len, minimum=1, integer=True)
        check_number("features.year_bucket_size", self.year_bucket_size, minimum=1, integer=True)
        check_number("features.min_tag_items", self.min_tag_items, minimum=1, integer=True)
        for name in ("keep_fields", "drop_fields", "list_columns"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, str) or not all(isinstance(v, str) and v for v in value):
                raise ValueError(f"features.{name} must be a list of field or column names, got {value!r}.")
            object.__setattr__(self, name, tuple(value))
        both = sorted(set(self.keep_fields or ()) & set(self.drop_fields))
        if both:
            raise ValueError(f"features: fields {both} are both kept and dropped.")
        if not isinstance(self.list_separator, str) or not self.list_separator:
            raise ValueError(f"features.list_separator must be a non-empty string, got {self.list_separator!r}.")
        if self.item_vectors is not None:
            if not isinstance(self.item_vectors, str) or not self.item_vectors.endswith(VECTOR_FILE_SUFFIXES):
                raise ValueError(f"features.item_vectors must name a {' / '.join(VECTOR_FILE_SUFFIXES)} file, got "
                                 f"{self.item_vectors!r}.")


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything a run needs: data, split, model, learner and training settings."""

    dataset: str = "synthetic"
    data_dir: str | None = None
    item_side_file: str | None = None
    """A MovieLens dataset's item side file (rate, directors, actors ...; see ``load_dataset``)."""
    split: SplitConfig = field(default_factory=SplitConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # "user": a task is one user's ratings (user cold start); "item": one item's
    # ratings, so a new item adapts from its first ratings (adapt an item-side
    # group, e.g. cf's "item_prior").
    task_key: str = "user"
    split_file: str | None = None
    """A published split to use instead of drawing one: a CSV/TSV file (user, item, rating,
    partition, role) or a folder (or one file) of MeLU's ``*_state.json`` / ``*_state_y.json``
    (see :mod:`tfmetarec.data.published`)."""

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"Unknown dataset {self.dataset!r}; choose from {DATASETS}.")
        if self.task_key not in TASK_KEYS:
            raise ValueError(f"Unknown task_key {self.task_key!r}; choose from {TASK_KEYS}.")
        if self.item_side_file is not None and self.dataset == "synthetic":
            raise ValueError("item_side_file adds content to a MovieLens dataset; the synthetic data has none to add.")
        if self.features.list_columns is not None and self.item_side_file is None:
            raise ValueError("features.list_columns names columns of an item side file; give item_side_file too.")
        if self.split.validation_fraction == 0 and self.train.finetune_lr is None:
            raise ValueError("split.validation_fraction=0 holds out no validation users to choose the fine-tuning "
                             "baseline's step size: set train.finetune_lr as well (e.g. the learner's inner_lr).")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": CONFIG_FORMAT,
            "dataset": self.dataset,
            "data_dir": self.data_dir,
            "item_side_file": self.item_side_file,
            "split": self.split.to_dict(),
            "features": dataclasses.asdict(self.features),
            "model": self.model.to_dict(),
            "learner": self.learner.to_dict(),
            "train": dataclasses.asdict(self.train),
            "task_key": self.task_key,
            "split_file": self.split_file,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ExperimentConfig:
        values = dict(values)
        found = values.pop("format", 1)
        if found in OLDER_FORMATS:  # older than some settings: it trained without them
            for section, defaults in OLDER_FORMATS[found].items():
                values[section] = {**defaults, **dict(values.get(section) or {})}
        elif found != CONFIG_FORMAT:
            raise ValueError(f"config format {found!r}: this library reads formats 2 to {CONFIG_FORMAT} (learner and "
                             "model settings as their constructors' options); it was written by another tfmetarec. "
                             "Train the run again (--overwrite), or re-make a preset with scripts/make_presets.py.")
        return cls(
            dataset=values.pop("dataset", "synthetic"),
            data_dir=values.pop("data_dir", None),
            item_side_file=values.pop("item_side_file", None),
            split=SplitConfig.from_dict(values.pop("split", {})),
            features=_from_dict(FeatureConfig, values.pop("features", {})),
            model=ModelConfig.from_dict(values.pop("model", {})),
            learner=LearnerConfig.from_dict(values.pop("learner", {})),
            train=_from_dict(TrainConfig, values.pop("train", {})),
            task_key=values.pop("task_key", "user"),
            split_file=values.pop("split_file", None),
            **_check_empty(values),
        )

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, indent=2)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ExperimentConfig:
        """Read a ``config.json``; a malformed file is a ``ValueError`` naming it."""
        try:
            with open(path, encoding="utf-8") as fh:
                values = json.load(fh)
            if not isinstance(values, dict):
                raise ValueError(f"expected a JSON object, got {type(values).__name__}")
            return cls.from_dict(values)
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError, TypeError) as err:
            raise ValueError(f"{path} is not a valid experiment config: {err}") from err


def config_differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two ``to_dict()`` trees, as ``key: old -> new``."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):  # a learner's options read as learner.<option>
            out += config_differences(a, b, prefix if key == "options" else name + ".")
        elif (list(a) if isinstance(a, (list, tuple)) else a) != (list(b) if isinstance(b, (list, tuple)) else b):
            out.append(f"{name}: {a!r} -> {b!r}")
    return out


def _check_empty(values: dict[str, Any]) -> dict[str, Any]:
    if values:
        raise ValueError(f"Unknown experiment settings {sorted(values)}.")
    return {}


SECTIONS = ("learner", "model", "train", "split", "features")
TOP_LEVEL = ("dataset", "data_dir", "item_side_file", "task_key", "split_file")


def apply_settings(config: ExperimentConfig, values: Mapping[str, Any], from_text: bool = False) -> ExperimentConfig:
    """``config`` with dotted keys set: ``learner.<option>`` and ``model.<option>`` (the
    constructor options of the configured learner and model; ``learner.query_loss.<field>``
    sets one field of the query loss), ``train.<field>``, ``split.<field>``, ``features.<field>`` and the top-level
    ``dataset``, ``data_dir``, ``item_side_file``, ``task_key``, ``split_file``. With
    ``from_text`` the values are command-line strings, parsed by each option's type. Every key
    and value is checked (a ``ValueError`` names it), without importing TensorFlow."""
    grouped: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    top: dict[str, Any] = {}
    for key, value in values.items():
        head, _, rest = key.partition(".")
        if head in SECTIONS and rest:
            grouped[head][rest] = value
        elif key in TOP_LEVEL:
            top[key] = value
        else:
            raise ValueError(f"Unknown setting {key!r}: use learner.<option>, model.<option>, train.<field>, "
                             f"split.<field>, features.<field> or one of {list(TOP_LEVEL)}.")
    changes: dict[str, Any] = {}
    for section, named in (("learner", config.learner), ("model", config.model)):
        given = grouped[section]
        if not given:
            continue
        name = str(given.pop("name", named.name))
        table = registry.options(section, name)
        options = {k: v for k, v in named.options.items() if k in table}  # another name keeps what it takes
        for key, value in given.items():
            option_name, _, field_name = key.partition(".")
            if option_name not in table:
                raise ValueError(f"{section} {name!r} takes no option {option_name!r}; its options are {list(table)}.")
            option = table[option_name]
            if field_name:  # one field of a settings object (learner.query_loss.ranking_weight)
                kind = next((k for k in option.kinds if k.base in OBJECTS), None)
                if kind is None:
                    raise ValueError(f"{section}.{option_name} is not a settings object; set it whole.")
                cls = OBJECTS[kind.base]
                fields_table = dataclass_options(cls)
                if field_name not in fields_table:
                    raise ValueError(f"{section}.{option_name} has no field {field_name!r}; its fields are "
                                     f"{list(fields_table)}.")
                current = options.get(option_name) or cls()
                parsed = fields_table[field_name].parse(value, f"{section}.{option_name}") if from_text else value
                options[option_name] = cls.from_dict({**current.to_dict(), field_name: parsed})
            else:
                options[option_name] = option.parse(value, section) if from_text else value
        changes[section] = type(named)(name, options)
    for section, cls, current in (("train", TrainConfig, config.train), ("split", SplitConfig, config.split),
                                  ("features", FeatureConfig, config.features)):
        given = grouped[section]
        if not given:
            continue
        table = dataclass_options(cls)
        unknown = sorted(set(given) - set(table))
        if unknown:
            raise ValueError(f"{section} has no setting(s) {unknown}; its settings are {list(table)}.")
        parsed = {k: table[k].parse(v, section) if from_text else v for k, v in given.items()}
        changes[section] = dataclasses.replace(current, **parsed)
    table = dataclass_options(ExperimentConfig)
    for key, value in top.items():
        changes[key] = table[key].parse(value) if from_text else value
    return dataclasses.replace(config, **changes)


def parse_settings(pairs: Sequence[str]) -> dict[str, str]:
    """``["learner.inner_lr=0.01", ...]`` as a dict; a malformed or repeated key is an error."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE (e.g. learner.inner_lr=0.01), got {pair!r}.")
        if key in out:
            raise ValueError(f"--set {key} is given twice.")
        out[key] = value.strip()
    return out
