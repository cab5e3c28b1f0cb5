"""Targeted annotation against the real embedded Argilla: the unlabelled texts nearest each training
point are labelled by a model, pushed with its answers as suggestions, corrected by an annotator,
pulled back, and join the point's training data; pushing again adds no duplicates."""

from pathlib import Path

import pandas as pd
import pytest

from workbench.annotation import connect, pull_corrections
from workbench.annotation._argilla import find_dataset, records_json
from workbench.core.data import load_dataset, read_table
from workbench.core.task import load_task
from workbench.evaluation.errors import find_errors
from workbench.points.cluster import ErrorClusterer
from workbench.prompting.runner import run_variants
from workbench.testing.annotator import submit_responses
from workbench.testing.fake_model import FakeModel
from workbench.trainingdata.examples import add_examples, build_training_data
from workbench.trainingdata.targeted import push_targeted, targeted_candidates, targeted_rows

pytestmark = pytest.mark.integration
DATA = Path(__file__).resolve().parents[2] / "data" / "complaint_triage"


def test_targeted_texts_go_through_argilla_into_the_training_data(argilla):
    task = load_task(DATA / "task.yaml")
    test = load_dataset(DATA / "test.jsonl", task).head(30)
    model = FakeModel('{"label": "request"}')
    predictions = run_variants(task, test, ["zero_shot", "definitions"], model, progress=False)
    errors = find_errors(predictions, test, task)
    clusterer = ErrorClusterer().fit(errors, predictions, task)
    data = build_training_data(clusterer.points_, clusterer.assignments_, test, task)

    unlabelled = read_table(DATA / "unlabelled.jsonl")
    assert "label" not in unlabelled.columns
    candidates = targeted_candidates(data.examples, unlabelled, per_point=2)
    assert len(candidates) and candidates["example_id"].is_unique
    labelled = run_variants(task, candidates[["example_id", "text"]], ["zero_shot"], model, progress=False)
    owner = connect(argilla["info"].api_url, argilla["keys"]["owner"])
    pushed = push_targeted(owner, task, candidates, labelled, variant="zero_shot", name="targeted_complaints",
                           progress=False)
    again = push_targeted(owner, task, candidates, labelled, variant="zero_shot", name="targeted_complaints",
                          progress=False)
    remote = find_dataset(owner, "targeted_complaints", None)
    assert pushed.records == again.records == len(candidates) == len(records_json(owner, remote, include=()))

    # The annotator labels the first half as complaints and leaves the rest for later.
    chosen = list(candidates["example_id"])[: max(1, len(candidates) // 2)]
    annotator = connect(argilla["info"].api_url, argilla["keys"]["annotator"])
    assert submit_responses(annotator, task, pushed.dataset_id, {e: "complaint" for e in chosen}) == len(chosen)
    corrections = pull_corrections(owner, task, "targeted_complaints", out_dir=None)
    rows = targeted_rows(candidates, corrections, data.examples, task)
    assert list(rows["example_id"]) == chosen and set(rows["target"]) == {"complaint"}
    grown = add_examples(data, rows, task)
    targeted = grown.examples[grown.examples["source"] == "targeted"]
    assert len(targeted) == len(chosen) and grown.leakage["leaks"].sum() == 0
    assert pd.Series(targeted["point_id"]).isin(clusterer.points_["point_id"]).all()
