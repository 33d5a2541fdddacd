"""The Colab notebooks run end to end (small setting, offline) and match their sources."""

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "colab").glob("*.ipynb"))
EXPECTED = {
    "01_quickstart.ipynb": ["user_cold", "maml", "no-adaptation"],
    "02_finetune_checkpoint.ipynb": ["copied whole", "rows matched by value", "user_cold"],
    "03_export_serving.ipynb": ["SavedModel :", "ONNX       :", "adapt_and_score"],
}


def test_notebooks_are_built_from_their_sources():
    assert {p.name for p in NOTEBOOKS} == set(EXPECTED)
    check = subprocess.run([sys.executable, str(ROOT / "colab" / "build.py"), "--check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("TFMETAREC_NOTEBOOK_SMOKE", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), "commit notebooks without outputs"
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(
        out.get("text", "") + str(out.get("data", {}).get("text/plain", ""))
        for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
    )
    for expected in EXPECTED[path.name]:
        assert expected in text, f"{path.name} did not print {expected!r}"
