"""A real headless Chromium opens the report offline: plotly draws every chart and no planted script runs.

The screenshot is kept under ``test-artifacts/`` (git-ignored) for a person to look at.
"""

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from workbench.core.data import load_dataset
from workbench.prompting.runner import run_variants
from workbench.reporting.sections import write_report
from workbench.testing.fake_model import FakeModel

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PROBE = "<script>document.title='PWNED'</script>"
TITLE = "Browser check"

requires_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's headless Chromium at /usr/bin/chromium: install it with `apt-get install -y chromium` "
           "(`make test` does this for CI)",
)


def chromium(user_data_dir: Path, *arguments: str) -> subprocess.CompletedProcess:
    """Run headless Chromium with no network, sync or first-run work, in a fresh profile."""
    command = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--no-first-run", "--disable-component-update", "--disable-sync", f"--user-data-dir={user_data_dir}",
        *arguments,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture(scope="module")
def report(tmp_path_factory, complaint_task, complaint_test):
    """A classification report whose dataset text and model answer both carry a script probe."""
    probe = pd.DataFrame([{"example_id": "probe", "text": f"{PROBE} Someone used my card abroad.", "label": "fraud"}])
    dataset = load_dataset(pd.concat([probe, complaint_test.head(24)], ignore_index=True), complaint_task)
    gold = dict(zip(dataset["text"], dataset["label"]))

    def answer(request) -> str:
        text = request.messages[-1]["content"].rsplit("Text: ", 1)[1].strip()
        if "PWNED" in text:
            return PROBE + json.dumps({"label": "request"})
        right = (len(text) + len(request.messages[0]["content"])) % 3 != 0
        return json.dumps({"label": gold[text] if right else "complaint"})

    predictions = run_variants(complaint_task, dataset, ["zero_shot", "definitions", "cot"], FakeModel(answer),
                               progress=False)
    return write_report(tmp_path_factory.mktemp("browser") / "report.html", complaint_task, dataset, predictions,
                        title=TITLE)


@requires_chromium
def test_chromium_renders_the_report_offline_and_takes_a_screenshot(report, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "report_classification.png"
    screenshot.unlink(missing_ok=True)
    result = chromium(tmp_path / "profile-shot", f"--screenshot={screenshot}", "--window-size=1400,4000",
                      report.resolve().as_uri())
    assert screenshot.exists(), f"no screenshot; chromium said:\n{result.stderr[-3000:]}"
    assert screenshot.stat().st_size > 50_000, "the screenshot is suspiciously small: was the page blank?"


@requires_chromium
def test_plotly_ran_and_the_probe_did_not(report, tmp_path):
    result = chromium(tmp_path / "profile-dom", "--dump-dom", report.resolve().as_uri())
    dom = result.stdout
    assert "</html>" in dom, f"no DOM dumped; chromium said:\n{result.stderr[-3000:]}"
    # plotly.js, embedded in the file, drew every chart (each draws at least one svg.main-svg).
    charts = dom.count('class="plotly-graph-div')
    assert charts == 7
    assert dom.count('class="main-svg"') >= charts
    # The planted script stayed text: the title is the report's, and the probe shows escaped.
    assert f"<title>{TITLE}</title>" in dom
    assert "PWNED</title>" not in dom
    assert "&lt;script&gt;document.title='PWNED'&lt;/script&gt; Someone used my card abroad." in dom
