"""A new user's first hour, on the command line as they would type it: their own CSV (written here,
not the project's data/), `workbench init`, `workbench run` on the embedded model and again on a
second model config (llama.cpp's OpenAI-compatible server), `workbench runs`, and `workbench
compare` of the two runs. Real models, real subprocesses; Chromium shows the reports' first screen.

The screenshots are kept under ``test-artifacts/`` (git-ignored) for a person to look at.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from test_report_browser import ARTIFACTS, chromium, requires_chromium

pytestmark = pytest.mark.integration

# A small helpdesk: three labels, phrased as customers write. Numbers as labels on purpose: a
# spreadsheet's label column is often a code.
TICKETS = [
    ("My card was charged twice for the same order, please refund one of them.", 1),
    ("I was billed for a subscription I cancelled last month.", 1),
    ("Why is there a fee on my statement that nobody told me about?", 1),
    ("The invoice shows the wrong amount, I paid 40 not 60.", 1),
    ("You took money from my account without asking me.", 1),
    ("Refund still not here after three weeks.", 1),
    ("The app crashes every time I open the settings page.", 2),
    ("I cannot log in, it says my password is wrong but I just reset it.", 2),
    ("The website will not load on my phone.", 2),
    ("Notifications stopped working after the last update.", 2),
    ("Uploading a photo gives me an error 500.", 2),
    ("The export button does nothing when I click it.", 2),
    ("How do I change the email address on my account?", 3),
    ("Can I add a second user to my plan?", 3),
    ("Where can I find my order history?", 3),
    ("Do you ship to Canada?", 3),
    ("What are your opening hours on weekends?", 3),
    ("Is there a student discount?", 3),
]


def workbench(*arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    ran = subprocess.run([sys.executable, "-m", "workbench.cli", *arguments], capture_output=True, text=True,
                         cwd=cwd, env={**os.environ}, timeout=900)
    assert ran.returncode == 0, f"workbench {' '.join(arguments)}:\n{ran.stdout}\n{ran.stderr}"
    return ran


@pytest.fixture(scope="module")
def project(tmp_path_factory, llama_server):
    """The user's folder after init and two runs: one on the embedded model, one on the server."""
    home = tmp_path_factory.mktemp("new_user")
    pd.DataFrame([{"ticket": text, "team": team} for text, team in TICKETS]).to_csv(home / "tickets.csv",
                                                                                      index=False)
    init = workbench("init", "tickets.csv", "--text", "ticket", "--label", "team", "--test-size", "6", cwd=home)
    served = home / "served.yaml"
    served.write_text(yaml.safe_dump({"kind": "openai_compatible", "model": "smollm2", "base_url": llama_server,
                                      "api_key_env": None, "structured_output": "json_object_schema"}))
    first = workbench("run", "tickets/experiment.yaml", "--no-progress", "--variants", "zero_shot", cwd=home)
    second = workbench("run", "tickets/experiment.yaml", "--no-progress", "--variants", "zero_shot",
                       "--model", "served.yaml", cwd=home)
    return {"home": home, "init": init.stdout, "runs": [first.stdout, second.stdout]}


def test_init_then_run_gives_a_report_naming_its_run_and_model(project):
    home = project["home"]
    assert "18 rows, classification task 'tickets' with 3 labels" in project["init"]
    assert "workbench run tickets/experiment.yaml" in project["init"]
    report = home / "runs" / "tickets" / "latest" / "report.html"
    first_run = next(line for line in project["runs"][0].splitlines() if line.startswith("wrote run "))
    run_id = first_run.split()[2]
    html = (home / "runs" / "tickets" / run_id / "report.html").read_text()
    assert f"run {run_id}" in html and "config tickets/experiment.yaml" in html
    assert "tickets: prompt variants" in html and html.count('class="plotly-graph-div"') >= 3
    # The labels are the column's codes, as text; the report shows them.
    assert all(f">{code}<" in html or f'"{code}"' in html for code in ("1", "2", "3"))
    assert report.exists()


def test_two_model_configs_compare_in_one_report(project):
    home = project["home"]
    listed = workbench("runs", "runs/tickets", cwd=home).stdout
    run_ids = [line.split()[2] for output in project["runs"] for line in output.splitlines()
               if line.startswith("wrote run ")]
    assert len(run_ids) == 2 and all(run_id in listed for run_id in run_ids)
    assert f"{run_ids[1]} (latest)" in listed and "smollm2" in listed
    compared = workbench("compare", *(f"runs/tickets/{run_id}" for run_id in run_ids), "--out", "compare.html",
                         cwd=home).stdout
    assert "report: " in compared
    html = (home / "compare.html").read_text()
    assert all(run_id in html for run_id in run_ids)
    assert html.count('class="plotly-graph-div"') >= 1 and "differences only" in html.lower()
    provenance = [json.loads((home / "runs" / "tickets" / run_id / "provenance.json").read_text())
                  for run_id in run_ids]
    assert provenance[0]["model"]["kind"] != provenance[1]["model"]["kind"]


@requires_chromium
@pytest.mark.parametrize("page", ["runs/tickets/latest/report.html", "compare.html"])
def test_chromium_shows_the_first_screen(project, page, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / f"new_user_{Path(page).stem}.png"
    screenshot.unlink(missing_ok=True)
    result = chromium(tmp_path / "profile", f"--screenshot={screenshot}", "--window-size=1400,900",
                      "--virtual-time-budget=15000", (project["home"] / page).resolve().as_uri())
    assert screenshot.exists(), f"no screenshot; chromium said:\n{result.stderr[-3000:]}"
    assert screenshot.stat().st_size > 30_000, "the screenshot is suspiciously small: was the page blank?"
