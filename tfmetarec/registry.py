"""The one list of learner and model names, and each one's settings.

Every name maps to a class (by module and class name, so this module imports no
TensorFlow) and, for a named option set such as ``fomaml`` (MAML with
``first_order=True``), the options it fixes. A name's settings are exactly its
class's constructor keyword arguments (:mod:`tfmetarec.options` reads them from the
source); ``tfmetarec.learners.get`` / ``tfmetarec.models.get`` import the class on use.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfmetarec.options import Option, OptionError, check_options, module_path, read_options

LEARNER_SKIP = ("model",)
"""Constructor arguments of a learner that are not settings: the model it wraps."""
MODEL_SKIP = ("user_fields", "item_fields", "num_users", "num_items")
"""Constructor arguments of a model read from the encoded features, not set by hand."""


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


_LEARNERS: dict[str, Entry] = {}
_MODELS: dict[str, Entry] = {}
_CLASSES: dict[tuple[str, str], type] = {}  # classes registered from outside the package


def _add(table: dict[str, Entry], entry: Entry) -> Entry:
    table[entry.name] = entry
    return entry


for _entry in (
    Entry("maml", "tfmetarec.learners.maml", "MAML", summary="MAML, second-order meta-gradients"),
    Entry("fomaml", "tfmetarec.learners.maml", "MAML", {"first_order": True}, "first-order MAML"),
    Entry("meta_sgd", "tfmetarec.learners.maml", "MAML", {"learn_inner_lr": "per_parameter"},
          "Meta-SGD: MAML with learned per-parameter inner rates"),
    Entry("reptile", "tfmetarec.learners.reptile", "Reptile", summary="Reptile"),
    Entry("prototype", "tfmetarec.learners.metric", "PrototypeLearner", summary="liked/disliked prototypes"),
    Entry("matching", "tfmetarec.learners.metric", "MatchingLearner", summary="attention over the support"),
    Entry("task_encoder", "tfmetarec.learners.encoder", "TaskEncoder", summary="a set encoder to a user state"),
    Entry("pretrain", "tfmetarec.learners.pretrain", "Pretrain", summary="global model (no adaptation)"),
    Entry("popularity", "tfmetarec.learners.baselines", "Popularity", summary="rating count"),
    Entry("item_mean", "tfmetarec.learners.baselines", "ItemMean", summary="shrunk item mean"),
    Entry("metaemb_generator", "tfmetarec.learners.metaemb", "MetaEmbeddingLearner",
          summary="Meta-Embedding's generator trained on item tasks (metaemb model)"),
):
    _add(_LEARNERS, _entry)

for _entry in (
    Entry("melu", "tfmetarec.models.melu", "MeLU", summary="MLP over field embeddings (MeLU)"),
    Entry("cf", "tfmetarec.models.cf", "BiasedMF", summary="biased factorisation with meta-learned priors"),
    Entry("content", "tfmetarec.models.content", "ContentModel", summary="user preference over an item tower"),
    Entry("hybrid", "tfmetarec.models.hybrid", "Hybrid", summary="support-size blend of cf and content"),
    Entry("metaemb", "tfmetarec.models.metaemb", "MetaEmb", summary="MeLU with generated new-item embeddings"),
    Entry("two_tower", "tfmetarec.models.two_tower", "TwoTower", summary="user and item towers, dot product"),
):
    _add(_MODELS, _entry)

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


def registered_class(kind: str, name: str) -> type | None:
    """The class of a name added by :func:`register` (None for a built-in name, whose class its
    own package imports: ``tfmetarec.learners.get`` / ``tfmetarec.models.get``)."""
    return _CLASSES.get((kind, entry(kind, name).name))


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


__all__ = ["Entry", "check", "entry", "names", "options", "register", "registered_class", "unregister"]
