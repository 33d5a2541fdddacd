"""Data flows one way: data -> tasks -> models -> learners -> evaluation -> export."""

import ast
from pathlib import Path

import tfmetarec

ORDER = ["types", "data", "tasks", "models", "learners", "evaluation", "export", "presets"]
# Beyond the order: these layers stay independent of the data pipeline altogether.
FORBIDDEN = {"models": {"data", "tasks"}, "learners": {"data", "tasks"}}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tfmetarec."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("tfmetarec.")}
    return found


def test_layers_import_only_from_their_left():
    root = Path(tfmetarec.__file__).parent
    problems = []
    for layer in ORDER:
        folder = root / layer
        files = sorted(folder.rglob("*.py")) if folder.is_dir() else [root / f"{layer}.py"]
        for path in files:
            if not path.exists():
                continue
            for target in _imports(path):
                if target in ORDER and ORDER.index(target) > ORDER.index(layer):
                    problems.append(f"{path.relative_to(root)} imports tfmetarec.{target} (to its right)")
                if target in FORBIDDEN.get(layer, ()):
                    problems.append(f"{path.relative_to(root)} imports tfmetarec.{target}")
    assert not problems, "\n".join(problems)
