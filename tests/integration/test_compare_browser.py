"""A real headless Chromium opens the comparison page offline: plotly draws both charts, and ticking
"differences only" hides the answer matrix's rows where every arm agrees.

Chromium is driven over its DevTools protocol with `websocket-client`, as in
``test_argilla_ui.py``; the screenshot is kept under ``test-artifacts/`` (git-ignored).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from workbench.experiments.runs import Run
from workbench.prompting.runner import run_variants
from workbench.reporting.compare_report import answer_matrix, write_comparison
from workbench.testing.chromium import Page, chromium_missing
from workbench.testing.fake_model import FakeModel

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


WHY_NOT = chromium_missing()
pytestmark = [pytest.mark.integration, pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")]


VISIBLE_ROWS = "[...document.querySelectorAll('#answer-matrix tbody tr')].filter(r => r.offsetParent !== null).length"


def test_ticking_differences_only_hides_the_rows_where_every_arm_agrees(tmp_path, complaint_task, complaint_test):
    dataset = complaint_test.head(24)
    gold = dict(zip(dataset["text"], dataset["label"]))

    def model(name: str, wrong_every: int) -> FakeModel:
        def answer(request) -> str:
            text = request.messages[-1]["content"].rsplit("Text: ", 1)[1].strip()
            return json.dumps({"label": "request" if len(text) % wrong_every == 0 else gold[text]})
        return FakeModel(answer, name=name)

    runs = [Run(name="triage", task=complaint_task, dataset=dataset, stats={}, config={},
                predictions=run_variants(complaint_task, dataset, ["zero_shot"], model(name, every), progress=False),
                provenance={"run_id": f"triage-{name}", "model": {"kind": "fake", "model": name}})
            for name, every in (("first", 3), ("second", 4))]
    matrix = answer_matrix(runs)
    differing = int(matrix["differs"].sum())
    assert 0 < differing < len(matrix)
    page_file = write_comparison(tmp_path / "compare.html", runs)

    page = Page(tmp_path / "profile")
    try:
        page.command("Page.navigate", url=page_file.resolve().as_uri())
        assert page.wait_for("document.querySelectorAll('.plotly-graph-div .main-svg').length >= 2"), \
            "plotly did not draw the charts"
        assert page.js(VISIBLE_ROWS) == len(matrix)
        page.js("document.getElementById('differences-only').click()")
        assert page.js(VISIBLE_ROWS) == differing
        assert page.js("document.getElementById('matrix-count').textContent") == f"{differing} rows shown"
        ARTIFACTS.mkdir(exist_ok=True)
        shot = page.command("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        (ARTIFACTS / "compare_differences_only.png").write_bytes(base64.b64decode(shot))
        page.js("document.getElementById('differences-only').click()")
        assert page.js(VISIBLE_ROWS) == len(matrix)
    finally:
        page.close()
