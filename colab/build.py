"""Build the Colab notebooks from their diff-friendly sources in colab/src/.

    python colab/build.py          # rewrite colab/*.ipynb (outputs cleared)
    python colab/build.py --check  # exit 1 if a notebook is out of date

A source is a Python file split into cells by lines starting with ``# %%``
(code) or ``# %% [markdown]`` (Markdown; each line's leading ``# `` is dropped).

The install cell's ``TESTED = []`` line is filled with the (TensorFlow, Keras) pairs of
pyproject.toml's ``[tool.tfmetarec.compat]`` matrix, so ``--check`` also fails when that
matrix changed and the notebooks were not rebuilt.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
TESTED = "TESTED = []"


def tested_pairs() -> str:
    """The compat matrix as the install cell's literal, oldest TensorFlow first."""
    pyproject = tomllib.loads((HERE.parent / "pyproject.toml").read_text(encoding="utf-8"))
    pairs = [(p["tensorflow"], p["keras"]) for p in pyproject["tool"]["tfmetarec"]["compat"]["matrix"]]
    pairs.sort(key=lambda pair: [int(part) for part in pair[0].split(".")])
    return "TESTED = [" + ", ".join(f'("{tf}", "{keras}")' for tf, keras in pairs) + "]"


def notebook(source: Path) -> nbformat.NotebookNode:
    cells, kind, lines = [], None, []
    text = source.read_text(encoding="utf-8")
    if text.count(TESTED) != 1:
        raise SystemExit(f"{source.name}: its install cell needs one '{TESTED}' line for the compat matrix")
    text = text.replace(TESTED, tested_pairs())

    def flush():
        text = "\n".join(lines).strip("\n")
        if kind == "markdown":
            cells.append(nbformat.v4.new_markdown_cell(text))
        elif kind == "code" and text:
            cells.append(nbformat.v4.new_code_cell(text))

    for line in text.splitlines():
        if line.startswith("# %%"):
            flush()
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        elif kind == "markdown":
            lines.append(line[2:] if line.startswith("# ") else line.lstrip("#"))
        elif kind is not None:
            lines.append(line)
    flush()
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata.update({
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "accelerator": "GPU",
        "colab": {"provenance": []},
    })
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{source.stem}-{i}"
    return nb


def main(argv: list[str]) -> int:
    stale = []
    for source in sorted((HERE / "src").glob("*.py")):
        target = HERE / f"{source.stem}.ipynb"
        text = nbformat.writes(notebook(source)) + "\n"
        if "--check" in argv:
            if not target.exists() or target.read_text(encoding="utf-8") != text:
                stale.append(target.name)
        else:
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target}")
    if stale:
        print(f"out of date (sources or pyproject.toml's compat matrix): {stale}; run python colab/build.py")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
