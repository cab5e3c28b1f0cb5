"""A real headless Chromium opens the comparison page offline: plotly draws both charts, and ticking
"differences only" hides the answer matrix's rows where every arm agrees.

Chromium is driven over its DevTools protocol with `websocket-client`, as in
``test_argilla_ui.py``; the screenshot is kept under ``test-artifacts/`` (git-ignored).
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from workbench.experiments.runs import Run
from workbench.prompting.runner import run_variants
from workbench.reporting.compare_report import answer_matrix, write_comparison
from workbench.testing.fake_model import FakeModel

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _why_not() -> str | None:
    if not CHROMIUM.exists():
        return ("needs Debian's headless Chromium at /usr/bin/chromium: install it with `apt-get install -y chromium` "
                "(`make test` does this for CI)")
    try:
        import websocket  # noqa: F401  (websocket-client)
    except ImportError:
        return "needs websocket-client (pip install 'workbench[test]') to drive Chromium"
    return None


WHY_NOT = _why_not()
pytestmark = [pytest.mark.integration, pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")]


class Page:
    """One tab of a headless Chromium with no network, driven over the DevTools protocol."""

    def __init__(self, profile: Path):
        import websocket

        self.process = subprocess.Popen(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--no-first-run", "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
             "--remote-debugging-port=0", "--remote-allow-origins=*", "--window-size=1400,1000", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        port_file = profile / "DevToolsActivePort"  # Chromium writes the port it chose here
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"Chromium did not start (exit code {self.process.poll()})")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=10) as response:
            target = next(t for t in json.load(response) if t["type"] == "page")
        self.socket = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        self.calls = 0

    def command(self, method: str, **params) -> dict:
        self.calls += 1
        self.socket.send(json.dumps({"id": self.calls, "method": method, "params": params}))
        while True:  # events arrive in between; skip them
            message = json.loads(self.socket.recv())
            if message.get("id") == self.calls:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def js(self, expression: str):
        return self.command("Runtime.evaluate", expression=expression, returnByValue=True).get("result", {}).get("value")

    def wait_for(self, expression: str, timeout_s: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.js(expression):
                return True
            time.sleep(0.2)
        return False

    def close(self) -> None:
        self.socket.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


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
