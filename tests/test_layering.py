"""Data flows one way: every module of the package has a rank, and imports only from its own rank or
below, in every import form (``import tfmetarec.x``, ``from tfmetarec import x``, ``from tfmetarec.x
import y``, relative imports, ``importlib.import_module("tfmetarec.x")``, inside functions and under
``TYPE_CHECKING`` alike); and no module imports, directly or through others, itself."""

from __future__ import annotations

import ast
from pathlib import Path

import tfmetarec
from tfmetarec import registry

LAYERS = [
    ("tfmetarec._version", "tfmetarec._quiet", "tfmetarec._lazy", "tfmetarec.types"),
    ("tfmetarec.objectives",),
    ("tfmetarec.options",),
    ("tfmetarec.registry",),
    ("tfmetarec.config",),
    ("tfmetarec.data",),
    ("tfmetarec.tasks",),
    ("tfmetarec.models",),
    ("tfmetarec.learners",),
    ("tfmetarec.evaluation",),
    ("tfmetarec.export",),
    ("tfmetarec.run_folder",),
    ("tfmetarec.workflows",),
    ("tfmetarec.presets",),
    ("tfmetarec.experiment",),
    ("tfmetarec.cli",),
    ("tfmetarec",),  # the package's lazy public face: nothing inside imports it
]
# Beyond the order: the model and learner layers stay independent of the data pipeline.
FORBIDDEN = {"tfmetarec.models": ("tfmetarec.data", "tfmetarec.tasks"),
             "tfmetarec.learners": ("tfmetarec.data", "tfmetarec.tasks")}


def module_name(path: Path, root: Path, package: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([package, *parts])


def _resolve(target: str, root: Path, package: str) -> str:
    """``package.a.b.name`` -> the module it names: ``package.a.b`` when ``name`` is not a module."""
    parts = target.split(".")
    while len(parts) > 1:
        rel = Path(*parts[1:])
        if (root / rel).with_suffix(".py").exists() or (root / rel / "__init__.py").exists():
            return ".".join(parts)
        parts = parts[:-1]
    return package


def imports_of(path: Path, root: Path, package: str) -> set[str]:
    """The package modules ``path`` imports, in any form, anywhere in the file."""
    here = module_name(path, root, package)
    is_package = path.name == "__init__.py"
    base = here if is_package else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name == package or a.name.startswith(package + ".")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base.split(".")[: len(base.split(".")) - (node.level - 1)]
                module = ".".join(anchor + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module == package or module.startswith(package + "."):
                found |= {f"{module}.{a.name}" for a in node.names}
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args):
            arg = node.args[0]
            text = arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else (
                arg.values[0].value if isinstance(arg, ast.JoinedStr) and arg.values
                and isinstance(arg.values[0], ast.Constant) else None)
            if text and (text.rstrip(".") == package or text.startswith(package + ".")):
                found.add(text.rstrip("."))
    return {_resolve(t, root, package) for t in found} - {here}


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    return {module_name(p, root, package): imports_of(p, root, package) for p in sorted(root.rglob("*.py"))}


def rank_of(module: str, layers) -> int | None:
    """The layer of ``module``: the longest listed prefix it falls under (the package itself ranks
    only itself, so a new module has no rank until it is listed)."""
    best = None
    for i, prefixes in enumerate(layers):
        for prefix in prefixes:
            if module == prefix or ("." in prefix and module.startswith(prefix + ".")):
                if best is None or len(prefix) > best[1]:
                    best = (i, len(prefix))
    return None if best is None else best[0]


def layering_problems(graph: dict[str, set[str]], layers, forbidden=None) -> list[str]:
    """Modules without a rank, upward imports, forbidden imports and import circles."""
    problems = [f"{m} has no rank in LAYERS" for m in graph if rank_of(m, layers) is None]
    for module, targets in graph.items():
        mine = rank_of(module, layers)
        for target in sorted(targets):
            theirs = rank_of(target, layers)
            if mine is not None and theirs is not None and theirs > mine:
                problems.append(f"{module} imports {target} (a layer above it)")
            for layer, banned in (forbidden or {}).items():
                if (module == layer or module.startswith(layer + ".")) and any(
                        target == b or target.startswith(b + ".") for b in banned):
                    problems.append(f"{module} imports {target}")
    problems += [f"import circle: {' -> '.join(c)}" for c in circles(graph)]
    return problems


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle found by a depth-first search (one per back edge)."""
    state: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                out.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state and nxt in graph:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return out


def test_every_module_is_ranked_imports_only_downward_and_no_circle():
    root = Path(tfmetarec.__file__).parent
    problems = layering_problems(import_graph(root, "tfmetarec"), LAYERS, FORBIDDEN)
    assert not problems, "\n".join(problems)


def test_registered_classes_live_in_their_layer():
    """``learners.get`` / ``models.get`` import a registered module by name: it must be in that layer."""
    for kind, layer in (("learner", "tfmetarec.learners."), ("model", "tfmetarec.models.")):
        for name in registry.names(kind):
            assert registry.entry(kind, name).module.startswith(layer), (kind, name)


def test_the_check_sees_every_import_form(tmp_path):
    """A package with one upward import of each form, and a circle: each is reported."""
    pkg = tmp_path / "pkg"
    for folder in ("low", "high"):
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "high" / "top.py").write_text("X = 1\n")
    forms = {
        "a.py": "from pkg.high.top import X\n",
        "b.py": "import pkg.high.top\n",
        "c.py": "from pkg import high\n",
        "d.py": "def f():\n    from pkg.high import top\n    return top\n",
        "e.py": "import importlib\n\ndef f():\n    return importlib.import_module('pkg.high.top')\n",
        "f.py": "from ..high import top\n",
        "g.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.high.top import X\n",
        "h.py": "import importlib\n\ndef f(n):\n    return importlib.import_module(f'pkg.high.{n}')\n",
    }
    for name, text in forms.items():
        (pkg / "low" / name).write_text(text)
    (pkg / "low" / "loop_a.py").write_text("from pkg.low import loop_b\n")
    (pkg / "low" / "loop_b.py").write_text("def f():\n    from pkg.low import loop_a\n")
    layers = [("pkg.low",), ("pkg.high",), ("pkg",)]
    problems = "\n".join(layering_problems(import_graph(pkg, "pkg"), layers))
    for name in forms:
        assert f"pkg.low.{name[:-3]} imports pkg.high" in problems, (name, problems)
    assert "import circle: pkg.low.loop_a -> pkg.low.loop_b -> pkg.low.loop_a" in problems
    (pkg / "stray.py").write_text("")
    assert "pkg.stray has no rank in LAYERS" in "\n".join(layering_problems(import_graph(pkg, "pkg"), layers))


def test_every_traced_function_goes_through_graph_function():
    """The library traces through ``models.functional.graph_function`` (no AutoGraph), nowhere else:
    a direct ``tf.function`` would convert the code it calls again, at every trace."""
    root = Path(tfmetarec.__file__).parent
    direct = []
    for path in sorted(root.rglob("*.py")):
        if path == root / "models" / "functional.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Attribute) and node.attr == "function" and isinstance(node.value, ast.Name)
                    and node.value.id == "tf"):
                direct.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not direct, f"tf.function used directly (use graph_function): {direct}"
