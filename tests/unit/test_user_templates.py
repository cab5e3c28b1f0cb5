"""A user's own prompt: a config's templates: folder, a variant naming a template, checks at load."""

import hashlib

import pandas as pd
import pytest
import yaml

from workbench.cli.main import main
from workbench.core.task import task_from_dict
from workbench.experiments.config import load_experiment
from workbench.experiments.runs import run_experiment
from workbench.prompting.runner import build_requests
from workbench.prompting.templates import (
    TEMPLATE_DIR,
    TEMPLATE_VARIABLES,
    PromptTemplateError,
    PromptTemplateNotFound,
    check_template,
    render_messages,
    template_context,
)
from workbench.prompting.variants import PromptVariant, parse_variant
from workbench.testing.fake_model import FakeModel

TASK = {"name": "support", "kind": "classification", "instructions": "Billing beats bug.",
        "labels": [{"name": "bug", "definition": "Something broken."}, {"name": "billing", "definition": "Money."}]}

SUPPORT_V2 = """\
{#- The team's own ticket prompt. -#}
{% block system %}
You sort support tickets for {{ task.name }}. {{ task.instructions }}
Answer with JSON: {"label": "<one of: {{ label_list }}>"}
{% endblock %}
{% block user %}
{% for example in examples %}
{{ example.text }} => {{ example.answer }}
{% endfor %}
Ticket: {{ text }}
{% endblock %}
"""


@pytest.fixture
def project(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "task.yaml").write_text(yaml.safe_dump(TASK))
    rows = pd.DataFrame({"example_id": ["t1", "t2", "t3"], "text": ["App crashes.", "Charged twice.", "Login fails."],
                         "label": ["bug", "billing", "bug"]})
    rows.to_json(tmp_path / "data" / "test.jsonl", orient="records", lines=True)
    rows.assign(example_id=["p1", "p2", "p3"]).to_json(tmp_path / "data" / "train.jsonl", orient="records", lines=True)
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "support_v2.classification.v1.jinja").write_text(SUPPORT_V2)
    return tmp_path


def write(project, variants, **overrides):
    config = {"name": "mine", "task": "data/task.yaml", "dataset": "data/test.jsonl", "examples": "data/train.jsonl",
              "templates": "prompts", "variants": variants, "runs_dir": str(project / "runs"), **overrides}
    path = project / "exp.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_a_user_template_and_the_packaged_default_in_one_experiment(project):
    experiment = load_experiment(write(project, ["zero_shot", "template=support_v2",
                                                 {"name": "my_prompt", "template": "support_v2", "few_shot": 2}]))
    assert experiment.template_dir == (project / "prompts").resolve()
    requests = build_requests(experiment.task, experiment.dataset.head(1), experiment.variants,
                              examples=experiment.examples, template_dir=experiment.template_dir)
    messages = dict(zip(requests["variant"], requests["messages"]))
    assert messages["template=support_v2"] == [
        {"role": "system", "content": (
            "You sort support tickets for support. Billing beats bug.\n"
            'Answer with JSON: {"label": "<one of: bug, billing>"}')},
        {"role": "user", "content": "Ticket: App crashes."},
    ]
    assert messages["zero_shot"][0]["content"].startswith("You are a careful annotator for support.")
    shots = messages["my_prompt"][1]["content"].splitlines()
    assert len(shots) == 3 and all(' => {"label": ' in line for line in shots[:2]) and shots[2] == "Ticket: App crashes."


def test_provenance_names_the_file_its_folder_and_sha256(project):
    experiment = load_experiment(write(project, ["zero_shot", {"name": "my_prompt", "template": "support_v2"}]))
    model = FakeModel(lambda request: '{"label": "bug"}' if "support tickets" in request.messages[0]["content"]
                      else '{"label": "billing"}')
    run = run_experiment(experiment, model=model, progress=False)
    answers = run.predictions.groupby("variant")["prediction"].agg(set).to_dict()
    assert answers == {"my_prompt": {"bug"}, "zero_shot": {"billing"}}  # each variant rendered from its own file
    user_file = project / "prompts" / "support_v2.classification.v1.jinja"
    assert run.provenance["templates"]["my_prompt"] == {
        "file": user_file.name, "sha256": hashlib.sha256(user_file.read_bytes()).hexdigest(),
        "folder": str(user_file.parent.resolve())}
    packaged = TEMPLATE_DIR / "default.classification.v1.jinja"
    assert run.provenance["templates"]["zero_shot"] == {
        "file": packaged.name, "sha256": hashlib.sha256(packaged.read_bytes()).hexdigest(),
        "folder": str(TEMPLATE_DIR.resolve())}
    # The run folder keeps the config's template folder, so the later stages (workbench data
    # --train-variant my_prompt) render with the same file.
    from workbench.experiments.runs import load_run, write_run

    loaded = load_run(write_run(run, project / "run").path)
    assert loaded.template_dir == (project / "prompts").resolve()
    messages = render_messages(loaded.task, parse_variant({"name": "my_prompt", "template": "support_v2"}), "t",
                               template_dir=loaded.template_dir)
    assert "support tickets" in messages[0]["content"]


def test_preview_shows_the_users_prompt(project, capsys):
    config = write(project, ["zero_shot", {"name": "my_prompt", "template": "support_v2"}])
    assert main(["preview", str(config), "--variant", "my_prompt", "--example", "t2"]) == 0
    out = capsys.readouterr().out
    assert "===== my_prompt / t2 =====" in out
    assert "--- system ---\nYou sort support tickets for support. Billing beats bug." in out
    assert "--- user ---\nTicket: Charged twice." in out and "careful annotator" not in out


def test_a_users_folder_hides_a_packaged_family_of_the_same_name_and_falls_back_for_others(project):
    (project / "prompts" / "default.classification.v7.jinja").write_text(
        "{% block system %}house default{% endblock %}{% block user %}{{ text }}{% endblock %}")
    experiment = load_experiment(write(project, ["zero_shot", {"name": "pinned", "template": "default.v1"}, "tuned"]))
    requests = build_requests(experiment.task, experiment.dataset.head(1), experiment.variants,
                              template_dir=experiment.template_dir)
    systems = dict(zip(requests["variant"], (messages[0]["content"] for messages in requests["messages"])))
    assert systems["zero_shot"] == "house default"
    assert systems["pinned"].startswith("You are a careful annotator")  # v1 only in the packaged folder
    assert systems["tuned"] != "house default"


def test_variant_syntax_for_a_template():
    assert parse_variant("template=support_v2+few_shot3") == PromptVariant(
        "template=support_v2+few_shot3", template="support_v2", few_shot=3)
    assert parse_variant({"template": "support_v2", "cot": True}).name == "template=support_v2+cot"
    assert parse_variant({"template": "support_v2.v1"}).template == "support_v2.v1"
    with pytest.raises(ValueError, match="name one template only"):
        parse_variant("tuned+template=support_v2")
    with pytest.raises(ValueError, match=r"template '\.\./x' is not a template name.*support_v2\.v1"):
        parse_variant({"name": "bad", "template": "../x"})


def test_the_documented_variables_are_what_render_passes_and_packaged_templates_pass_the_check():
    task = task_from_dict(TASK)
    assert set(template_context(task, parse_variant("zero_shot"), "hi")) == TEMPLATE_VARIABLES
    for kind in ("classification", "multilabel", "ner"):
        kind_task = task_from_dict({**TASK, "kind": kind})
        for name in ("zero_shot", "definitions+cot", "tuned"):
            assert check_template(kind_task, parse_variant(name)).parent == TEMPLATE_DIR.resolve()


def test_a_missing_template_names_the_variant_the_folders_and_their_files(project):
    with pytest.raises(PromptTemplateNotFound) as caught:
        load_experiment(write(project, ["zero_shot", {"name": "my_prompt", "template": "support_v3"}]))
    message = str(caught.value)
    assert "variant 'my_prompt': no prompt template support_v3.classification.v<N>.jinja" in message
    assert f"{(project / 'prompts').resolve()}: support_v2.classification.v1.jinja" in message
    assert f"{TEMPLATE_DIR.resolve()} (packaged): default.classification.v1.jinja" in message
    assert f"add support_v3.classification.v1.jinja to {(project / 'prompts').resolve()}" in message
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, FileNotFoundError)
    with pytest.raises(PromptTemplateNotFound, match=r"templates: 'nowhere' does not exist.*make it a folder"):
        load_experiment(write(project, ["zero_shot"], templates="nowhere"))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{% block system %}Pick: {{ lables }}{% endblock %}{% block user %}{{ text }}{% endblock %}",
         r"uses variable 'lables' \(did you mean 'labels'\?\), which the renderer does not provide; "
         r"the variables available are any_definitions, examples, .*variant: rename it"),
        ("{% block system %}Pick one.{% endblock %}{{ text }}",
         r"has no 'user' block; a prompt template needs \{% block system %\}.*\{% block user %\}.*add it"),
        ("{% block system %}{% if text %}open{% endblock %}{% block user %}{{ text }}{% endblock %}",
         r"is not valid Jinja: line 1: .*endif.*Fix that line"),
    ],
    ids=["undefined_variable", "missing_user_block", "syntax_error"],
)
def test_a_broken_template_is_refused_at_load_naming_the_file_and_the_fix(project, source, expected):
    broken = project / "prompts" / "broken.classification.v1.jinja"
    broken.write_text(source)
    with pytest.raises(PromptTemplateError, match=expected) as caught:
        load_experiment(write(project, ["zero_shot", {"name": "mine", "template": "broken"}]))
    assert f"variant 'mine': prompt template {broken.resolve()} " in str(caught.value)
    assert str(caught.value).startswith(str(project / "exp.yaml"))


def test_the_cli_prints_a_template_error_and_exits_2(project, capsys):
    (project / "prompts" / "broken.classification.v1.jinja").write_text("{% block system %}x{% endblock %}")
    assert main(["preview", str(write(project, ["template=broken"]))]) == 2
    assert capsys.readouterr().err.startswith("error: ")
