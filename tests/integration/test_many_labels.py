"""A 150-label set with real-world names, end to end: run, context check, report."""

import json

import pandas as pd
import pytest

from workbench.core.task import task_from_dict
from workbench.models.base import ChatRequest, GenerationOptions
from workbench.models.llama_cpp import LlamaCppModel
from workbench.prompting.budget import PromptTooLongError, check_model_context, prompt_tokens
from workbench.prompting.runner import build_requests, run_variants
from workbench.reporting.sections import write_report
from workbench.testing.fake_model import FakeModel

pytestmark = pytest.mark.integration

STYLES = ["intent_{}", "Intent {} pending", "topic-{}/sub", "B-type{}", "label{}?", "Kategorie {}é"]
NAMES = [STYLES[index % len(STYLES)].format(index) for index in range(150)]
TASK = task_from_dict({
    "name": "many_intents", "kind": "classification",
    "labels": [{"name": name, **({"definition": f"Messages about {name}."} if index % 10 == 0 else {})}
               for index, name in enumerate(NAMES)],
})
DATA = pd.DataFrame({
    "example_id": [f"e{index:03d}" for index in range(450)],
    "text": [f"please help me with case {index}" for index in range(450)],
    "label": [NAMES[(index * 7) % 150] for index in range(450)],
})


def test_150_labels_run_and_report_readably(tmp_path):
    gold = dict(zip(DATA["text"], DATA["label"]))

    def answer(request):
        text = request.messages[-1]["content"].rsplit("Text: ", 1)[1]
        wrong = int(text.rsplit(" ", 1)[1]) % 4 == 0 and "definitions" not in request.messages[0]["content"]
        return json.dumps({"label": NAMES[0] if wrong else gold[text]})

    predictions = run_variants(TASK, DATA, ["zero_shot", "definitions"], FakeModel(answer), progress=False)
    assert predictions["parse_error"].isna().all()
    assert set(predictions["prediction"]) <= set(NAMES)
    path = write_report(tmp_path / "report.html", TASK, DATA, predictions)
    html = path.read_text(encoding="utf-8")
    assert "other 120 labels" in html and "most involved in mistakes, of 150" in html
    assert "Kategorie 5é" in html and "label4?" in html


def test_embedded_model_counts_prompts_with_its_own_tokenizer(embedded_model):
    dataset = DATA.head(3)
    requests = build_requests(TASK, dataset, ["zero_shot"])
    small = LlamaCppModel(n_ctx=512, n_threads=2)
    with pytest.raises(PromptTooLongError, match=r"counted by the model's tokenizer.*context window is 512"):
        run_variants(TASK, dataset, ["zero_shot"], small, progress=False)

    predictions = run_variants(TASK, dataset, ["zero_shot"], embedded_model,
                               options=GenerationOptions(max_tokens=32), progress=False)
    assert predictions["request_error"].isna().all(), predictions["request_error"].tolist()
    assert predictions["parse_error"].isna().all(), predictions["raw_response"].tolist()
    assert set(predictions["prediction"]) <= set(NAMES)  # constrained to the enum, odd names included
    # The estimate stays above the model's own count of the same prompts (English text).
    for messages, tokens_in in zip(requests["messages"], predictions["tokens_in"]):
        assert prompt_tokens(messages) >= tokens_in > 0
    check = check_model_context(embedded_model, [("zero_shot", "e000", ChatRequest(tuple(requests["messages"][0])))])
    assert check.fits and check.limit == 4096
