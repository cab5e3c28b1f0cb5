"""Committed notebooks are thin and clean: outputs stripped, a parameters cell first, no path hacks."""

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_notebook_is_committed_clean(path):
    notebook = nbformat.read(path, as_version=4)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert "parameters" in code_cells[0].metadata.get("tags", []), "the first code cell holds the parameters"
    for cell in code_cells:
        assert cell.get("outputs") == [] and cell.get("execution_count") is None, "strip outputs before committing"
        assert "sys.path" not in cell.source
