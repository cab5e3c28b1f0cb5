"""`workbench finetune <run>` on a real run folder: LoRA on the embedded model from the run's training
data, the adapter converted for llama.cpp, and the base and tuned models compared on every point's
test cases with paired tests (a tiny training: the test checks the mechanics, not the gain). Every
command runs through `main` in this process: the same code as the entry point, without a new
interpreter loading torch, transformers and the encoder again (~8 s a call)."""

import contextlib
import io
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from workbench.cli.main import main
from workbench.experiments.config import load_experiment
from workbench.experiments.runs import load_run, run_experiment, write_run
from workbench.testing.fake_model import FakeModel

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def prepared_run(tmp_path_factory):
    """A run folder with points and training data, ready for `workbench finetune`: its answers from a
    fake model (every example wrong somewhere), its config naming the embedded model, which is what
    gets tuned and compared. Tests copy it (`copied_run`)."""
    tmp_path = tmp_path_factory.mktemp("prepared")
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({
        "name": "tune", "task": str(ROOT / "data/complaint_triage/task.yaml"),
        "dataset": str(ROOT / "data/complaint_triage/test.jsonl"),
        "examples": str(ROOT / "data/complaint_triage/train.jsonl"), "limit": 10,
        "variants": ["zero_shot", "definitions"], "runs_dir": str(tmp_path / "runs"),
        "options": {"max_tokens": 32}}))
    experiment = load_experiment(config)
    run = write_run(run_experiment(experiment, model=FakeModel('{"label": "request"}'), progress=False),
                    experiment.run_dir)
    assert main(["points", str(run.path)]) == 0
    # Six regression cases, not 50: the re-test answers every test case twice (base and tuned).
    assert main(["data", str(run.path), "--train-variant", "zero_shot", "--regression-size", "6"]) == 0
    return run.path


def copied_run(source: Path, tmp_path: Path):
    """A copy of the run folder `source` (runs/tune/<run id>) in `tmp_path`, loaded."""
    target = tmp_path / "runs" / "tune" / source.name
    shutil.copytree(source, target)
    return load_run(target)


@pytest.fixture(scope="module")
def tuned_run(prepared_run, tmp_path_factory):
    """A copy of `prepared_run` after `workbench finetune --steps 3` with the re-test in-process:
    (its run folder, what the command printed). The serving test starts from this training instead
    of training the same rows again."""
    run = copied_run(prepared_run, tmp_path_factory.mktemp("tuned"))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["finetune", str(run.path), "--steps", "3", "--batch-size", "2", "--no-progress"])
    assert code == 0, printed.getvalue()[-3000:]
    return run.path, printed.getvalue()


def test_finetune_trains_converts_and_compares_per_point(tuned_run):
    path, out = tuned_run
    run = load_run(path)
    assert "trained 3 steps on" in out and (run.path / "finetune" / "lora" / "adapter.gguf").exists()
    table = pd.read_csv(run.path / "finetune" / "lora" / "before_after.csv")
    assert table["point_id"].iloc[-1] == "(all test cases)" and "regression" in set(table["point_id"])
    assert table.set_index("point_id").loc["regression", "cases"] == 6
    assert set(table["verdict"]) <= {"better", "worse", "no clear difference"}
    assert (table["p_adjusted"] >= table["p_value"] - 1e-12).all() and table["small"].iloc[0]
    assert table["cases"].iloc[-1] == pd.read_json(run.path / "training_data" / "test_cases.jsonl", lines=True).shape[0]
    methods = pd.read_csv(run.path / "finetune" / "points_by_method.csv")
    assert list(methods.columns) == ["point_id", "name", "prompt", "lora", "fixed_by"] and len(methods)


def test_finetune_serve_refuses_what_the_server_lacks_then_re_tests_on_llama_cpps_server(tuned_run, tmp_path,
                                                                                      capsys):
    """`--serve openai-compatible` on a finished training (`tuned_run`'s, copied): a base the server
    does not list is refused before anything else, an adapter it does not list before any re-test
    request (saying how to serve it), and with both served by llama.cpp's server the re-test runs
    there, without training again. (The branch that trains first, when no finished training is in the
    folder, is the same call `workbench finetune` makes without --serve, tested above.)"""
    from conftest import llama_cpp_server

    from workbench.models.llama_cpp import embedded_model_path
    from workbench.testing.openai_stub import StubConfig, StubServer

    run = copied_run(tuned_run[0], tmp_path)
    lora = run.path / "finetune" / "lora"
    training = (lora / "training.json").read_bytes()
    for name in ("before_after.csv", "predictions.parquet"):  # the in-process re-test's, written again below
        (lora / name).unlink()

    def finetune(url, *extra):
        block = tmp_path / "serve.yaml"
        block.write_text(yaml.safe_dump({"base_url": url, "api_key_env": None, "model": "smollm2",
                                         "adapter": "tune-tuned", "structured_output": "json_object_schema"}))
        code = main(["finetune", str(run.path), "--steps", "3", "--batch-size", "2", "--no-progress",
                     "--serve", "openai-compatible", "--serve-config", str(block), *extra])
        return code, capsys.readouterr()

    stub = StubServer(StubConfig(models=("another-model",)))
    stub.start_in_thread()
    try:
        code, said = finetune(stub.base_url)  # a base the server lacks: refused before anything else
        assert code == 2 and "does not serve the base model 'smollm2'" in said.err
        assert "trained" not in said.out
        stub.config.models = ("smollm2",)
        code, said = finetune(stub.base_url)  # the training is kept; the adapter's name is not listed
        assert code == 2 and "trained already: 3 steps" in said.out
        assert "does not serve the adapter 'tune-tuned'" in said.err
        assert f"--enable-lora --lora-modules tune-tuned={(lora / 'adapter').resolve()}" in said.err
        assert f"model_alias: tune-tuned and lora_path: {(lora / 'adapter.gguf').resolve()}" in said.err
    finally:
        stub.stop_thread()
    assert stub.records == [] and not (lora / "before_after.csv").exists()  # no re-test request was sent
    assert (lora / "training.json").read_bytes() == training

    common = {"model": str(embedded_model_path()), "n_threads": 2, "n_ctx": 2048}
    models = [{**common, "model_alias": "smollm2"},
              {**common, "model_alias": "tune-tuned", "lora_path": str(lora / "adapter.gguf")}]
    with llama_cpp_server(models, tmp_path) as url:
        code, said = finetune(url)
    assert code == 0, said.err
    assert "trained already: 3 steps" in said.out and "trained 3 steps" not in said.out  # the served adapter kept
    assert f"re-test on {url}: base 'smollm2', tuned 'tune-tuned'" in said.out
    assert (lora / "training.json").read_bytes() == training
    table = pd.read_csv(lora / "before_after.csv")
    assert table["point_id"].iloc[-1] == "(all test cases)" and table.set_index("point_id").loc["regression",
                                                                                             "cases"] == 6
    # Every answer came from the server: one chat request per prediction (none from the run's cache).
    predictions = pd.read_parquet(lora / "predictions.parquet")
    log = next(tmp_path.glob("llama_server_*.log")).read_text()
    assert log.count("POST /v1/chat/completions") == len(predictions) > 0
    assert set(predictions["variant"]) >= {"base", "tuned"}


def test_finetune_under_torchrun_trains_in_a_process_group_and_converts_for_llama_cpp(prepared_run, tmp_path, capsys):
    """`workbench finetune --launcher torchrun --processes 2` on the embedded model: the step runs as
    a process group of two (each its share of every batch, both seeing the same averaged losses) from
    the job file the command wrote, and the first process converts the adapter for llama.cpp.
    (--no-compare: the re-test after a launched step is the loop's, under accelerate, in
    tests/integration/test_local_base_model.py. Once two tests, the launched step on the embedded
    model and this command on a folder model, each starting a process group.)"""
    run = copied_run(prepared_run, tmp_path)
    capsys.readouterr()
    assert main(["finetune", str(run.path), "--steps", "1", "--batch-size", "2", "--launcher", "torchrun",
                 "--processes", "2", "--no-compare", "--no-progress"]) == 0
    out = capsys.readouterr().out
    folder = run.path / "finetune" / "lora"
    assert "trained 1 steps on" in out and "by workbench, torchrun, 2 process(es)" in out
    ranks = [json.loads((folder / "ranks" / f"{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["processes"] for r in ranks] == [2, 2] and ranks[0]["losses"] == ranks[1]["losses"]
    job = json.loads((folder / "launch.json").read_text())
    assert job["config"] == (run.config.get("model") or {"kind": "embedded"})
    assert (folder / "adapter.gguf").stat().st_size > 0 and (folder / "base_config" / "config.json").exists()
    assert not (folder / "before_after.csv").exists()


def test_finetune_serve_flags_that_cannot_work_are_refused(prepared_run, tmp_path, capsys):
    run = copied_run(prepared_run, tmp_path)
    assert main(["finetune", str(run.path), "--serve-config", str(tmp_path / "serve.yaml")]) == 2
    assert "--serve-config names the server of --serve openai-compatible" in capsys.readouterr().err
    assert main(["finetune", str(run.path), "--method", "prompt_tuning", "--serve", "openai-compatible"]) == 2
    assert "--method prompt_tuning makes none: use --method lora" in capsys.readouterr().err
    assert main(["finetune", str(run.path), "--serve", "openai-compatible"]) == 2
    assert "config.yaml has no serve: block" in capsys.readouterr().err
    assert not (run.path / "finetune").exists()
