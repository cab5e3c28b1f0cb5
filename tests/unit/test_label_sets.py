"""Real label sets: any name that survives JSON, definitions optional, and 150 labels at once."""

import json

import pandas as pd
import pytest

from workbench.core.answers import UNPARSED, normalise_label, parse_answer
from workbench.core.kinds.ner_scoring import OVERALL
from workbench.core.task import (
    MAX_LABEL_CHARS,
    NONE_OF_THESE,
    TaskSpecError,
    load_task,
    task_from_dict,
    task_to_dict,
)
from workbench.prompting.runner import run_variants
from workbench.prompting.templates import answer_schema, prompt_labels, render_messages
from workbench.prompting.variants import parse_variant
from workbench.testing.fake_model import FakeModel

REAL_NAMES = ["payment_reverted?", "Refund_pending", "Sci-Fi/Fantasy", "B-product", "5", "Négatif", "Books, Comics"]


def task_of(names, kind="classification", definitions=None):
    definitions = definitions or {}
    labels = [{"name": name, **({"definition": definitions[name]} if name in definitions else {})} for name in names]
    return task_from_dict({"name": "real", "kind": kind, "labels": labels})


def many_labels(count=150):
    """A synthetic label set in the styles public sets use, all told apart by the answer matcher."""
    styles = ["intent_{}", "Intent {} pending", "topic-{}/sub", "B-type{}", "label{}?", "Kategorie {}é"]
    return [styles[index % len(styles)].format(index) for index in range(count)]


def test_real_label_names_are_kept_exactly_everywhere():
    task = task_of(REAL_NAMES)
    assert task.label_names == tuple(REAL_NAMES)
    assert answer_schema(task, parse_variant("zero_shot"))["properties"]["label"]["enum"] == REAL_NAMES
    assert task_from_dict(task_to_dict(task)).label_names == tuple(REAL_NAMES)
    for name in REAL_NAMES:
        parsed = parse_answer(task, json.dumps({"label": name}), "text")
        assert parsed.prediction == name and parsed.parse_error is None


def test_prompts_quote_every_name_when_any_is_not_a_plain_word():
    system, user = render_messages(task_of(["payment_reverted?", "Refund_pending"]), parse_variant("zero_shot"), "hi")
    assert system["content"].endswith('{"label": <one of: "payment_reverted?", "Refund_pending">}')
    assert user["content"] == 'Labels: "payment_reverted?", "Refund_pending"\nText: hi'
    # Plain names (spaces included) stay bare, so existing prompts do not change.
    _, plain = render_messages(task_of(["card arrival", "card_linking"]), parse_variant("zero_shot"), "hi")
    assert plain["content"] == "Labels: card arrival, card_linking\nText: hi"
    shown, quoted = prompt_labels(task_of(["Books, Comics", 'say "hi"']))
    assert quoted and [label.shown for label in shown] == ['"Books, Comics"', '"say \\"hi\\""']


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["", "b"], "is empty or only whitespace"),
        (["   ", "b"], "is empty or only whitespace"),
        ([" refund", "b"], "leading or trailing whitespace: strip it (write 'refund')"),
        (["refund\u00a0", "b"], "leading or trailing whitespace: strip it"),
        (["two\nlines", "b"], "contains a control character (U+000A)"),
        (["tab\there", "b"], "contains a control character (U+0009)"),
        (["a\u2028b", "b"], "contains a line separator (U+2028)"),
        ([UNPARSED, "b"], f"{UNPARSED!r} is reserved"),
        ([OVERALL, "b"], "overall row of NER scores"),
        ([NONE_OF_THESE, "b"], "None of these"),
        (["x" * (MAX_LABEL_CHARS + 1), "b"], f"Argilla keeps at most {MAX_LABEL_CHARS}"),
        (["...", "b"], "only quotes and dots"),
        (["refund", "b", "refund"], "'refund' is listed more than once"),
        (["Sci-Fi", "Drama", "sci fi"], "labels 'Sci-Fi' and 'sci fi' cannot be told apart"),
        (["hardship_case", "Hardship-Case"], "labels 'hardship_case' and 'Hardship-Case' cannot be told apart"),
    ],
)
def test_names_that_cannot_work_are_refused_with_the_reason(names, message):
    with pytest.raises(TaskSpecError, match="is not a valid task specification") as raised:
        task_of(names)
    assert message in str(raised.value)


def test_reserved_words_are_compared_exactly():
    assert task_of(["all", "All labels", "none"]).label_names == ("all", "All labels", "none")


@pytest.mark.parametrize(("value", "shown"), [("1", "1"), ("yes", "True"), ("2.5", "2.5")])
def test_yaml_numbers_and_booleans_as_names_say_to_quote_them(tmp_path, value, shown):
    path = tmp_path / "task.yaml"
    path.write_text(f"name: t\nkind: classification\nlabels:\n  - name: {value}\n  - name: other\n")
    with pytest.raises(TaskSpecError, match=rf"labels\.0\.name: .*label name {shown} is a .*quote it"):
        load_task(path)
    (tmp_path / "quoted.yaml").write_text(f'name: t\nkind: classification\nlabels:\n  - name: "{value}"\n  - name: o\n')
    assert load_task(tmp_path / "quoted.yaml").label_names == (value, "o")


def test_definitions_are_optional_and_empty_when_missing(tmp_path):
    path = tmp_path / "task.yaml"
    path.write_text(
        "name: t\nkind: classification\nlabels:\n  - name: a\n    definition: ' Alpha. '\n"
        "  - name: b\n  - name: c\n    definition: null\n  - name: d\n    definition: '  '\n"
    )
    task = load_task(path)
    assert [label.definition for label in task.labels] == ["Alpha.", "", "", ""]
    assert task.definition("a") == "Alpha." and task.definition("b") == ""
    assert task.undefined_labels == ("b", "c", "d")
    with pytest.raises(KeyError, match="no label 'z'"):
        task.definition("z")
    assert task_to_dict(task)["labels"][1] == {"name": "b", "definition": ""}


def test_definitions_variant_names_the_labels_without_one_once():
    task = task_from_dict({"name": "t", "kind": "classification", "labels": [
        {"name": "complaint", "definition": "Any dissatisfaction."}, {"name": "request"}, {"name": "other", "definition": ""},
    ]})
    system = render_messages(task, parse_variant("definitions"), "hi")[0]["content"]
    assert system == (
        "You are a careful annotator for t.\n\n"
        "Use these label definitions. They are the client's own and override the everyday meaning of the words:\n"
        "- complaint: Any dissatisfaction.\n"
        "These labels have no definition; read them by the everyday meaning of their names: request, other.\n\n"
        "Reply with JSON only, in this form:\n"
        '{"label": "<one of: complaint, request, other>"}'
    )


def test_definitions_variant_without_any_definition_says_so_for_every_kind():
    expected = {
        "classification": "The labels have no definitions; read them by the everyday meaning of their names.",
        "multilabel": "The labels have no definitions; read them by the everyday meaning of their names.",
        "ner": "The entity types have no definitions; read them by the everyday meaning of their names.",
    }
    for kind, sentence in expected.items():
        task = task_of(["B-product", "Sci-Fi/Fantasy"], kind=kind)
        system = render_messages(task, parse_variant("definitions"), "hi")[0]["content"]
        assert system.count(sentence) == 1 and "Use these" not in system
        assert render_messages(task, parse_variant("zero_shot"), "hi")[0]["content"].count("definition") == 0


def test_partly_defined_ner_and_multilabel_prompts_list_the_undefined_types():
    for kind, words in (("ner", "These entity types have no definition"), ("multilabel", "These labels have no definition")):
        task = task_of(["B-product", "Sci-Fi/Fantasy", "x"], kind=kind, definitions={"x": "An x."})
        system = render_messages(task, parse_variant("definitions"), "hi")[0]["content"]
        assert '- "x": An x.\n' in system
        assert f'{words}; read them by the everyday meaning of their names: "B-product", "Sci-Fi/Fantasy".' in system


def test_150_labels_run_and_score_with_names_kept():
    names = many_labels()
    task = task_of(names, definitions={names[0]: "The first."})
    assert len(task.label_names) == 150 and len(task.undefined_labels) == 149
    data = pd.DataFrame({"example_id": [f"e{i}" for i in range(300)], "text": [f"text {i}" for i in range(300)],
                         "label": [names[i % 150] for i in range(300)]})
    gold = dict(zip(data["text"], data["label"]))

    def answer(request):
        text = request.messages[-1]["content"].rsplit("Text: ", 1)[1]
        return json.dumps({"label": gold[text].upper()})  # another case: matched back to the exact name

    predictions = run_variants(task, data, ["zero_shot", "definitions"], FakeModel(answer), progress=False)
    assert predictions["parse_error"].isna().all()
    assert list(predictions["prediction"]) == list(data["label"]) * 2
    per_label = task.kind.per_label_scores(predictions, data, task)
    assert set(per_label["label"]) == set(names) and (per_label["f1"] == 1.0).all()


def test_answer_matcher_tells_150_labels_apart():
    names = tuple(many_labels())
    for name in names:
        assert normalise_label(name, names) == name
        assert normalise_label(name.upper(), names) == name
        assert normalise_label(name.replace("_", " "), names) == name
