"""Charts of fine-tuning (loss per step, learning curve) and of annotators' answers: plotly Figures
built from the frames the library writes, saying so when there is nothing to draw."""

import json

import pandas as pd

from workbench.reporting.annotation_plots import plot_corrections
from workbench.reporting.training_plots import (
    LOSS_COLUMNS,
    load_training_losses,
    plot_learning_curve,
    plot_training_loss,
)


def test_losses_come_from_training_json_files_and_folders(tmp_path):
    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "training.json").write_text(json.dumps({"losses": [2.0, 1.5, 1.0]}))
    (tmp_path / "r2.json").write_text(json.dumps({"losses": [0.9, 0.8]}))
    losses = load_training_losses({"round 1": tmp_path / "r1", "round 2": tmp_path / "r2.json",
                                   "round 3": tmp_path / "missing"})
    assert list(losses.columns) == LOSS_COLUMNS
    assert losses.values.tolist() == [["round 1", 1, 2.0], ["round 1", 2, 1.5], ["round 1", 3, 1.0],
                                      ["round 2", 1, 0.9], ["round 2", 2, 0.8]]
    assert load_training_losses({}).empty


def test_loss_chart_has_a_line_per_run_and_a_moving_average_when_long():
    short = pd.DataFrame({"run": "round 1", "step": [1, 2, 3], "loss": [2.0, 1.5, 1.0]})
    figure = plot_training_loss(short)
    assert [trace.name for trace in figure.data] == ["round 1"] and list(figure.data[0].y) == [2.0, 1.5, 1.0]
    long = pd.DataFrame({"run": ["<b>r</b>"] * 12, "step": range(1, 13), "loss": [1.0] * 12})
    names = [trace.name for trace in plot_training_loss(long, window=5).data]
    assert names == ["&lt;b&gt;r&lt;/b&gt;", "&lt;b&gt;r&lt;/b&gt; (mean of 5 steps)"]  # data is escaped
    empty = plot_training_loss(pd.DataFrame(columns=LOSS_COLUMNS))
    assert not empty.data and "No training steps" in empty.layout.annotations[0].text


def test_learning_curve_draws_the_score_and_its_interval_by_size():
    curve = pd.DataFrame({"point_id": "P1", "examples": [4, 0, 2], "cases": 3, "metric": "accuracy",
                          "value": [1.0, 0.0, 0.5], "low": [0.4, 0.0, 0.1], "high": [1.0, 0.6, 0.9], "small": True})
    figure = plot_learning_curve(curve)
    band, line = figure.data
    assert list(line.x) == [0, 2, 4] and list(line.y) == [0.0, 0.5, 1.0]
    assert list(band.y) == [0.6, 0.9, 1.0, 0.4, 0.1, 0.0]
    assert "P1" in figure.layout.title.text and "3 test cases" in figure.layout.title.text
    assert "No learning curve" in plot_learning_curve(curve.iloc[:0]).layout.annotations[0].text


def test_corrections_chart_splits_accepted_from_corrected_per_suggested_label():
    corrections = pd.DataFrame({
        "status": ["submitted", "submitted", "submitted", "draft"],
        "suggested": ["complaint", "complaint", "request", "request"],
        "suggestion_agent": "few_shot", "accepted_suggestion": [True, False, True, False]})
    figure = plot_corrections(corrections)
    accepted, corrected = figure.data
    assert list(accepted.x) == ["complaint", "request"] and list(accepted.y) == [1, 1] and list(corrected.y) == [1, 0]
    assert "67% of 3 answers" in figure.layout.title.text
    spans = corrections.assign(suggested=[[], [{"start": 0, "end": 1, "label": "DRUG"}], [], []])
    assert list(plot_corrections(spans).data[0].x) == ["few_shot"]  # not one label: per variant
    assert "No submitted answers" in plot_corrections(corrections.iloc[3:]).layout.annotations[0].text
    assert "No submitted answers" in plot_corrections(corrections.iloc[:0]).layout.annotations[0].text
