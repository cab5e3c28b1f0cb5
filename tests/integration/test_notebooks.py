"""Every notebook executes top to bottom on the embedded defaults, with a small LIMIT."""

from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.integration

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
# The same notebooks on the other task kinds, with no code changed: only the CONFIG parameter.
OTHER_KINDS = [("01_prompt_variants.ipynb", "../configs/demo_adverse_events.yaml"),
               ("02_evaluate.ipynb", "../configs/demo_app_reviews.yaml"),
               ("04_training_points.ipynb", "../configs/demo_adverse_events.yaml"),
               ("05_training_data.ipynb", "../configs/demo_adverse_events.yaml")]
CASES = [(path, None) for path in NOTEBOOKS] + [
    (path, config) for path in NOTEBOOKS for name, config in OTHER_KINDS if path.name == name]


def with_parameters(notebook, overrides: dict[str, object]):
    """Insert a cell after the one tagged `parameters`, as papermill does."""
    index = next(i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", []))
    source = "\n".join(f"{name} = {value!r}" for name, value in overrides.items())
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(source))
    return notebook


@pytest.mark.parametrize(("path", "config"), CASES,
                         ids=[path.name + (f"[{Path(config).stem}]" if config else "") for path, config in CASES])
def test_notebook_runs_top_to_bottom(path, config, tmp_path, request):
    overrides: dict[str, object] = {"LIMIT": 6, "RUN_DIR": str(tmp_path / "run")}
    if config:
        overrides["CONFIG"] = config
    if path.name.startswith(("03_", "04_", "05_")):
        argilla = request.getfixturevalue("argilla")  # the real embedded server, started once per session
        overrides.update(
            ARGILLA_API_URL=argilla["info"].api_url, ARGILLA_API_KEY=argilla["keys"]["owner"],
            ANNOTATOR_API_KEY=argilla["keys"]["annotator"], ANNOTATIONS_DIR=str(tmp_path / "annotations"),
        )
        overrides["REVIEW_NAME" if path.name.startswith("04_") else "DATASET_NAME"] = f"notebook_{tmp_path.name}"[:50]
    if path.name.startswith("06_"):  # one small round (tests/integration/test_loop_cli.py runs two)
        overrides.update(ROUNDS=1, STEPS=2, BATCH_SIZE=2, CURVE_SIZES=[2])
    notebook = with_parameters(nbformat.read(path, as_version=4), overrides)
    NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [output for cell in notebook.cells for output in cell.get("outputs", []) if output.output_type == "error"]
    assert not errors
    run = tmp_path / "run" / "rounds" / "1" if path.name.startswith("06_") else tmp_path / "run"
    assert (run / "cache.sqlite").exists() and (run / "predictions.parquet").exists()
    if path.name.startswith("06_"):
        # The round finished: its adapter, its before/after per point and the loop's report.
        assert (run / "finetune" / "lora" / "adapter.gguf").exists()
        assert pd.read_csv(run / "finetune" / "lora" / "before_after.csv")["point_id"].iloc[-1] == "(all test cases)"
        assert "Training points, round by round" in (tmp_path / "run" / "rounds" / "rounds.html").read_text()
    if path.name.startswith("03_"):
        snapshots = list((tmp_path / "annotations").glob("*/*.jsonl"))
        assert len(snapshots) == 1 and snapshots[0].read_text().strip()
    if path.name.startswith("05_"):
        # The training data, its exports and the test cases are written, and a spaCy baseline trained.
        run = tmp_path / "run"
        assert (run / "exports" / "openai" / "train.jsonl").read_text().strip()
        assert (run / "exports" / "spacy" / "model" / "model-last").is_dir()
        assert (run / "training_data" / "test_cases.jsonl").read_text().strip()
    if path.name.startswith("04_"):
        # The point review went to Argilla and came back (a snapshot), and the report has the points.
        assert list((tmp_path / "annotations").glob("*_points/*.jsonl"))
        html = (tmp_path / "run" / "report.html").read_text()
        assert 'class="card point"' in html and 'id="chart-point_map"' in html
    if path.name.startswith("02_"):
        html = (tmp_path / "run" / "report.html").read_text()
        # Every variant of the notebook's parameters made it into the summary and its charts.
        variants = next(cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", []))
        for name in ("zero_shot", "definitions+few_shot"):
            assert name in variants.source and html.count(name) >= 3
        assert html.count('class="plotly-graph-div"') >= 5


def test_notebooks_exist():
    assert any(path.name.startswith("01_") for path in NOTEBOOKS)
