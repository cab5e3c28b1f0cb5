"""The HTML report: complete, offline, escaped, for classification and NER, with and without repeats."""

import hashlib
import json
import re

import pandas as pd
import pytest
from plotly.offline import get_plotlyjs

from workbench.core.data import load_dataset, validate_dataset
from workbench.core.task import task_from_dict
from workbench.evaluation.errors import find_errors, worst_errors
from workbench.models.base import GenerationOptions
from workbench.prompting.runner import run_variants
from workbench.reporting.html import highlight
from workbench.reporting.sections import report_sections, write_report
from workbench.testing.fake_model import FakeModel

PROBE = "<script>alert(1)</script>"
ESCAPED_PROBE = "&lt;script&gt;alert(1)&lt;/script&gt;"
CLASSIFICATION_CHARTS = [
    "dataset", "comparison", "per_label", "confusion", "consistency", "quality_vs_cost", "error_types",
]
NER_CHARTS = [name for name in CLASSIFICATION_CHARTS if name != "confusion"]


def roll(*parts: object) -> float:
    """A deterministic number in [0, 1) from the parts: the fake model's dice."""
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:8], 16) / 16**8


def prompt_parts(request) -> tuple[str, str, str]:
    system, user = request.messages[0]["content"], request.messages[-1]["content"]
    return system, user, user.rsplit("Text: ", 1)[1].strip()


def classification_model(dataset: pd.DataFrame, labels: tuple[str, ...]) -> FakeModel:
    """Right half the time, 90% with definitions; cot answers exactly as zero_shot does; a few unparseable."""
    gold = dict(zip(dataset["text"], dataset["label"]))

    def answer(request) -> str:
        system, _user, text = prompt_parts(request)
        wrong = labels[(labels.index(gold[text]) + 1) % len(labels)]
        if "alert(1)" in text:
            return f'{PROBE} {{"label": "{wrong}"}}'
        dice = roll(text, request.options.seed)
        if dice > 0.96:
            return f"I cannot tell. {PROBE}"
        skill = 0.9 if "Use these label definitions" in system else 0.5
        label = gold[text] if dice < skill else wrong
        if "Think step by step" in system:
            return json.dumps({"reasoning": "It reads like this.", "label": label})
        return json.dumps({"label": label})

    return FakeModel(answer)


def ner_model(dataset: pd.DataFrame, labels: tuple[str, ...]) -> FakeModel:
    """Quotes some gold entities, mislabels some, invents some, and occasionally answers in prose."""
    gold = dict(zip(dataset["text"], dataset["spans"]))

    def answer(request) -> str:
        system, _user, text = prompt_parts(request)
        skill = 0.85 if "Use these entity type definitions" in system else 0.55
        entities = []
        for index, span in enumerate(gold[text]):
            dice = roll(text, index, request.options.seed)
            if dice < skill:
                entities.append({"text": text[span["start"]:span["end"]], "label": span["label"]})
            elif dice < skill + 0.15:
                other = labels[(labels.index(span["label"]) + 1) % len(labels)]
                entities.append({"text": text[span["start"]:span["end"]], "label": other})
        if roll(text, "extra", request.options.seed) < 0.2:
            entities.append({"text": text.split()[-1].strip("."), "label": "DRUG"})
        if roll(text, "invent", request.options.seed) < 0.1:
            entities.append({"text": "unicorn syndrome", "label": "ADVERSE_EVENT"})
        if "alert(1)" in text:
            return PROBE + json.dumps({"entities": entities + [{"text": "Drug<i>X</i>", "label": "DOSE"}]})
        if roll(text, "prose", request.options.seed) > 0.95:
            return "Sorry, I cannot help with that."
        return json.dumps({"entities": entities})

    return FakeModel(answer)


def run(task, dataset, model, variants, repeats: int) -> pd.DataFrame:
    options = GenerationOptions(temperature=0.7 if repeats > 1 else 0.0)
    return run_variants(task, dataset, variants, model, repeats=repeats, options=options, progress=False)


@pytest.fixture(scope="module")
def classification_data(complaint_task, complaint_test):
    probe = pd.DataFrame([{"example_id": "probe", "text": f"{PROBE} My card was stolen yesterday.", "label": "fraud"}])
    return load_dataset(pd.concat([probe, complaint_test.head(39)], ignore_index=True), complaint_task)


@pytest.fixture(scope="module")
def ner_data(ae_task, ae_test):
    text = f"{PROBE} Patient on Drug<i>X</i> 5mg daily got a rash."
    spans = [{"start": text.index(part), "end": text.index(part) + len(part), "label": label}
             for part, label in (("Drug<i>X</i>", "DRUG"), ("5mg daily", "DOSE"), ("rash", "ADVERSE_EVENT"))]
    probe = pd.DataFrame([{"example_id": "probe", "text": text, "spans": spans}])
    return load_dataset(pd.concat([probe, ae_test.head(29)], ignore_index=True), ae_task)


@pytest.fixture(scope="module")
def classification_run(complaint_task, classification_data):
    model = classification_model(classification_data, complaint_task.label_names)
    return run(complaint_task, classification_data, model, ["zero_shot", "definitions", "cot"], repeats=1)


@pytest.fixture(scope="module")
def classification_report(tmp_path_factory, complaint_task, classification_data, classification_run):
    path = tmp_path_factory.mktemp("report") / "nested" / "classification.html"
    return write_report(path, complaint_task, classification_data, classification_run, title="Triage <b>report</b>")


@pytest.fixture(scope="module")
def ner_report(tmp_path_factory, ae_task, ner_data):
    model = ner_model(ner_data, ae_task.label_names)
    predictions = run(ae_task, ner_data, model, ["zero_shot", "definitions"], repeats=3)
    # Enough errors shown to be sure the probe example is among them.
    return write_report(tmp_path_factory.mktemp("report") / "ner.html", ae_task, ner_data, predictions, max_errors=500)


def without_bundle(document: str) -> str:
    """The report minus plotly's own JavaScript, which legitimately contains '<script' and URLs."""
    bundle = get_plotlyjs()
    assert document.count(bundle) == 1, "plotly's JavaScript must be embedded exactly once"
    return document.replace(bundle, "")


def chart_ids(document: str) -> list[str]:
    return re.findall(r'<div id="chart-([a-z_]+)" class="plotly-graph-div"', document)


def test_classification_report_contains_every_chart_and_section(classification_report, complaint_task):
    document = classification_report.read_text(encoding="utf-8")
    assert chart_ids(document) == CLASSIFICATION_CHARTS
    for title in ("Dataset: complaint_triage", "accuracy per variant", "F1 per label and variant",
                  "Confusion matrix: definitions", "Consistency across repeats", "Errors by type"):
        assert title in document
    assert "<title>Triage &lt;b&gt;report&lt;/b&gt;</title>" in document
    assert complaint_task.description[:40] in document.replace("&#x27;", "'")
    for section in ('id="summary"', 'id="significance"', 'id="charts"', 'id="errors"'):
        assert section in document
    # Summary: one row per variant, headline with interval, secondary metric and efficiency columns.
    rest = without_bundle(document)
    for heading in ("accuracy [95% CI]", "macro F1", "parse failures", "latency p50 (s)", "latency p95 (s)",
                    "tokens in", "cost / 1,000"):
        assert f"<th>{heading}</th>" in rest
    assert rest.count('<span class="badge">baseline</span>') == 1


def test_report_is_self_contained_and_offline(classification_report):
    document = classification_report.read_text(encoding="utf-8")
    rest = without_bundle(document)
    assert not re.search(r"<script[^>]*\bsrc\s*=", document, re.IGNORECASE)
    assert not re.search(r"<link\b", rest, re.IGNORECASE)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", rest, re.IGNORECASE)
    assert "http://" not in rest and "https://" not in rest
    assert "@import" not in rest and "url(" not in rest


def test_classification_report_escapes_script_in_text_and_raw_response(classification_report):
    rest = without_bundle(classification_report.read_text(encoding="utf-8"))
    assert "<script>alert(1)" not in rest
    assert f'<div class="excerpt">{ESCAPED_PROBE} My card was stolen yesterday.</div>' in rest
    # Jinja2 autoescaping writes '"' as &#34; (markupsafe), html.escape as &quot;: either is escaped.
    assert re.search(r'<pre class="raw">' + re.escape(ESCAPED_PROBE) + r" \{(&quot;|&#34;)label(&quot;|&#34;)", rest)


def test_significance_says_plainly_when_a_difference_is_not_significant(
    complaint_task, classification_data, classification_run, classification_report
):
    sections = report_sections(complaint_task, classification_data, classification_run)
    assert sections.baseline == "zero_shot"
    pairs = [(c.variant_a, c.variant_b) for c in sections.comparisons]
    assert pairs == [("definitions", "zero_shot"), ("cot", "zero_shot")]
    cot = sections.comparisons[1]
    assert cot.difference == 0 and not cot.significant  # cot answers exactly as zero_shot does
    rest = without_bundle(classification_report.read_text(encoding="utf-8"))
    assert 'the difference in accuracy (+0.000) is <span class="nosig">not significant</span>' in rest
    assert "significantly better</span> than <b>zero_shot</b>" in rest  # definitions is right 90% of the time
    # The verdicts rest on Holm-adjusted p-values, shown beside the raw ones with the test's name.
    definitions = sections.comparisons[0]
    assert definitions.adjustment == "holm" and definitions.p_adjusted >= definitions.p_value
    assert definitions.significant == (definitions.p_adjusted < 0.05)
    assert f"holm-adjusted p = {definitions.p_adjusted:.3g}, mcnemar_score" in rest
    assert "adjusted with Holm" in rest and "Wilson score interval" in rest
    # The same answers mean there is nothing to detect, said in plain words.
    assert "In plain words: the variants gave the same accuracy" in rest


def test_sections_use_the_given_baseline_and_reject_an_unknown_one(
    complaint_task, classification_data, classification_run
):
    sections = report_sections(complaint_task, classification_data, classification_run, baseline="cot")
    assert sections.baseline == "cot"
    assert {c.variant_b for c in sections.comparisons} == {"cot"}
    assert sections.best_variant == "definitions"
    assert list(sections.summary["variant"]) == ["zero_shot", "definitions", "cot"]
    row = sections.summary.set_index("variant").loc["definitions"]
    assert row["low"] <= row["value"] <= row["high"]
    with pytest.raises(ValueError, match="baseline 'nope' is not a variant"):
        report_sections(complaint_task, classification_data, classification_run, baseline="nope")


def test_worst_errors_put_examples_most_variants_get_wrong_first(complaint_task, classification_data):
    ids = list(classification_data["example_id"][:3])
    predictions = pd.DataFrame([
        {"variant": variant, "example_id": example_id, "repeat": 0, "prediction": prediction,
         "raw_response": str(prediction), "parse_error": None if prediction else "no JSON", "request_error": None,
         "hallucinations": []}
        for variant, answers in {"a": ["hardship", "complaint", "hardship"], "b": ["fraud", None, "hardship"]}.items()
        for example_id, prediction in zip(ids, answers)
    ])
    gold = classification_data.head(3).assign(label=["fraud", "fraud", "fraud"])
    errors = find_errors(predictions, gold, complaint_task)
    table = worst_errors(errors, predictions, gold, complaint_task, max_errors=10)
    assert list(zip(table["example_id"], table["variant"])) == [
        (ids[1], "a"), (ids[1], "b"), (ids[2], "a"), (ids[2], "b"), (ids[0], "a")]
    assert list(table["variants_wrong"]) == [2, 2, 2, 2, 1]
    assert table.loc[1, "predicted"] is None and table.loc[1, "parse_error"] == "no JSON"
    assert len(worst_errors(errors, predictions, gold, complaint_task, max_errors=2)) == 2


def test_ner_report_highlights_escaped_spans_and_has_every_chart(ner_report):
    document = ner_report.read_text(encoding="utf-8")
    assert chart_ids(document) == NER_CHARTS
    rest = without_bundle(document)
    assert "<script>alert(1)" not in rest and "<i>X</i>" not in rest
    assert ESCAPED_PROBE in rest
    # The gold entity's text is escaped inside its highlight; the legend explains the colours.
    assert '<mark class="span gold" title="DRUG">Drug&lt;i&gt;X&lt;/i&gt;<sub>DRUG</sub></mark>' in rest
    assert 'class="span pred-ok"' in rest and 'class="span pred-bad"' in rest
    assert "predicted, wrong</mark>" in rest
    for heading in ("micro_f1 [95% CI]", "strict F1", "boundary F1", "type F1", "repeats agree"):
        assert f"<th>{heading}</th>" in rest
    # With three repeats the consistency chart has data instead of its empty-state note.
    assert "Every variant was run once" not in rest
    assert "all agree" in rest


def test_single_repeat_report_explains_the_empty_consistency_chart(classification_report):
    rest = without_bundle(classification_report.read_text(encoding="utf-8"))
    assert "Every variant was run once per example" in rest
    assert "repeats agree" not in rest  # no consistency columns without repeats


def test_repeated_classification_report(tmp_path, complaint_task, classification_data):
    data = classification_data.head(15)
    predictions = run(complaint_task, data, classification_model(data, complaint_task.label_names),
                      ["zero_shot", "definitions"], repeats=3)
    sections = report_sections(complaint_task, data, predictions, max_errors=5)
    assert sections.repeats == 3
    assert len(sections.worst_errors) == 5
    assert len(sections.figures["consistency"].data) > 0
    assert {"all_agree_share", "fleiss_kappa"} <= set(sections.summary.columns)
    path = write_report(tmp_path / "repeated.html", complaint_task, data, predictions, max_errors=5)
    assert chart_ids(path.read_text(encoding="utf-8")) == CLASSIFICATION_CHARTS


def test_ner_sections_and_a_single_variant(tmp_path, ae_task, ner_data):
    data = ner_data.head(10)
    predictions = run(ae_task, data, ner_model(data, ae_task.label_names), ["zero_shot"], repeats=1)
    sections = report_sections(ae_task, data, predictions)
    assert sections.metric == "micro_f1" and sections.comparisons == ()
    assert "confusion" not in sections.figures
    assert list(sections.summary.columns[:5]) == ["variant", "n", "value", "low", "high"]
    document = write_report(tmp_path / "one.html", ae_task, data, predictions).read_text(encoding="utf-8")
    assert "Only one variant was run" in document


def test_highlight_escapes_entity_text_and_marks_predictions_against_gold():
    text = "a <b> & c d"
    gold = [{"start": 2, "end": 5, "label": "X"}, {"start": 10, "end": 11, "label": "Y"}]
    assert highlight(text, gold) == (
        'a <mark class="span gold" title="X">&lt;b&gt;<sub>X</sub></mark> &amp; c '
        '<mark class="span gold" title="Y">d<sub>Y</sub></mark>'
    )
    predicted = [
        {"start": 2, "end": 5, "label": "X"},  # exact: ok
        {"start": 3, "end": 6, "label": "X"},  # overlaps the previous one: skipped
        {"start": 8, "end": 9, "label": "Y"},  # no gold here: wrong
        {"start": 10, "end": 99, "label": "Y"},  # past the end: skipped
    ]
    assert highlight(text, predicted, gold) == (
        'a <mark class="span pred-ok" title="X">&lt;b&gt;<sub>X</sub></mark> &amp; '
        '<mark class="span pred-bad" title="Y">c<sub>Y</sub></mark> d'
    )


def test_multilabel_report_shows_its_scores_per_label_chart_and_label_chips(tmp_path):
    task = task_from_dict({"name": "topics", "kind": "multilabel", "labels": [
        {"name": "billing", "definition": "money taken or owed"},
        {"name": "bugs", "definition": "the app does something wrong"},
        {"name": "design", "definition": "how the app looks"},
    ]})
    rows = [("probe", f"{PROBE} Charged twice and the app crashed.", ["billing", "bugs"])]
    rows += [(f"r{index}", f"Review {index} about the app.", labels) for index, labels in enumerate(
        [["billing"], ["bugs"], ["design"], ["billing", "design"], [], ["bugs", "design"], ["billing"], ["bugs"]])]
    dataset = validate_dataset(pd.DataFrame(rows, columns=["example_id", "text", "labels"]), task)
    gold = dict(zip(dataset["text"], dataset["labels"]))

    def answer(request) -> str:
        system, _user, text = prompt_parts(request)
        if "alert(1)" in text:
            return PROBE + json.dumps({"labels": ["billing", "design"]})  # misses bugs, adds design
        right = list(gold[text])
        if "Use these label definitions" in system:
            return json.dumps({"labels": right})
        return json.dumps({"labels": right[:1] or ["design"]})  # drops a label, or invents one

    predictions = run_variants(task, dataset, ["zero_shot", "definitions"], FakeModel(answer), progress=False)
    sections = report_sections(task, dataset, predictions)
    assert sections.metric == "micro_f1"
    assert sections.score_columns == ("macro_f1", "samples_f1", "exact_match", "hamming_loss")
    assert "confusion" not in sections.figures
    assert list(sections.figures["per_label"].data[0].x) == ["billing", "bugs", "design"]
    assert list(sections.figures["dataset"].data[0].y) == [4, 4, 3]  # examples per label, from the lists

    document = write_report(tmp_path / "topics.html", task, dataset, predictions).read_text(encoding="utf-8")
    assert chart_ids(document) == NER_CHARTS  # every chart but the confusion matrix
    rest = without_bundle(document)
    for heading in ("micro_f1 [95% CI]", "macro F1", "samples F1", "exact match", "Hamming loss (lower is better)"):
        assert f"<th>{heading}</th>" in rest
    assert "multilabel task" in rest
    # The probe example's card: escaped text, gold labels as chips, the answer checked label by label.
    assert "<script>alert(1)" not in rest
    assert f'<div class="excerpt">{ESCAPED_PROBE} Charged twice and the app crashed.</div>' in rest
    assert '<p>gold: <span class="chip gold">billing</span> <span class="chip gold">bugs</span></p>' in rest
    assert '<span class="chip ok">billing</span> <span class="chip bad">design</span>' in rest
    assert re.search(r'<pre class="raw">' + re.escape(ESCAPED_PROBE) + r"\{", rest)
    assert "false_negative, false_positive" in rest
    assert '<span class="missing">no labels</span>' in rest  # the gold of the example with no label


PROVENANCE = {
    "run_id": "complaints-20261203T101500Z-1a2b3c4d",
    "started_at": "2026-12-03T10:15:00.123456+00:00",
    "finished_at": "2026-12-03T10:17:30.000000+00:00",
    "model": {"kind": "openai_compatible", "model": "gpt-4o-mini", "endpoint": "https://api.example.com/v1",
              "structured_output": "json_schema", "extra_body": {}},
    "templates": {}, "versions": {"python": "3.12.0"},
}
ORIGIN_LINE = ('<p class="meta origin">model openai_compatible gpt-4o-mini at https://api.example.com/v1 · '
               "run complaints-20261203T101500Z-1a2b3c4d · config configs/complaints.yaml · "
               "ran 2026-12-03T10:15:00+00:00</p>")


def section(document: str, name: str) -> str:
    """The HTML of the report's section with id `name`."""
    start = document.index(f'<section id="{name}">')
    return document[start:document.index("</section>", start)]


def wrong_answer_count(task, dataset, predictions) -> int:
    """Wrong answers counted independently of the report: prediction rows with any error."""
    return len(find_errors(predictions, dataset, task)[["example_id", "variant", "repeat"]].drop_duplicates())


def test_header_names_the_model_run_config_and_time(tmp_path, complaint_task, classification_data, classification_run):
    path = write_report(tmp_path / "r.html", complaint_task, classification_data, classification_run,
                        provenance=PROVENANCE, config="configs/complaints.yaml")
    header = without_bundle(path.read_text(encoding="utf-8")).split("</header>")[0]
    assert ORIGIN_LINE in header
    assert header.index(ORIGIN_LINE) < header.index("generated ")


def test_header_without_a_run_leaves_the_run_out_cleanly(classification_report):
    rest = without_bundle(classification_report.read_text(encoding="utf-8"))
    header = rest[rest.index("<header>"):rest.index("</header>")]
    assert 'class="meta origin"' not in header
    facts = header.split('<p class="meta">')[1].split("</p>")[0]
    assert not re.search(r"\b(model|run|config|ran) ", facts)
    assert "None" not in rest
    # The generation time is ISO 8601 with its timezone.
    assert re.search(r"^generated \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d · ", facts)


def test_header_says_what_it_knows_of_a_partial_provenance(tmp_path, complaint_task, classification_data,
                                                           classification_run):
    sections = report_sections(complaint_task, classification_data, classification_run,
                               provenance={"run_id": "r-1", "model": None, "started_at": None})
    assert sections.origin.facts() == ["run r-1"]
    embedded = {"model": {"kind": "llama_cpp", "model": "SmolLM2-135M-Instruct.Q4_1.gguf", "n_ctx": 4096,
                          "lora": {"file": "adapter.gguf", "sha256": "ab" * 32}}}
    assert report_sections(complaint_task, classification_data, classification_run,
                           provenance=embedded).origin.facts() == [
        "model llama_cpp SmolLM2-135M-Instruct.Q4_1.gguf with adapter adapter.gguf"]


def test_a_report_in_a_run_folder_takes_the_runs_provenance(tmp_path, complaint_task, classification_data,
                                                            classification_run):
    (tmp_path / "provenance.json").write_text(json.dumps({**PROVENANCE, "config": "configs/complaints.yaml"}))
    path = write_report(tmp_path / "report.html", complaint_task, classification_data, classification_run)
    assert ORIGIN_LINE in path.read_text(encoding="utf-8")


def test_secrets_in_the_model_config_never_reach_the_report(tmp_path, complaint_task, classification_data,
                                                            classification_run):
    secrets = ["sk-in-the-config", "Bearer sk-in-a-header", "sk-in-the-url", "hunter2", "sk-in-extra-body"]
    model = {
        "kind": "openai_compatible", "model": "my-model", "api_key": secrets[0],
        "headers": {"Authorization": secrets[1]}, "default_headers": {"X-Api-Key": secrets[0]},
        "base_url": f"https://user:{secrets[3]}@llm.example.com/v1?key={secrets[2]}",
        "extra_body": {"api_key": secrets[4]},
    }
    path = write_report(tmp_path / "r.html", complaint_task, classification_data, classification_run,
                        provenance={**PROVENANCE, "model": model})
    document = path.read_text(encoding="utf-8")
    for secret in secrets:
        assert secret not in document
    assert "Authorization" not in without_bundle(document)
    assert "model openai_compatible my-model at https://llm.example.com/v1 · " in document


def test_capped_errors_say_showing_30_of_the_real_count(complaint_task, classification_data, classification_run,
                                                         classification_report):
    total = wrong_answer_count(complaint_task, classification_data, classification_run)
    assert total > 30
    errors = section(without_bundle(classification_report.read_text(encoding="utf-8")), "errors")
    examples = find_errors(classification_run, classification_data, complaint_task)["example_id"].nunique()
    assert f"<h2>Worst errors: {total} wrong answers to {examples} examples</h2>" in errors
    assert f"showing 30 of {total} wrong answers" in errors
    assert sum(errors.count(f"<tr><td>{v}</td>") for v in ("zero_shot", "definitions", "cot")) == 30


def test_errors_under_the_cap_say_no_showing(ner_report, ae_task):
    errors = section(without_bundle(ner_report.read_text(encoding="utf-8")), "errors")
    total = int(re.search(r"<h2>Worst errors: (\d+) wrong answers", errors).group(1))
    assert 0 < total < 500
    assert errors.count("<tr><td>") == total  # every wrong answer is there
    assert "showing" not in errors.lower()


def test_point_cards_say_how_many_of_their_examples_they_show(complaint_task, classification_data):
    from workbench.reporting.html import card_macro, point_card_data

    ids = list(classification_data["example_id"])
    points = pd.DataFrame([
        {"point_id": "P1", "name": "big", "description": "d", "size": 7, "share_of_errors": 0.7,
         "action": "fine-tune", "fixed_by": [], "representatives": ids[:5]},
        {"point_id": "P2", "name": "small", "description": "d", "size": 2, "share_of_errors": 0.2,
         "action": "fine-tune", "fixed_by": [], "representatives": ids[5:7]},
    ])
    big, small = (str(card_macro("point_card")(card)) for card in
                  point_card_data(points, classification_data, complaint_task.kind, representatives=3))
    assert "showing 3 of 7 examples" in big and big.count('<div class="excerpt">') == 3
    assert "showing" not in small and small.count('<div class="excerpt">') == 2
