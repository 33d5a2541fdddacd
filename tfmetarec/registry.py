"""The one list of learner and model names, and each one's settings.

Every name maps to a class (by module and class name, so this module imports no
TensorFlow) and, for a named option set such as ``fomaml`` (MAML with
``first_order=True``), the options it fixes. A name's settings are exactly its
class's constructor keyword arguments (:mod:`tfmetarec.options` reads them from the
source); ``tfmetarec.learners.get`` / ``tfmetarec.models.get`` import the class on use.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfmetarec.options import Option, OptionError, check_options, module_path, read_options

LEARNER_SKIP = ("model",)
"""Constructor arguments of a learner that are not settings: the model it wraps."""
MODEL_SKIP = ("user_fields", "item_fields", "num_users", "num_items", "encoder_digest")
"""Constructor arguments of a model read from the encoded features (``MetaModel.from_spec``), not set
by hand."""


@dataclass(frozen=True)
class Entry:
    """A registered name: its class (``module`` + ``cls``, or a ``source`` file for a class
    registered from outside the package) and the options the name fixes."""

    name: str
    module: str
    cls: str
    fixed: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""
    source: str | None = None

    def path(self) -> Path:
        return Path(self.source) if self.source else module_path(self.module)


_CLASSES: dict[tuple[str, str], type] = {}  # classes registered from outside the package

# kind, name, module (under tfmetarec.learners / tfmetarec.models), class, options the name fixes, summary
_BUILT_IN = (
    ("learner", "maml", "maml", "MAML", {}, "MAML, second-order meta-gradients"),
    ("learner", "fomaml", "maml", "MAML", {"first_order": True}, "first-order MAML"),
    ("learner", "meta_sgd", "maml", "MAML", {"learn_inner_lr": "per_parameter"},
     "Meta-SGD: MAML with learned per-parameter inner rates"),
    ("learner", "mamo", "memory", "MemoryAugmentedMAML", {},
     "MAML from a start read out of feature and task memories (MAMO's idea)"),
    ("learner", "reptile", "reptile", "Reptile", {}, "Reptile"),
    ("learner", "prototype", "metric", "PrototypeLearner", {}, "liked/disliked prototypes"),
    ("learner", "matching", "metric", "MatchingLearner", {}, "attention over the support"),
    ("learner", "task_encoder", "encoder", "TaskEncoder", {}, "a set encoder to a user state"),
    ("learner", "pretrain", "pretrain", "Pretrain", {}, "global model (no adaptation)"),
    ("learner", "popularity", "baselines", "Popularity", {}, "rating count"),
    ("learner", "item_mean", "baselines", "ItemMean", {}, "shrunk item mean"),
    ("learner", "metaemb_generator", "metaemb", "MetaEmbeddingLearner", {},
     "Meta-Embedding's generator trained on item tasks (metaemb model)"),
    ("model", "melu", "melu", "MeLU", {}, "MLP over field embeddings (MeLU)"),
    ("model", "cf", "cf", "BiasedMF", {}, "biased factorisation with meta-learned priors"),
    ("model", "content", "content", "ContentModel", {}, "user preference over an item tower"),
    ("model", "hybrid", "hybrid", "Hybrid", {}, "support-size blend of cf and content"),
    ("model", "metaemb", "metaemb", "MetaEmb", {}, "MeLU with generated new-item embeddings"),
    ("model", "two_tower", "two_tower", "TwoTower", {}, "user and item towers, dot product"),
)
_LEARNERS: dict[str, Entry] = {}
_MODELS: dict[str, Entry] = {}
for _kind, _name, _module, _cls, _fixed, _summary in _BUILT_IN:
    (_LEARNERS if _kind == "learner" else _MODELS)[_name] = Entry(_name, f"tfmetarec.{_kind}s.{_module}", _cls,
                                                                  _fixed, _summary)

KINDS = {"learner": (_LEARNERS, LEARNER_SKIP), "model": (_MODELS, MODEL_SKIP)}


def _table(kind: str) -> dict[str, Entry]:
    if kind not in KINDS:
        raise ValueError(f"kind must be 'learner' or 'model', got {kind!r}.")
    return KINDS[kind][0]


def names(kind: str) -> tuple[str, ...]:
    """The registered ``learner`` or ``model`` names, in registration order."""
    return tuple(_table(kind))


def entry(kind: str, name: str) -> Entry:
    """The registry entry of a name (an error lists the known ones)."""
    table = _table(kind)
    key = str(name).lower()
    if key not in table:
        raise OptionError(f"Unknown {kind} {name!r}; available: {sorted(table)}.")
    return table[key]


def options(kind: str, name: str) -> dict[str, Option]:
    """Every setting of a registered name: its class's constructor keyword arguments, the
    ones the name fixes included (with the fixed value as the default)."""
    e = entry(kind, name)
    found = read_options(e.path(), e.cls, KINDS[kind][1])
    out = dict(found)
    for key, value in e.fixed.items():
        out[key] = Option(key, found[key].annotation, value, found[key].kinds)
    return out


def check(kind: str, name: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` checked against a name's settings (canonical form); a value that contradicts
    what the name fixes is refused."""
    e = entry(kind, name)
    checked = check_options(options(kind, name), values, f"{kind} {e.name!r}")
    for key, fixed in e.fixed.items():
        if key in checked and checked[key] != fixed:
            raise OptionError(f"{e.name!r} is {e.cls} with {key}={fixed!r}; for {key}={checked[key]!r} use "
                              f"another name (e.g. {_base_name(kind, e)!r}).")
    return checked


def _base_name(kind: str, e: Entry) -> str:
    return next((n for n, x in _table(kind).items() if x.cls == e.cls and x.module == e.module and not x.fixed),
                e.name)


def class_of(kind: str, name: str) -> type:
    """The class of a registered name, its module imported on first use (a built-in learner's
    module is in ``tfmetarec.learners``, a model's in ``tfmetarec.models``: tests/test_layering.py
    checks it); ``tfmetarec.learners.get`` and ``tfmetarec.models.get`` are this function."""
    e = entry(kind, name)
    if (kind, e.name) in _CLASSES:
        return _CLASSES[(kind, e.name)]
    return getattr(importlib.import_module(e.module), e.cls)


def register(kind: str, name: str, cls: type, fixed: Mapping[str, Any] | None = None, summary: str = "") -> Entry:
    """Register a class defined outside this package under ``name`` (its settings are read from
    its source file). The class must be importable and registered with Keras for saving."""
    source = inspect.getsourcefile(cls)
    if source is None:
        raise OptionError(f"{cls.__name__} has no source file to read its settings from.")
    table = _table(kind)
    e = Entry(str(name).lower(), cls.__module__, cls.__name__, dict(fixed or {}), summary, os.fspath(source))
    table[e.name] = e
    _CLASSES[(kind, e.name)] = cls
    try:
        options(kind, e.name)  # every argument readable now, not at first use
    except OptionError:
        unregister(kind, e.name)
        raise
    return e


def unregister(kind: str, name: str) -> None:
    """Remove a name added by :func:`register`."""
    e = entry(kind, name)
    if not e.source:
        raise OptionError(f"{name!r} is built in; only names added by register() can be removed.")
    del _table(kind)[e.name]
    _CLASSES.pop((kind, e.name), None)


__all__ = ["Entry", "check", "class_of", "entry", "names", "options", "register", "unregister"]
