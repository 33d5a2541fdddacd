"""Constructor options: a class's keyword arguments are its settings.

A learner or a model is configured by exactly the keyword arguments of its constructor
(the keras-hub habit). This module reads those arguments -- names, defaults, types and
limits -- from the class's *source*, without importing it, so the command line and the
config files check a setting before TensorFlow loads, and the constructor checks the same
rules when it runs. A setting's limit is written once, in the constructor's annotation::

    def __init__(self, model, inner_steps: Annotated[int, AtLeast(0)] = 5,
                 learn_inner_lr: Literal["fixed", "per_parameter"] = "fixed", **kwargs): ...

Understood annotations: ``int``, ``float``, ``bool``, ``str``, ``X | None``, ``Sequence[int]``
/ ``tuple[int, ...]`` (and of ``str``), ``Mapping[str, int]``, ``Literal[...]``, a union of
those, and ``Annotated[X, AtLeast(a), Above(a), AtMost(b), Below(b)]``; plus the settings objects of
:data:`OBJECTS` (``QueryLoss``). Adding a keyword argument to a registered class makes it a
setting everywhere (Python config, ``--set``, saved runs) with no other edit.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from tfmetarec.objectives import QueryLoss

PACKAGE = Path(__file__).resolve().parent


# -- limits written in annotations ---------------------------------------------------------
@dataclass(frozen=True)
class AtLeast:
    """``value >= bound``."""

    bound: float

    def holds(self, value: float) -> bool:
        return value >= self.bound

    def __str__(self) -> str:
        return f">= {self.bound:g}"


@dataclass(frozen=True)
class Above:
    """``value > bound``."""

    bound: float

    def holds(self, value: float) -> bool:
        return value > self.bound

    def __str__(self) -> str:
        return f"> {self.bound:g}"


@dataclass(frozen=True)
class AtMost:
    """``value <= bound``."""

    bound: float

    def holds(self, value: float) -> bool:
        return value <= self.bound

    def __str__(self) -> str:
        return f"<= {self.bound:g}"


@dataclass(frozen=True)
class Below:
    """``value < bound``."""

    bound: float

    def holds(self, value: float) -> bool:
        return value < self.bound

    def __str__(self) -> str:
        return f"< {self.bound:g}"


LIMITS = {"AtLeast": AtLeast, "Above": Above, "AtMost": AtMost, "Below": Below}
OBJECTS: dict[str, type] = {"QueryLoss": QueryLoss}
"""Settings objects an option may hold (frozen dataclasses with ``to_dict``/``from_dict``)."""


class OptionError(ValueError):
    """A setting a constructor does not take, or a value it refuses; the message names the key."""


# -- what an annotation allows ---------------------------------------------------------------
@dataclass(frozen=True)
class Kind:
    """What an option's annotation allows: one or more alternatives, each a base type
    (``int``, ``float``, ``bool``, ``str``, ``none``, ``seq``, ``map``, ``literal`` or an
    object name) with its element type, choices and limits."""

    base: str
    item: str = ""  # element type of seq / value type of map
    choices: tuple[Any, ...] = ()
    limits: tuple[Any, ...] = ()

    def describe(self) -> str:
        if self.base == "literal":
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.base == "seq":
            text = f"a list of {self.item}s"
        elif self.base == "map":
            text = f"a mapping of names to {self.item}s"
        elif self.base == "none":
            text = "None"
        elif self.base in OBJECTS:
            text = f"a {self.base}"
        else:
            text = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}[self.base]
        if self.limits:
            text += " " + " and ".join(str(limit) for limit in self.limits)
        return text


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Constant) and node.value is None:
        return "None"
    raise OptionError(f"unsupported annotation {ast.unparse(node)!r}")


def _elements(node: ast.AST) -> list[ast.AST]:
    return list(node.elts) if isinstance(node, ast.Tuple) else [node]


def _kinds(node: ast.AST, limits: tuple = ()) -> list[Kind]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _kinds(node.left, limits) + _kinds(node.right, limits)
    if isinstance(node, ast.Subscript):
        outer = _name(node.value)
        parts = _elements(node.slice)
        if outer == "Annotated":
            found = []
            for call in parts[1:]:
                if not (isinstance(call, ast.Call) and _name(call.func) in LIMITS):
                    raise OptionError(f"unsupported limit {ast.unparse(call)!r} (use {sorted(LIMITS)})")
                found.append(LIMITS[_name(call.func)](*[ast.literal_eval(a) for a in call.args]))
            return _kinds(parts[0], limits + tuple(found))
        if outer == "Literal":
            return [Kind("literal", choices=tuple(ast.literal_eval(p) for p in parts))]
        if outer == "Optional":
            return _kinds(parts[0], limits) + [Kind("none")]
        if outer in ("Sequence", "tuple", "list", "Tuple", "List"):
            return [Kind("seq", item=_name(parts[0]), limits=limits)]
        if outer in ("Mapping", "dict", "Dict"):
            return [Kind("map", item=_name(parts[1]), limits=limits)]
        raise OptionError(f"unsupported annotation {ast.unparse(node)!r}")
    name = _name(node)
    if name == "None":
        return [Kind("none")]
    if name in ("int", "float", "bool", "str") or name in OBJECTS:
        return [Kind(name, limits=limits)]
    raise OptionError(f"unsupported annotation {ast.unparse(node)!r}")


def parse_annotation(text: str) -> tuple[Kind, ...]:
    """The alternatives an annotation (source text) allows."""
    return tuple(_kinds(ast.parse(text, mode="eval").body))


# -- one option -----------------------------------------------------------------------------
def _scalar(base: str, value: Any) -> Any:
    """``value`` as ``base`` (int, float, bool, str) or raise ``TypeError``."""
    if base == "bool":
        if isinstance(value, bool):
            return value
        raise TypeError
    if base == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise TypeError
        return int(value)
    if base == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError
        if not math.isfinite(float(value)):
            raise ValueError("must be finite")
        return float(value)
    if base == "str":
        if not isinstance(value, str):
            raise TypeError
        return value
    raise TypeError


def _check_limits(kind: Kind, value: Any) -> None:
    for limit in kind.limits:
        if not limit.holds(value):
            raise ValueError(f"must be {limit}")


def _convert(kind: Kind, value: Any) -> Any:
    """``value`` in the canonical form ``kind`` allows (tuples for sequences, dicts for
    mappings, the settings object for an object option), or raise."""
    if kind.base == "none":
        if value is None:
            return None
        raise TypeError
    if kind.base == "literal":
        if value in kind.choices and not isinstance(value, bool):
            return value
        raise TypeError
    if kind.base in OBJECTS:
        cls = OBJECTS[kind.base]
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            return cls.from_dict(dict(value))
        raise TypeError
    if kind.base == "seq":
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise TypeError
        out = tuple(_scalar(kind.item, v) for v in value)
        for v in out:
            _check_limits(kind, v)
        return out
    if kind.base == "map":
        if not isinstance(value, Mapping):
            raise TypeError
        out = {str(k): _scalar(kind.item, v) for k, v in value.items()}
        for v in out.values():
            _check_limits(kind, v)
        return out
    out = _scalar(kind.base, value)
    _check_limits(kind, out)
    return out


@dataclass(frozen=True)
class Option:
    """One keyword argument of a constructor: its name, default and allowed values."""

    name: str
    annotation: str
    default: Any
    kinds: tuple[Kind, ...] = field(default=(), compare=False)

    def describe(self) -> str:
        return " or ".join(k.describe() for k in self.kinds) if self.kinds else "any value"

    def check(self, value: Any, where: str = "") -> Any:
        """``value`` in canonical form, or :class:`OptionError` naming ``where.name``."""
        if not self.kinds:
            return value
        reasons = []
        # a list or mapping first where the value is one: "a,b" must not pass as a str
        for kind in sorted(self.kinds, key=lambda k: k.base not in ("seq", "map")):
            try:
                return _convert(kind, value)
            except (TypeError, KeyError) as err:
                if isinstance(err, KeyError) or str(err):
                    reasons.append(str(err))
            except ValueError as err:
                reasons.append(str(err))
        key = f"{where}.{self.name}" if where else self.name
        why = f" ({'; '.join(dict.fromkeys(r for r in reasons if r))})" if any(reasons) else ""
        raise OptionError(f"{key} must be {self.describe()}{why}, got {value!r}.")

    def parse(self, text: str, where: str = "") -> Any:
        """A command-line value (``--set key=TEXT``) in canonical form."""
        text = text.strip()
        key = f"{where}.{self.name}" if where else self.name
        listed = "," in text or ":" in text  # a comma-separated list (or name:value pairs) before a string
        order = sorted(self.kinds, key=lambda k: {"none": 0, "literal": 1, "bool": 2, "int": 3, "float": 4}.get(
            k.base, 5 if (k.base in ("seq", "map")) == listed else 6))
        for kind in order:
            try:
                return self.check(_from_text(kind, text), where)
            except (OptionError, ValueError, TypeError):
                continue
        raise OptionError(f"{key} must be {self.describe()}, got {text!r}.")

    def to_json(self, value: Any) -> Any:
        """``value`` as plain JSON (lists, dicts, settings objects as dicts)."""
        if dataclasses.is_dataclass(value):
            return value.to_dict()
        if isinstance(value, (tuple, list)):
            return list(value)
        if isinstance(value, Mapping):
            return dict(value)
        return value


def _from_text(kind: Kind, text: str) -> Any:
    lowered = text.lower()
    if kind.base == "none":
        if lowered in ("none", "null", ""):
            return None
        raise ValueError
    if kind.base == "bool":
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ValueError
    if kind.base == "int":
        return int(text)
    if kind.base == "float":
        return float(text)
    if kind.base == "str":
        return text
    if kind.base == "literal":
        for choice in kind.choices:
            if str(choice) == text:
                return choice
        raise ValueError
    if kind.base == "seq":
        parts = [p.strip() for p in text.split(",") if p.strip()]
        return tuple(_from_text(Kind(kind.item), p) for p in parts)
    if kind.base == "map":
        out = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition(":")
            if not sep:
                raise ValueError
            out[key.strip()] = _from_text(Kind(kind.item), value)
        return out
    raise ValueError


# -- reading a constructor from source ---------------------------------------------------------
@lru_cache(maxsize=64)
def _module_ast(path: str, stamp: float) -> ast.Module:
    return ast.parse(Path(path).read_text(encoding="utf-8"), filename=path)


def _parse(path: Path) -> ast.Module:
    return _module_ast(os.fspath(path), path.stat().st_mtime)


def module_path(module: str) -> Path:
    """The source file of a ``tfmetarec`` module, found without importing it."""
    parts = module.split(".")
    if parts[0] != "tfmetarec":
        raise OptionError(f"{module} is not a tfmetarec module; register it with its source file.")
    base = PACKAGE.joinpath(*parts[1:])
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _find_class(tree: ast.Module, name: str) -> ast.ClassDef | None:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    return None


def _imported_from(tree: ast.Module, name: str) -> str | None:
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tfmetarec"):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    return node.module
    return None


def read_options(path: str | os.PathLike, class_name: str, skip: Sequence[str] = ()) -> dict[str, Option]:
    """The keyword arguments of ``class_name.__init__`` in the source file ``path``, in order,
    following ``**kwargs`` into base classes of this package; ``skip`` names arguments that are
    not settings (``self``, the learner's ``model``, a model's feature spec)."""
    path = Path(path)
    tree = _parse(path)
    node = _find_class(tree, class_name)
    if node is None:
        raise OptionError(f"{path} defines no class {class_name!r}.")
    init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
    out: dict[str, Option] = {}
    passes_on = init is None
    if init is not None:
        args = init.args
        positional = [*args.posonlyargs, *args.args]
        defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
        pairs = list(zip(positional, defaults)) + list(zip(args.kwonlyargs, args.kw_defaults))
        for arg, default in pairs:
            if arg.arg == "self" or arg.arg in skip:
                continue
            if default is None:
                raise OptionError(f"{class_name}.__init__ argument {arg.arg!r} needs a default to be a setting.")
            if arg.annotation is None:
                raise OptionError(f"{class_name}.__init__ argument {arg.arg!r} needs a type annotation.")
            text = ast.unparse(arg.annotation)
            try:
                value = ast.literal_eval(default)
            except ValueError:
                raise OptionError(f"{class_name}.__init__ argument {arg.arg!r}: the default "
                                  f"{ast.unparse(default)} is not a literal.") from None
            out[arg.arg] = Option(arg.arg, text, _canonical_default(value), parse_annotation(text))
        passes_on = args.kwarg is not None
    if passes_on:
        for base in node.bases:
            try:
                base_name = _name(base)
            except OptionError:
                continue
            if _find_class(tree, base_name) is not None:
                where = path
            else:
                module = _imported_from(tree, base_name)
                if module is None:
                    continue
                where = module_path(module)
            for name, option in read_options(where, base_name, skip).items():
                out.setdefault(name, option)
    return out


def _canonical_default(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def check_options(options: Mapping[str, Option], values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``values`` checked against ``options`` (unknown keys refused, naming the known ones),
    in canonical form."""
    unknown = sorted(set(values) - set(options))
    if unknown:
        raise OptionError(f"{where} takes no option{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(repr(u) for u in unknown)}; its options are {list(options)}.")
    return {name: options[name].check(value, where) for name, value in values.items()}


def resolve(options: Mapping[str, Option], values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Every option of a constructor: the checked ``values`` over the defaults."""
    given = check_options(options, values, where)
    return {name: given.get(name, option.default) for name, option in options.items()}


def to_json(options: Mapping[str, Option], values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (canonical) as plain JSON."""
    return {name: options[name].to_json(value) if name in options else value for name, value in values.items()}


class Configurable:
    """Mixin for objects configured by their constructor's keyword arguments.

    Each class of a hierarchy calls ``self.keep_arguments(locals())`` in its ``__init__``:
    every setting among the locals is checked against its annotation (a clear
    :class:`OptionError` naming the class and the option) and stored under its own name;
    :meth:`settings_config` returns them all as JSON for ``get_config``, so the config of
    an object is exactly its constructor's arguments.
    """

    not_settings: ClassVar[tuple[str, ...]] = ()
    """Constructor arguments that are not settings (a learner's model, a model's feature spec)."""

    @classmethod
    def settings(cls) -> dict[str, Option]:
        """The settings of this class: its constructor's keyword arguments (bases included)."""
        source = inspect.getsourcefile(cls)
        if source is None:
            raise OptionError(f"{cls.__name__} has no source file to read its settings from.")
        return read_options(source, cls.__name__, cls.not_settings)

    def keep_arguments(self, arguments: Mapping[str, Any]) -> None:
        """Check and store the settings found in ``arguments`` (a constructor's ``locals()``):
        each as the attribute of its name, except one named like a method of the class
        (``adapt``), which :meth:`setting` reads."""
        table = type(self).settings()
        shadowed = self.__dict__.setdefault("_shadowed_settings", {})
        for name, value in arguments.items():
            if name in table and name != "self":
                value = table[name].check(value, type(self).__name__)
                if callable(getattr(type(self), name, None)):
                    shadowed[name] = value
                else:
                    setattr(self, name, value)

    def setting(self, name: str) -> Any:
        """The current value of a setting (also one named like a method, such as ``adapt``)."""
        shadowed = self.__dict__.get("_shadowed_settings", {})
        return shadowed[name] if name in shadowed else getattr(self, name)

    def settings_config(self) -> dict[str, Any]:
        """Every setting's current value, as JSON."""
        table = type(self).settings()
        try:
            return {name: option.to_json(self.setting(name)) for name, option in table.items()}
        except AttributeError as err:
            raise AttributeError(f"{type(self).__name__} must keep its arguments (call "
                                 f"self.keep_arguments(locals()) in __init__): {err}") from None


def dataclass_options(cls: type) -> dict[str, Option]:
    """The fields of a (frozen) settings dataclass as options, so ``--set`` parses them too."""
    out = {}
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else None
        text = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        try:
            kinds = parse_annotation(text)
        except (OptionError, SyntaxError):
            kinds = ()
        out[f.name] = Option(f.name, text, default, kinds)
    return out
