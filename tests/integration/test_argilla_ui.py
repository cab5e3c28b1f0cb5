"""A real headless Chromium logs in to the embedded Argilla's web UI as the annotator.

It opens each pushed dataset from the home page and finds the record's text and the model's
suggestion on the page: for classification the suggested label pre-selected with its agent (the
prompt variant) in the tooltip, for NER the suggested entities marked in the text; then it
submits the classification answer with the UI's own button, and `pull_corrections` reads it
back as the suggestion accepted unchanged. Screenshots are kept under ``test-artifacts/``
(git-ignored). Chromium is driven over its DevTools protocol with `websocket-client`.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest

from workbench.annotation import connect, pull_corrections, push_predictions
from workbench.testing.chromium import Page, chromium_missing
from workbench_argilla_embedded import ArgillaServerError
from workbench_argilla_embedded.manage import venv_python

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _why_not() -> str | None:
    missing = chromium_missing()
    if missing:
        return missing
    try:
        venv_python()
    except ArgillaServerError as error:
        return str(error)
    return None


WHY_NOT = _why_not()
pytestmark = [pytest.mark.integration, pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")]

CLASSIFICATION_TEXT = "Somebody took 250 pounds from my card in Lisbon and I was never there."
NER_TEXT = "Started Lisinopril 10 mg last week and now I have a dry cough."


@pytest.fixture(scope="module")
def client(argilla):
    return connect(argilla["info"].api_url, argilla["keys"]["owner"])


@pytest.fixture(scope="module")
def page(argilla, tmp_path_factory):
    """Chromium signed in to the UI as the annotator, with the password from the credentials file."""
    annotator = next(user for user in argilla["credentials"]["users"] if user["username"] == "annotator")
    profile = tmp_path_factory.mktemp("chromium")
    browser = Page(profile)
    try:
        browser.command("Page.navigate", url=f"{argilla['info'].api_url}/sign-in")
        assert browser.wait_for("!!document.querySelector('input[type=password]')"), browser.text()[:500]
        # The sign-in form is Vue: set each value and fire the input event it listens to. Values set
        # before the page has hydrated are lost, so set them until the submit button is enabled.
        fill = f"""(() => {{
            const set = (el, value) => {{ el.value = value; el.dispatchEvent(new Event('input', {{bubbles: true}})); }};
            set(document.querySelector('input[type=text]'), {json.dumps(annotator['username'])});
            set(document.querySelector('input[type=password]'), {json.dumps(annotator['password'])});
            return true;
        }})()"""
        for _ in range(20):
            browser.js(fill)
            if browser.wait_for("!document.querySelector('button[type=submit]').disabled", timeout_s=1.5):
                break
        browser.js("document.querySelector('button[type=submit]').click()")
        assert browser.wait_for("!document.location.pathname.startsWith('/sign-in')"), browser.text()[:500]
        yield browser
    finally:
        browser.close()
        shutil.rmtree(profile, ignore_errors=True)


def open_dataset(page: Page, api_url: str, name: str, text: str) -> None:
    """From the home page, click the dataset's card and wait for the record's text."""
    page.command("Page.navigate", url=f"{api_url}/")
    assert page.wait_for(f"document.body.innerText.includes({json.dumps(name)})"), page.text()[:1000]
    click = f"""(() => {{
        const card = [...document.querySelectorAll('a[href*="/dataset/"]')]
            .find(a => a.innerText.split('\\n').map(line => line.trim()).includes({json.dumps(name)}));
        card.click();
        return true;
    }})()"""
    for _ in range(20):  # a click before the page has hydrated does nothing: click again
        page.js(click)
        if page.wait_for("document.location.pathname.includes('/dataset/')", timeout_s=1.5):
            break
    assert "/dataset/" in page.js("document.location.pathname"), page.text()[:1000]
    assert page.wait_for(f"document.body.innerText.includes({json.dumps(text)})"), page.text()[:2000]


def test_annotator_sees_the_suggestion_and_submits_it(argilla, client, page, complaint_task):
    data = pd.DataFrame([{"example_id": "ui-cls-1", "text": CLASSIFICATION_TEXT, "label": "fraud"}])
    predictions = pd.DataFrame([
        {"variant": "few_shot", "example_id": "ui-cls-1", "repeat": 0, "prediction": "hardship"},
        {"variant": "few_shot", "example_id": "ui-cls-1", "repeat": 1, "prediction": "hardship"},
        {"variant": "zero_shot", "example_id": "ui-cls-1", "repeat": 0, "prediction": "fraud"},
        {"variant": "zero_shot", "example_id": "ui-cls-1", "repeat": 1, "prediction": "complaint"},
    ])
    name = "ui-classification"
    push_predictions(client, complaint_task, predictions, data, variant="few_shot", name=name, progress=False)
    open_dataset(page, argilla["info"].api_url, name, CLASSIFICATION_TEXT)
    assert page.wait_for("!!document.querySelector('input[type=checkbox][name=hardship]:checked')"), page.text()

    checked = page.js("[...document.querySelectorAll('input[type=checkbox]:checked')].map(i => i.name)")
    assert checked == ["hardship"]  # the suggestion is pre-selected, nothing else
    chip = page.js("document.querySelector('[aria-label=hardship]').innerText")
    assert "Suggestion" in chip and "few_shot" in chip and "1.0" in chip  # agent and score
    cells = page.js("[...document.querySelectorAll('table td')].map(td => td.innerText.trim())")
    assert cells == ["few_shot (suggested)", "hardship", "2/2", "zero_shot", "fraud", "1/2"]
    shot = page.screenshot(ARTIFACTS / "argilla_annotator_classification.png")
    assert shot.stat().st_size > 10_000

    page.js("[...document.querySelectorAll('button')].find(b => b.innerText.includes('Submit')).click()")
    deadline = time.monotonic() + 30
    corrections = pull_corrections(client, complaint_task, name, out_dir=None)
    while corrections.empty and time.monotonic() < deadline:
        time.sleep(0.3)
        corrections = pull_corrections(client, complaint_task, name, out_dir=None)
    row = corrections.iloc[0].to_dict()
    assert (row["example_id"], row["annotator"], row["label"], row["suggestion_agent"], row["accepted_suggestion"]) == (
        "ui-cls-1", "annotator", "hardship", "few_shot", True)


def test_annotator_sees_suggested_entities(argilla, client, page, ae_task):
    spans = [{"start": 8, "end": 18, "label": "DRUG"}, {"start": 52, "end": 61, "label": "ADVERSE_EVENT"}]
    data = pd.DataFrame([{"example_id": "ui-ner-1", "text": NER_TEXT, "spans": spans}])
    predictions = pd.DataFrame([{"variant": "few_shot", "example_id": "ui-ner-1", "repeat": 0, "prediction": spans}])
    name = "ui-ner"
    push_predictions(client, ae_task, predictions, data, variant="few_shot", name=name, progress=False)
    open_dataset(page, argilla["info"].api_url, name, NER_TEXT)
    assert page.wait_for("document.querySelectorAll('.span-entity__text').length >= 2"), page.text()
    entities = page.js("[...document.querySelectorAll('.span-entity__text')].map(e => e.innerText.trim())")
    assert entities == ["DRUG", "ADVERSE_EVENT"]
    cells = page.js("[...document.querySelectorAll('table td')].map(td => td.innerText.trim())")
    assert cells == ["few_shot (suggested)", "“Lisinopril” DRUG; “dry cough” ADVERSE_EVENT"]
    page.screenshot(ARTIFACTS / "argilla_annotator_ner.png")


def test_annotator_reviews_a_training_point_in_the_ui(argilla, client, page):
    """The point review as an annotator meets it: the error, the proposed point pre-selected with
    the other points as options, and a rename typed into the text question and submitted."""
    from unit.test_points import TASK, fitted

    from workbench.points.review import POINT_QUESTION, RENAME_QUESTION, pull_point_review, push_point_review

    clusterer, _, _ = fitted()
    points, assignments = clusterer.points_, clusterer.assignments_
    name = "ui-points"
    push_point_review(client, TASK, points, assignments, name)
    first = points.iloc[0]
    text = assignments.set_index("example_id").loc[first["representatives"][0], "text"]
    text = text.iloc[0] if not isinstance(text, str) else text
    open_dataset(page, argilla["info"].api_url, name, text)
    # The UI names each checkbox after the option's text and ids it <question>_<value>.
    found = page.wait_for(f"!!document.querySelector('input[type=checkbox][id={POINT_QUESTION}_{first['point_id']}]:checked')")
    assert found, (page.js("[...document.querySelectorAll('input')].map(i => [i.type, i.name, i.id, i.checked])"),
                   page.text()[:1500])
    shown = page.text()
    assert first["name"] in shown and "none: it fits none of these points" in shown and "What went wrong" in shown
    page.screenshot(ARTIFACTS / "argilla_annotator_point_review.png")

    # The text questions are contenteditable paragraphs, in question order: the rename comes first.
    # Focus it and type, as a person does (CDP inserts the text as keyboard input).
    assert page.js("(() => { const box = document.querySelector('[contenteditable=true]'); box.focus(); "
                   "return document.activeElement === box; })()")
    page.command("Input.insertText", text="fee charged, read as a request")
    page.js("[...document.querySelectorAll('button')].find(b => b.innerText.includes('Submit')).click()")
    deadline = time.monotonic() + 30
    reviews = pull_point_review(client, TASK, points, name, out_dir=None)
    while reviews.empty and time.monotonic() < deadline:
        time.sleep(0.3)
        reviews = pull_point_review(client, TASK, points, name, out_dir=None)
    row = reviews.iloc[0].to_dict()
    assert (row["annotator"], row[POINT_QUESTION], row[RENAME_QUESTION]) == (
        "annotator", first["point_id"], "fee charged, read as a request")
