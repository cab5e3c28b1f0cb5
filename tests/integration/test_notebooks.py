"""Every notebook executes top to bottom on the embedded defaults, with a small LIMIT; and the
notebooks and the CLI continue from each other's run folders."""

import json
import shutil
import sqlite3
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml
from nbclient import NotebookClient

from workbench.cli.main import main
from workbench.core.frames import read_frame
from workbench.experiments.run_history import list_runs
from workbench.experiments.runs import resolve_run_folder

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# The same notebooks on the other task kinds, with no code changed: only the CONFIG parameter.
OTHER_KINDS = [("01_prompt_variants.ipynb", "../configs/demo_adverse_events.yaml"),
               ("02_evaluate.ipynb", "../configs/demo_app_reviews.yaml"),
               ("04_training_points.ipynb", "../configs/demo_adverse_events.yaml"),
               ("05_training_data.ipynb", "../configs/demo_adverse_events.yaml")]
# Notebook 06 has its own tests below: its rounds are shared with `workbench loop`, which continues them.
CASES = [(path, None) for path in NOTEBOOKS if not path.name.startswith("06_")] + [
    (path, config) for path in NOTEBOOKS for name, config in OTHER_KINDS if path.name == name]
# Fewer variants and shorter answers than the configs', to keep the suite short; the parameters
# left out keep their defaults: the config's values. Every notebook answers with ANSWER_TOKENS at
# the config's temperature (02 aside, which samples), so that 03, 04 and 05 find 01's answers to
# their three variants in `shared_answers` instead of asking again (a cut-off chain of thought is
# then a recorded parse failure, which notebook 01 shows in its own cell).
ANSWER_TOKENS = 64
FEWER = ["zero_shot", "definitions", "few_shot"]
SMALLER = {
    "01_": {"VARIANTS": ["zero_shot", "definitions", "few_shot", "cot", "definitions+few_shot"]},
    "02_": {"VARIANTS": ["zero_shot", "definitions", "definitions+few_shot"], "REPEATS": 2, "TEMPERATURE": 0.7},
    "03_": {"VARIANTS": FEWER},
    "04_": {"VARIANTS": FEWER},
    "05_": {"VARIANTS": FEWER},
}
# On the other kinds the notebooks prove that the same cells work on spans and label sets; the
# variants' own mechanics are proved above on the classification task, so two variants and four
# examples do (NER answers are long: 01 on five variants took 90 s of the suite). 04 and 05 then
# find 01's answers on the same kind.
OTHER_KIND_SMALLER = {"VARIANTS": ["zero_shot", "definitions+few_shot"], "LIMIT": 4}


def notebook(name: str) -> Path:
    return next(path for path in NOTEBOOKS if path.name.startswith(name))


def with_parameters(notebook, overrides: dict[str, object]):
    """Insert a cell after the one tagged `parameters`, as papermill does."""
    index = next(i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", []))
    source = "\n".join(f"{name} = {value!r}" for name, value in overrides.items())
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(source))
    return notebook


@pytest.fixture(scope="module")
def kernel():
    """One IPython kernel for this module's notebooks, as a user keeps one open in Jupyter. Each
    execution starts by clearing the kernel's namespace (`%reset -f`) and its working directory
    (notebooks/), so a notebook still runs on its own cells alone: a name it uses without defining
    it fails as in a new kernel. What carries over is what any kernel keeps between notebooks:
    imported modules and the sentence encoder, loaded once (in a new kernel each notebook paid 5 to
    10 s for them), and display options."""
    from jupyter_client import AsyncKernelManager  # nbclient's own kind of manager
    from jupyter_core.utils import run_sync

    manager = AsyncKernelManager(kernel_name="python3")
    yield manager
    if manager.has_kernel:
        run_sync(manager.shutdown_kernel)(now=True)


def execute(path: Path, overrides: dict[str, object], kernel):
    """Run the notebook with `overrides` top to bottom on `kernel` (the fixture: started by the
    first execution, in the notebook's folder); returns it with its outputs, having checked that no
    cell raised."""
    executed = with_parameters(nbformat.read(path, as_version=4), overrides)
    executed.cells.insert(0, nbformat.v4.new_code_cell(
        f"%reset -f\nimport os as _os\n_os.chdir({str(path.parent)!r})\ndel _os"))
    client = NotebookClient(executed, km=kernel, timeout=900, resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    finally:
        if client.kc is not None:
            client.kc.stop_channels()
    errors = [output for cell in executed.cells for output in cell.get("outputs", []) if output.output_type == "error"]
    assert not errors
    del executed.cells[0]  # the reset: not the notebook's
    return executed


def printed(executed) -> str:
    return "\n".join(output.get("text", "") for cell in executed.cells for output in cell.get("outputs", [])
                     if output.output_type == "stream")


def argilla_parameters(argilla, tmp_path) -> dict[str, object]:
    return {"ARGILLA_API_URL": argilla["info"].api_url, "ARGILLA_API_KEY": argilla["keys"]["owner"],
            "ANNOTATOR_API_KEY": argilla["keys"]["annotator"], "ANNOTATIONS_DIR": str(tmp_path / "annotations")}


def cached_runs(cache: Path) -> int:
    """How many runs the response cache has logged (each run of an experiment logs one)."""
    with sqlite3.connect(cache) as connection:
        return connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0]


@pytest.fixture(scope="module")
def shared_answers(tmp_path_factory):
    """One store of the embedded model's answers for the notebooks of this module: notebooks 03, 04
    and 05 ask the same questions (three variants on the same six examples), and each execution
    would otherwise answer them again in its own cache. Only answers are shared (the `responses`
    table, keyed by model, prompt and options), not the runs a cache logs: every notebook still
    runs its experiment and writes its own run, from the answers that exist."""
    from workbench.prompting.cache import ResponseCache

    path = tmp_path_factory.mktemp("answers") / "answers.sqlite"
    ResponseCache(path).close()
    return path


def copy_answers(source: Path, target: Path) -> None:
    """Every answer in the response cache `source` that `target` lacks, added to `target`."""
    from workbench.prompting.cache import ResponseCache

    ResponseCache(target).close()  # created and migrated, as a run would
    with sqlite3.connect(target) as connection:
        connection.execute("ATTACH DATABASE ? AS source", (str(source),))
        connection.execute("INSERT OR IGNORE INTO responses SELECT * FROM source.responses")
        connection.commit()
        connection.execute("DETACH DATABASE source")


@pytest.mark.parametrize(("path", "config"), CASES,
                         ids=[path.name + (f"[{Path(config).stem}]" if config else "") for path, config in CASES])
def test_notebook_runs_top_to_bottom(path, config, tmp_path, request, shared_answers, kernel):
    overrides: dict[str, object] = {"LIMIT": 6, "MAX_TOKENS": ANSWER_TOKENS, "RUN_DIR": str(tmp_path / "run"),
                                    **SMALLER.get(path.name[:3], {})}
    copy_answers(shared_answers, tmp_path / "run" / "cache.sqlite")
    if config:
        overrides.update(OTHER_KIND_SMALLER, CONFIG=config)
    if path.name.startswith(("03_", "04_", "05_")):
        argilla = request.getfixturevalue("argilla")  # the real embedded server, started once per session
        overrides.update(argilla_parameters(argilla, tmp_path), SIMULATE_ANNOTATORS=True)
        overrides["REVIEW_NAME" if path.name.startswith("04_") else "DATASET_NAME"] = f"notebook_{tmp_path.name}"[:50]
    execute(path, overrides, kernel)
    copy_answers(tmp_path / "run" / "cache.sqlite", shared_answers)
    # The run is in the run history, as `workbench run` writes it: runs/<name>/<run id>/, latest pointing at it.
    run = tmp_path / "run" / "latest"
    # The experiment ran through the response cache (the seeded file alone has logged no run).
    assert cached_runs(run.parent / "cache.sqlite") >= 1
    assert (run / "predictions.parquet").exists()
    if path.name.startswith("03_"):
        snapshots = list((tmp_path / "annotations").glob("*/*.jsonl"))
        assert len(snapshots) == 1 and snapshots[0].read_text().strip()
    if path.name.startswith("05_"):
        # The training data (as `workbench data` writes it), its exports and the test cases, and a spaCy baseline.
        assert {p.name for p in (run / "training_data").iterdir()} >= {
            "examples.parquet", "leakage.csv", "build.json", "test_cases.jsonl"}
        assert (run / "exports" / "openai" / "train.jsonl").read_text().strip()
        assert (run / "exports" / "spacy" / "model" / "model-last").is_dir()
    if path.name.startswith("04_"):
        # The point review went to Argilla and came back (a snapshot), the points are in the run
        # folder as `workbench points` writes them, and the report has them.
        assert list((tmp_path / "annotations").glob("*_points/*.jsonl"))
        assert {"points.parquet", "point_assignments.parquet", "label_issues.parquet", "point_map.parquet"} <= {
            p.name for p in run.iterdir()}
        html = (run / "report.html").read_text()
        assert 'class="card point"' in html and 'id="chart-point_map"' in html
        if config is None:
            workbench_data_continues(tmp_path / "run", run, request.getfixturevalue("capsys"))
    if path.name.startswith("02_"):
        html = (run / "report.html").read_text()
        # Every variant of the notebook's parameters made it into the summary and its charts.
        for name in ("zero_shot", "definitions+few_shot"):
            assert html.count(name) >= 3
        assert html.count('class="plotly-graph-div"') >= 5


def test_notebook_03_leaves_the_answers_to_annotators_by_default(tmp_path, argilla, kernel, shared_answers):
    """SIMULATE_ANNOTATORS is False unless set: the notebook points at the dataset, nobody answers,
    and the cells after the push carry on with no corrections. (Its four examples are among the six
    the notebooks above answered: a seeded sample of 4 is the start of that of 6.)"""
    import argilla as rg

    copy_answers(shared_answers, tmp_path / "run" / "cache.sqlite")
    name = f"default_{tmp_path.name}"[:50]
    executed = execute(notebook("03_"), {"LIMIT": 4, "MAX_TOKENS": ANSWER_TOKENS, "RUN_DIR": str(tmp_path / "run"),
                                         **SMALLER["03_"],
                                         **argilla_parameters(argilla, tmp_path), "DATASET_NAME": name}, kernel)
    assert "open http" in printed(executed) and "nobody answers here" in printed(executed)
    client = rg.Argilla(api_url=argilla["info"].api_url, api_key=argilla["keys"]["owner"])
    dataset = client.datasets(name, workspace="workbench")
    response = client.http_client.get(f"/api/v1/datasets/{dataset.id}/records",
                                      params={"include": ["responses"], "limit": 1000})
    response.raise_for_status()
    records = response.json()["items"]
    assert records and not [record["id"] for record in records if record.get("responses")]


def workbench_data_continues(run_dir: Path, run: Path, capsys) -> None:
    """Notebook 04 writes the points where `workbench points` writes them: `workbench data` reads
    them. (Called from notebook 04's own test, on the run it executed: once a separate test that
    executed the notebook a second time, 24 s, for the same folder.)"""
    assert resolve_run_folder(run_dir).resolve() == run.resolve()
    points = read_frame(run / "points.parquet")
    capsys.readouterr()
    assert main(["data", str(run_dir)]) == 0, capsys.readouterr().err
    examples = read_frame(run / "training_data" / "examples.parquet")
    trained = set(examples["point_id"]) - {"regression", "anchors"}
    assert trained and trained <= set(points["point_id"])
    assert (run / "training_data" / "test_cases.jsonl").read_text().strip()


def test_notebook_05_continues_from_workbench_run_and_points(tmp_path, argilla, monkeypatch, capsys, kernel):
    """`workbench run` + `workbench points`, then notebook 05 on the same config: it loads that run
    (no experiment run again, no new run) and its points (not clustered again), and writes the
    training data into that run folder."""
    monkeypatch.chdir(tmp_path)  # the config's runs_dir (runs/) is relative to where the CLI runs
    config = str(ROOT / "configs" / "demo_complaints.yaml")
    variants = SMALLER["05_"]["VARIANTS"]
    assert main(["run", config, "--limit", "6", "--variants", ",".join(variants), "--no-progress"]) == 0
    assert main(["points", "runs/demo_complaints"]) == 0
    run = resolve_run_folder(tmp_path / "runs" / "demo_complaints")
    points = run / "points.parquet"
    before = (points.read_bytes(), points.stat().st_mtime_ns, cached_runs(run.parent / "cache.sqlite"))
    capsys.readouterr()

    executed = execute(notebook("05_"), {
        "CONFIG": config, "LIMIT": 6, "VARIANTS": variants, "RUNS_DIR": str(tmp_path / "runs"), "SPACY_STEPS": 0,
        **argilla_parameters(argilla, tmp_path), "DATASET_NAME": f"continue_{tmp_path.name}"[:50]}, kernel)
    assert f"loaded run {run.name}" in printed(executed)
    assert (points.read_bytes(), points.stat().st_mtime_ns, cached_runs(run.parent / "cache.sqlite")) == before
    assert resolve_run_folder(tmp_path / "runs" / "demo_complaints") == run
    assert len(list_runs(tmp_path / "runs" / "demo_complaints")) == 1
    assert {p.name for p in (run / "training_data").iterdir()} >= {"examples.parquet", "build.json", "test_cases.jsonl"}


# Notebook 06's one small round, with the gate set aside (two training steps rarely pass it; the gate
# itself is tested in tests/unit/test_rounds.py) so that `workbench loop` can build round 2 on it.
NOTEBOOK_06 = {"LIMIT": 6, "VARIANTS": ["zero_shot", "definitions"], "MAX_TOKENS": ANSWER_TOKENS, "ROUNDS": 1,
               "STEPS": 2, "BATCH_SIZE": 2, "CURVE_SIZES": [2], "REGRESSION_SIZE": 6, "KEEP_WORSE": True}


@pytest.fixture(scope="module")
def notebook_06_rounds(tmp_path_factory, shared_answers, kernel):
    """Notebook 06 executed once with `NOTEBOOK_06` (after the notebooks above, so that it reuses
    their answers): (the executed notebook, its RUN_DIR, which holds ``rounds/``). Shared by its own
    test and by the test of `workbench loop` continuing its rounds, which once ran both rounds itself
    (80 s) besides the notebook's (65 s)."""
    run_dir = tmp_path_factory.mktemp("notebook_06") / "run"
    copy_answers(shared_answers, run_dir / "cache.sqlite")
    executed = execute(notebook("06_"), {**NOTEBOOK_06, "RUN_DIR": str(run_dir)}, kernel)
    return executed, run_dir


def test_notebook_06_runs_a_round_and_charts_it(notebook_06_rounds):
    executed, run_dir = notebook_06_rounds
    run = run_dir / "rounds" / "1"
    assert (run / "cache.sqlite").exists() and (run / "predictions.parquet").exists()
    # The round finished: its adapter, its before/after per point, the loop's report, and the charts.
    assert (run / "finetune" / "lora" / "adapter.gguf").exists()
    assert pd.read_csv(run / "finetune" / "lora" / "before_after.csv")["point_id"].iloc[-1] == "(all test cases)"
    assert "Training points, round by round" in (run_dir / "rounds" / "rounds.html").read_text()
    charts = [output for cell in executed.cells for output in cell.get("outputs", [])
              if "application/vnd.plotly.v1+json" in output.get("data", {})]
    titles = [chart["data"]["application/vnd.plotly.v1+json"]["layout"].get("title", {}).get("text", "")
              for chart in charts]
    assert any("Training loss" in title for title in titles) and any("How much data" in title for title in titles)
    record = json.loads((run / "round.json").read_text())
    assert record["started_from"] == "base model" and record["start_adapter"] is None
    assert set(record["stages"]) == {"variants", "points", "training_data", "fine_tune", "re_test"}  # one arm
    assert record["variant"] == "tuned" and record["gate"] and record["accepted"]  # KEEP_WORSE


def test_workbench_loop_continues_the_notebooks_rounds(notebook_06_rounds, tmp_path, capsys):
    """`workbench loop` on notebook 06's rounds folder, with the notebook's settings: round 2 starts
    from round 1's adapter (its variants run on round 1's tuned model, its training continues from
    round 1's weights), tests on nothing round 1 trained on, and the report compares the two rounds;
    a last call only reports. (Once tests/integration/test_loop_cli.py, which ran both rounds with
    the CLI: round 1 is the same `run_round` either way, and its record is checked above.)"""
    _, notebook_run = notebook_06_rounds
    folder = tmp_path / "rounds"
    shutil.copytree(notebook_run / "rounds", folder)
    config = tmp_path / "loop.yaml"
    config.write_text(yaml.safe_dump({
        "name": "demo_complaints", "task": str(ROOT / "data/complaint_triage/task.yaml"),
        "dataset": str(ROOT / "data/complaint_triage/test.jsonl"),
        "examples": str(ROOT / "data/complaint_triage/train.jsonl"), "limit": NOTEBOOK_06["LIMIT"],
        "variants": NOTEBOOK_06["VARIANTS"], "runs_dir": str(tmp_path / "runs"),
        "options": {"temperature": 0.0, "max_tokens": NOTEBOOK_06["MAX_TOKENS"]}}))
    capsys.readouterr()
    assert main(["loop", str(config), "--folder", str(folder), "--rounds", "1", "--steps", "2", "--batch-size", "2",
                 "--regression-size", "6", "--keep-worse", "--no-progress"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    # No .partial left behind; embeddings.npz is the loop's text -> vector cache.
    assert sorted(p.name for p in folder.iterdir()) == ["1", "2", "embeddings.npz", "rounds.html"]
    second = json.loads((folder / "2" / "round.json").read_text())
    assert second["started_from"] == "round 1"
    assert Path(second["start_adapter"]).resolve() == (folder / "1" / "finetune" / "lora" / "adapter.gguf").resolve()
    assert second["fingerprint"] == json.loads((folder / "1" / "round.json").read_text())["fingerprint"]

    # Round 2's prompt variants ran on round 1's tuned model, and its training continued from round 1's adapter.
    provenance = json.loads((folder / "2" / "provenance.json").read_text())
    assert provenance["model"]["lora"]["sha256"]
    training = json.loads((folder / "2" / "finetune" / "lora" / "training.json").read_text())
    assert Path(training["start_from"]).resolve() == (folder / "1" / "finetune" / "lora" / "adapter").resolve()

    # Round 2 never tests on an example round 1 trained on, and replays none of its own test cases.
    trained_before = set(pd.read_parquet(folder / "1" / "training_data" / "train_rows.parquet")["example_id"])
    examples = pd.read_parquet(folder / "2" / "training_data" / "examples.parquet")
    tests = set(examples.loc[examples["split"] == "test", "example_id"])
    assert not tests & trained_before
    rows = pd.read_parquet(folder / "2" / "training_data" / "train_rows.parquet")
    assert not set(rows["example_id"]) & tests and rows["example_id"].is_unique
    assert rows["replayed"].sum() == second["counts"]["replayed_rows"]

    table = pd.read_csv(folder / "2" / "finetune" / "lora" / "before_after.csv")
    assert table["point_id"].iloc[-1] == "(all test cases)" and table["cases"].iloc[-1] == len(tests)
    efficiency = pd.read_csv(folder / "2" / "finetune" / "lora" / "efficiency.csv")
    assert set(efficiency["variant"]) >= {"base", "tuned"} and (efficiency["latency_p95_s"] > 0).all()

    html = (folder / "rounds.html").read_text()
    assert "round 1" in html and "round 2" in html and "Regressions" in html
    assert "round 2 (round 1)" in out and "regressions; report:" in out

    # A last call continues the loop, here only to report; the finished rounds are left as they were.
    before = (folder / "1" / "round.json").read_text(), (folder / "2" / "round.json").read_text()
    assert main(["loop", str(config), "--folder", str(folder), "--report-only"]) == 0
    assert ((folder / "1" / "round.json").read_text(), (folder / "2" / "round.json").read_text()) == before


def test_notebooks_exist():
    assert any(path.name.startswith("01_") for path in NOTEBOOKS)
