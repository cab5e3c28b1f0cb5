"""Each chart returns a Figure whose traces carry exactly the data it was given."""

import html
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import pytest

from workbench.core.answers import UNPARSED
from workbench.core.kinds.classification_scoring import confusion, per_label_scores
from workbench.core.task import task_from_dict
from workbench.evaluation.consistency import example_consistency
from workbench.reporting.plots import (
    FONT,
    TEMPLATE,
    pareto_front,
    plot_confusion,
    plot_consistency,
    plot_dataset_overview,
    plot_error_types,
    plot_per_label_f1,
    plot_quality_vs_cost,
    plot_variant_comparison,
)


def annotation_text(fig: go.Figure) -> str:
    return " ".join(annotation.text for annotation in fig.layout.annotations)


def labelled_predictions(gold: pd.DataFrame, answers: dict[str, list]) -> pd.DataFrame:
    """Predictions of several variants over `gold`, one answer list per variant (None = unparsed)."""
    rows = []
    for variant, predicted in answers.items():
        for example_id, prediction in zip(gold["example_id"], predicted):
            rows.append({"variant": variant, "example_id": example_id, "repeat": 0, "prediction": prediction})
    return pd.DataFrame(rows)


def test_dataset_overview_counts_labels_in_task_order_and_histograms_lengths(complaint_task, complaint_test):
    fig = plot_dataset_overview(complaint_test, complaint_task)
    bars, histogram = fig.data
    assert list(bars.x) == list(complaint_task.label_names)
    assert list(bars.y) == [int((complaint_test["label"] == label).sum()) for label in complaint_task.label_names]
    assert list(histogram.x) == list(complaint_test["text"].str.len())
    assert "Examples per label" in annotation_text(fig)


def test_dataset_overview_counts_entities_per_type_for_ner(ae_task, ae_test):
    fig = plot_dataset_overview(ae_test, ae_task)
    bars = fig.data[0]
    expected = pd.Series([span["label"] for spans in ae_test["spans"] for span in spans]).value_counts()
    assert list(bars.x) == list(ae_task.label_names)
    assert list(bars.y) == [int(expected.get(label, 0)) for label in ae_task.label_names]
    assert "Entities per type" in annotation_text(fig)


def test_variant_comparison_error_bars_are_the_interval():
    ci = pd.DataFrame({
        "variant": ["zero_shot", "few_shot", "cot"], "metric": "accuracy",
        "value": [0.5, 0.7, 0.6], "low": [0.4, 0.65, 0.3], "high": [0.55, 0.9, 0.61], "confidence": 0.95,
    })
    fig = plot_variant_comparison(ci)
    (bar,) = fig.data
    assert list(bar.x) == ["zero_shot", "few_shot", "cot"]  # run order, not sorted
    np.testing.assert_allclose(bar.y, ci["value"])
    np.testing.assert_allclose(bar.error_y.array, ci["high"] - ci["value"])
    np.testing.assert_allclose(bar.error_y.arrayminus, ci["value"] - ci["low"])
    assert "95%" in fig.layout.title.text and fig.layout.yaxis.title.text == "accuracy"


def test_per_label_heatmap_z_equals_per_label_scores(complaint_task, complaint_test):
    gold = complaint_test.head(12)
    labels = list(complaint_task.label_names)
    predictions = labelled_predictions(gold, {
        "zero_shot": list(gold["label"]),
        "definitions": [labels[0]] * len(gold),
    })
    per_label = per_label_scores(predictions, gold, complaint_task)
    (heatmap,) = plot_per_label_f1(per_label).data
    assert list(heatmap.y) == ["zero_shot", "definitions"]
    assert list(heatmap.x) == labels
    expected = per_label.pivot(index="variant", columns="label", values="f1").loc[["zero_shot", "definitions"], labels]
    np.testing.assert_allclose(np.asarray(heatmap.z, dtype=float), expected.to_numpy())
    assert heatmap.texttemplate == "%{z:.2f}"  # each cell is annotated with its value


def test_per_label_heatmap_takes_strict_rows_of_score_ner():
    rows = []
    for variant, base in (("a", 0.1), ("b", 0.5)):
        for mode, shift in (("strict", 0.0), ("boundary", 0.2), ("type", 0.1)):
            for index, label in enumerate(["ALL", "DRUG", "DOSE"]):
                rows.append({"variant": variant, "label": label, "mode": mode, "f1": base + shift + index / 100})
    (heatmap,) = plot_per_label_f1(pd.DataFrame(rows)).data
    assert list(heatmap.x) == ["DRUG", "DOSE"] and list(heatmap.y) == ["a", "b"]
    np.testing.assert_allclose(np.asarray(heatmap.z, dtype=float), [[0.11, 0.12], [0.51, 0.52]])


def test_confusion_heatmap_z_equals_the_matrix_with_unparsed_column(complaint_task, complaint_test):
    gold = complaint_test.head(10)
    predicted = list(gold["label"])
    predicted[0], predicted[1] = None, complaint_task.label_names[-1]
    matrix = confusion(labelled_predictions(gold, {"v": predicted}), gold, complaint_task, "v")
    fig = plot_confusion(matrix, "v")
    (heatmap,) = fig.data
    np.testing.assert_array_equal(np.asarray(heatmap.z, dtype=float), matrix.to_numpy(float))
    # Category names are HTML-escaped for plotly, which shows "&lt;unparsed&gt;" as "<unparsed>".
    assert list(heatmap.x) == [*complaint_task.label_names, html.escape(UNPARSED)]
    assert list(heatmap.y) == list(complaint_task.label_names)
    assert fig.layout.yaxis.autorange == "reversed"  # first gold label on top
    assert "Confusion matrix: v" in fig.layout.title.text


def test_consistency_with_single_repeats_is_an_explanatory_empty_state():
    predictions = pd.DataFrame({"variant": ["a", "a", "b"], "example_id": ["e1", "e2", "e1"], "repeat": 0,
                                "prediction": ["x", "y", "x"]})
    fig = plot_consistency(example_consistency(predictions))
    assert len(fig.data) == 0
    assert "repeats" in annotation_text(fig)


def test_consistency_stacks_the_share_of_examples_per_agreement_level():
    answers = {("a", "e1"): ["x", "x", "x"], ("a", "e2"): ["x", "y", "x"], ("a", "e3"): ["x", "y", None],
               ("b", "e1"): ["x", "x", "x"], ("b", "e2"): ["y", "y", "y"], ("b", "e3"): ["x", "x", "y"]}
    rows = [{"variant": variant, "example_id": example_id, "repeat": repeat, "prediction": answer}
            for (variant, example_id), values in answers.items() for repeat, answer in enumerate(values)]
    fig = plot_consistency(example_consistency(pd.DataFrame(rows)))
    by_name = {trace.name: trace for trace in fig.data}
    assert list(by_name) == ["all agree", "2 of 3 agree", "all differ"]
    assert list(by_name["all agree"].y) == ["a", "b"]
    np.testing.assert_allclose(by_name["all agree"].x, [1 / 3, 2 / 3])
    np.testing.assert_allclose(by_name["2 of 3 agree"].x, [1 / 3, 1 / 3])
    np.testing.assert_allclose(by_name["all differ"].x, [1 / 3, 0])
    assert list(by_name["all agree"].customdata) == [1, 2]  # example counts, shown on hover
    assert fig.layout.barmode == "stack"


def test_consistency_names_variants_run_once_when_others_were_repeated():
    rows = [{"variant": "a", "example_id": "e1", "repeat": r, "prediction": "x"} for r in range(2)]
    rows.append({"variant": "once", "example_id": "e1", "repeat": 0, "prediction": "x"})
    fig = plot_consistency(example_consistency(pd.DataFrame(rows)))
    assert [list(trace.y) for trace in fig.data] == [["a"]]
    assert "not shown: once" in fig.layout.title.text


SUMMARY = pd.DataFrame({
    "variant": ["cheap", "best", "dominated", "tie_of_cheap", "unpriced"],
    "accuracy": [0.8, 0.9, 0.7, 0.8, 0.95],
    "cost_per_1000": [1.0, 2.0, 3.0, 1.0, math.nan],
    "latency_p50_s": [0.5, 0.4, 0.3, 0.6, 1.0],
})


def test_pareto_front_membership_on_a_hand_made_summary():
    cost_front = pareto_front(SUMMARY, "accuracy", "cost_per_1000")
    # cheap and its exact tie both stay (neither beats the other); unpriced has no cost to compare.
    assert list(SUMMARY.loc[cost_front, "variant"]) == ["cheap", "best", "tie_of_cheap"]
    latency_front = pareto_front(SUMMARY, "accuracy", "latency_p50_s")
    assert list(SUMMARY.loc[latency_front, "variant"]) == ["best", "dominated", "unpriced"]


def test_quality_vs_cost_marks_and_labels_the_front_and_names_unpriced_variants():
    fig = plot_quality_vs_cost(SUMMARY, quality="accuracy")
    markers = [trace for trace in fig.data if trace.mode == "markers"]
    cost_panel = {trace.name: trace for trace in markers if trace.xaxis == "x"}
    latency_panel = {trace.name: trace for trace in markers if trace.xaxis == "x2"}
    assert set(cost_panel) == {"cheap", "best", "dominated", "tie_of_cheap"}  # unpriced is left out here
    assert set(latency_panel) == set(SUMMARY["variant"])  # but has a latency
    assert cost_panel["best"].marker.size > cost_panel["dominated"].marker.size  # front is emphasised
    line = next(trace for trace in fig.data if trace.name == "Pareto front" and trace.xaxis == "x")
    assert list(line.x) == [1.0, 1.0, 2.0] and list(line.y) == [0.8, 0.8, 0.9]
    labels = next(trace for trace in fig.data if trace.mode == "text" and trace.xaxis == "x")
    assert [text.strip("\u00a0") for text in labels.text] == ["cheap, tie_of_cheap", "best"]
    assert "no price known for: unpriced" in annotation_text(fig)
    # Each variant appears once in the legend.
    legend = [trace.name for trace in fig.data if trace.showlegend]
    assert sorted(legend) == sorted([*SUMMARY["variant"], "Pareto front"])


def test_quality_vs_cost_with_free_or_unpriced_models():
    free = SUMMARY.assign(cost_per_1000=0.0)
    fig = plot_quality_vs_cost(free)
    assert "costs 0" in annotation_text(fig)
    cost_points = [trace for trace in fig.data if trace.mode == "markers" and trace.xaxis == "x"]
    assert len(cost_points) == len(free) and all(trace.x[0] == 0 for trace in cost_points)

    unpriced = SUMMARY.assign(cost_per_1000=math.nan).rename(columns={"accuracy": "f1"})
    fig = plot_quality_vs_cost(unpriced, quality="f1")
    assert not [trace for trace in fig.data if trace.xaxis == "x"]
    assert "No price is known" in annotation_text(fig)
    with pytest.raises(ValueError, match="no column 'accuracy'"):
        plot_quality_vs_cost(unpriced)


def test_error_types_stack_counts_per_variant_in_run_order():
    errors = pd.DataFrame({
        "variant": ["b", "b", "a", "b"],
        "error_type": ["wrong_label", "parse_failure", "wrong_label", "wrong_label"],
    })
    fig = plot_error_types(errors, variants=["a", "b", "clean"])
    by_name = {trace.name: trace for trace in fig.data}
    assert list(by_name) == ["parse failure", "wrong label"]
    assert list(by_name["wrong label"].x) == ["a", "b", "clean"]
    assert list(by_name["wrong label"].y) == [1, 2, 0]
    assert list(by_name["parse failure"].y) == [0, 1, 0]
    assert fig.layout.barmode == "stack"
    empty = plot_error_types(errors.iloc[0:0], variants=["a"])
    assert len(empty.data) == 0 and "No errors" in annotation_text(empty)


def test_names_from_data_are_escaped_for_plotly():
    ci = pd.DataFrame({"variant": ["<b>bold</b>"], "metric": "accuracy", "value": [0.5], "low": [0.4], "high": [0.6]})
    (bar,) = plot_variant_comparison(ci).data
    assert list(bar.x) == ["&lt;b&gt;bold&lt;/b&gt;"]
    # Titles and hover text too; quotes become numeric entities, which plotly decodes as well.
    matrix = pd.DataFrame([[1]], index=["it's"], columns=["it's"])
    fig = plot_confusion(matrix, "<i>v</i>")
    assert "Confusion matrix: &lt;i&gt;v&lt;/i&gt;" in fig.layout.title.text
    assert list(fig.data[0].x) == ["it&#39;s"]
    errors = pd.DataFrame({"variant": ["<b>v</b>"], "error_type": ["<x>"]})
    (stack,) = plot_error_types(errors).data
    assert stack.name == "&lt;x&gt;" and "<br>&lt;x&gt;: %{y}" in stack.hovertemplate


def test_dataset_overview_counts_labels_of_multilabel_lists():
    task = task_from_dict({"name": "m", "kind": "multilabel",
                           "labels": [{"name": "a", "definition": "x"}, {"name": "b", "definition": "y"}]})
    data = pd.DataFrame({"example_id": ["1", "2", "3"], "text": ["x", "yy", "zzz"], "labels": [["a", "b"], [], ["b"]]})
    fig = plot_dataset_overview(data, task)
    assert list(fig.data[0].x) == ["a", "b"] and list(fig.data[0].y) == [1, 2]
    assert "Examples per label" in annotation_text(fig)


def test_every_figure_uses_the_shared_template(complaint_task, complaint_test):
    figures = [
        plot_dataset_overview(complaint_test, complaint_task),
        plot_quality_vs_cost(SUMMARY),
        plot_consistency(pd.DataFrame(columns=["variant", "example_id", "repeats", "majority_share"])),
    ]
    for fig in figures:
        assert isinstance(fig, go.Figure)
        assert fig.layout.template.layout.paper_bgcolor == "white"
        assert fig.layout.title.text
        assert fig.layout.template == pio.templates[TEMPLATE]
        assert fig.layout.font.family == FONT["family"] and fig.layout.title.font.size == 17


MANY = [f"intent_{index:03d}" for index in range(150)]
MANY_TASK = task_from_dict({"name": "many", "kind": "classification", "labels": [{"name": name} for name in MANY]})


def many_label_gold() -> pd.DataFrame:
    # Label i has i % 7 + 1 examples, so support differs between labels and the top is known.
    labels = [name for index, name in enumerate(MANY) for _ in range(index % 7 + 1)]
    return pd.DataFrame({"example_id": [f"e{i}" for i in range(len(labels))], "text": ["t"] * len(labels),
                         "label": labels})


def test_per_label_heatmap_of_150_labels_shows_the_30_with_most_support_and_averages_the_rest():
    gold = many_label_gold()
    predicted = [label if index % 3 else MANY[0] for index, label in enumerate(gold["label"])]
    per_label = per_label_scores(labelled_predictions(gold, {"v": predicted}), gold, MANY_TASK)
    (heatmap,) = (fig := plot_per_label_f1(per_label)).data
    top = per_label.sort_values("support", ascending=False, kind="stable")["label"].head(30).tolist()
    assert list(heatmap.x) == [*top, "other 120 labels (mean F1)"]
    rest = per_label[~per_label["label"].isin(top)]
    np.testing.assert_allclose(np.asarray(heatmap.z, dtype=float)[0, :30],
                               per_label.set_index("label").loc[top, "f1"].to_numpy())
    assert math.isclose(float(heatmap.z[0][-1]), rest["f1"].mean())
    assert "the 30 labels with the most support of 150" in fig.layout.title.text
    assert len(per_label) == 150  # the full table is untouched
    assert len(plot_per_label_f1(per_label, max_labels=200).data[0].x) == 150


def test_dataset_overview_of_150_labels_shows_the_30_most_frequent_and_adds_up_the_rest():
    gold = many_label_gold()
    bars = (fig := plot_dataset_overview(gold, MANY_TASK)).data[0]
    counts = gold["label"].value_counts()
    assert len(bars.x) == 31 and bars.x[-1] == "other 120 labels"
    assert list(bars.y[:30]) == sorted(counts, reverse=True)[:30]
    assert sum(bars.y) == len(gold)
    assert "the 30 most frequent of 150" in annotation_text(fig)


def test_confusion_of_150_labels_keeps_the_labels_most_involved_in_mistakes_and_row_totals():
    gold = many_label_gold()
    predicted = list(gold["label"])
    for index in range(0, 40, 2):  # a few mistakes, all answering intent_149
        predicted[index] = MANY[149]
    predicted[1] = None
    matrix = confusion(labelled_predictions(gold, {"v": predicted}), gold, MANY_TASK, "v")
    fig = plot_confusion(matrix, "v")
    (heatmap,) = fig.data
    assert len(heatmap.y) == 30 and MANY[149] in heatmap.y
    assert list(heatmap.x) == [*heatmap.y, "other 120 labels", html.escape(UNPARSED)]
    z = np.asarray(heatmap.z, dtype=float)
    np.testing.assert_array_equal(z.sum(axis=1), matrix.loc[list(heatmap.y)].sum(axis=1).to_numpy(float))
    assert "most involved in mistakes, of 150" in fig.layout.title.text
