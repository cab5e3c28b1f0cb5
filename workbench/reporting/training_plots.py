"""Charts of fine-tuning: the training loss step by step, and a training point's learning curve.
Each function returns a plotly ``go.Figure`` and never shows it (the look of `plots`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from workbench.reporting.plots import VARIANT_COLOURS, _empty_figure, _escape, _style

LOSS_COLUMNS = ["run", "step", "loss"]


def load_training_losses(records: Mapping[str, str | Path]) -> pd.DataFrame:
    """The loss of every training step, from ``training.json`` files (`workbench.finetune.lora`
    writes one beside each adapter: ``losses``, one per step). `records` maps a label (e.g.
    "round 1") to the file or the folder holding it; labels whose file does not exist are left
    out. Columns `LOSS_COLUMNS`: ``run`` (the label), ``step`` (1, 2, ...), ``loss`` (lower is better)."""
    frames = []
    for label, path in records.items():
        path = Path(path)
        path = path / "training.json" if path.is_dir() else path
        if not path.exists():
            continue
        losses = json.loads(path.read_text(encoding="utf-8")).get("losses") or []
        frames.append(pd.DataFrame({"run": label, "step": np.arange(1, len(losses) + 1), "loss": losses}))
    if not frames:
        return pd.DataFrame(columns=LOSS_COLUMNS)
    return pd.concat(frames, ignore_index=True)[LOSS_COLUMNS]


def plot_training_loss(losses: pd.DataFrame, *, window: int = 5) -> go.Figure:
    """The training loss per step, one line per ``run`` (columns `LOSS_COLUMNS`; lower is better).
    With more than `window` steps a run's raw loss is drawn faint and its moving average over
    `window` steps on top, since one batch's loss is noisy."""
    title = "Training loss per step"
    if losses.empty:
        return _empty_figure(title, "No training steps recorded.")
    fig = go.Figure()
    for index, (run, group) in enumerate(losses.groupby("run", sort=False)):
        colour = VARIANT_COLOURS[index % len(VARIANT_COLOURS)]
        name = _escape(run)
        smooth = len(group) > window
        fig.add_trace(go.Scatter(
            x=group["step"], y=group["loss"], mode="lines+markers" if len(group) <= 30 else "lines", name=name,
            legendgroup=name, line={"color": colour, "width": 1 if smooth else 2}, opacity=0.35 if smooth else 1,
            hovertemplate=f"{name}<br>step %{{x}}<br>loss %{{y:.4f}}<extra></extra>",
        ))
        if smooth:
            fig.add_trace(go.Scatter(
                x=group["step"], y=group["loss"].rolling(window, min_periods=1).mean(), mode="lines",
                name=f"{name} (mean of {window} steps)", legendgroup=name, line={"color": colour, "width": 2.5},
                hovertemplate=f"{name}<br>step %{{x}}<br>mean loss %{{y:.4f}}<extra></extra>",
            ))
    fig.update_xaxes(title_text="training step")
    fig.update_yaxes(title_text="loss (lower is better)", rangemode="tozero")
    return _style(fig, title)


def plot_learning_curve(curve: pd.DataFrame) -> go.Figure:
    """A point's score on its test cases against the number of its training examples, with the
    interval as a band (higher is better). Reads `workbench.finetune.learning_curve.learning_curve`'s
    frame: ``point_id``, ``examples``, ``cases``, ``metric``, ``value``, ``low``, ``high``."""
    title = "Learning curve"
    if curve.empty:
        return _empty_figure(title, "No learning curve: no size was trained.")
    curve = curve.sort_values("examples")
    point = _escape(curve["point_id"].iloc[0])
    metric = _escape(curve["metric"].iloc[0])
    cases = int(curve["cases"].max())
    x = curve["examples"].to_numpy()
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=np.concatenate([x, x[::-1]]), y=np.concatenate([curve["high"].to_numpy(float),
                                                          curve["low"].to_numpy(float)[::-1]]),
        fill="toself", fillcolor="rgba(0,114,178,0.15)", line={"width": 0}, hoverinfo="skip",
        name="95% interval",
    ))
    fig.add_trace(go.Scatter(
        x=x, y=curve["value"], mode="lines+markers", name=metric, line={"color": VARIANT_COLOURS[0], "width": 2.5},
        customdata=np.column_stack([curve["low"], curve["high"], curve["cases"]]),
        hovertemplate="%{x} training examples<br>" + metric + " %{y:.3f} (%{customdata[0]:.3f} to "
                      "%{customdata[1]:.3f}) on %{customdata[2]} test cases<extra></extra>",
    ))
    fig.update_xaxes(title_text=f"training examples of {point} (the other points' rows always included)",
                     tickmode="array", tickvals=list(x))
    fig.update_yaxes(title_text=f"{metric} (higher is better)", range=[0, 1.05])
    return _style(fig, f"How much data {point} needs: {metric} on its {cases} test cases")
