"""Before and after fine-tuning with fake models: paired verdicts per point, efficiency per model,
consistency of sampled answers, and the base model's best prompt with a pool that never holds a
test case. The frame is hand-made: point P1 has 12 test cases the base model gets wrong, P2 three
it gets right, and a regression set of four."""

import re
import zlib

import pandas as pd
import pytest

from workbench.core.task import task_from_dict
from workbench.finetune.before_after import BEFORE_AFTER_COLUMNS, CONSISTENCY_COLUMNS, before_after
from workbench.models.base import GenerationOptions
from workbench.testing.fake_model import FakeModel
from workbench.trainingdata.examples import TRAINING_COLUMNS

TASK = task_from_dict({"name": "triage", "kind": "classification", "labels": [
    {"name": "complaint", "definition": "something went wrong"}, {"name": "request", "definition": "asks for"}]})

TESTS = ({f"t{i:02d}": ("P1", f"charged a fee number {i} for nothing", "complaint") for i in range(1, 13)}
         | {f"u{i}": ("P2", f"please send card kind {i}", "request") for i in range(1, 4)}
         | {f"r{i}": ("regression", f"regression item {i} here", "complaint" if i % 2 else "request")
            for i in range(1, 5)})
TRAIN = {"a1": ("P1", "the fee was wrong again", "complaint"), "a2": ("P2", "a new pin please", "request")}
GOLD = {text: label for _, text, label in TESTS.values()}
TEST_TEXTS = set(GOLD)
POOL = pd.DataFrame({"example_id": ["p1", "p2", "p3", "p4"],
                     "text": ["my bill is wrong", "close my account please", "the app keeps crashing",
                              "change my address please"],
                     "label": ["complaint", "request", "complaint", "request"]})


def frame():
    rows = []
    for split, items in (("train", TRAIN), ("test", TESTS)):
        for example_id, (point, text, label) in items.items():
            answer = f'{{"label": "{label}"}}'
            rows.append({"point_id": point, "split": split, "source": "regression" if point == "regression"
                         else "members", "example_id": example_id, "text": text, "target": label, "answer": answer,
                         "messages": [{"role": "user", "content": text}, {"role": "assistant", "content": answer}],
                         "synthetic": False, "signature": None, "distance": None})
    return pd.DataFrame(rows, columns=TRAINING_COLUMNS)


def texts_in(request):
    """The input text, then the texts shown as few-shot examples, of one request."""
    shown = re.findall(r"^Text: (.*)$", request.messages[-1]["content"], flags=re.MULTILINE)
    return shown[-1], shown[:-1]


def label(name):
    return f'{{"label": "{name}"}}'


def always_request(request):
    return label("request")


def right(request):
    return label(GOLD[texts_in(request)[0]])


def shots_help(request):
    """Wrong with a bare prompt, right when shown examples: a base model whose best prompt is few-shot."""
    return right(request) if texts_in(request)[1] else always_request(request)


def by_seed(request):
    """Deterministic at temperature 0; at temperature a coin flip per (text, seed)."""
    if request.options.temperature == 0:
        return always_request(request)
    flip = zlib.crc32(f"{texts_in(request)[0]}|{request.options.seed}".encode()) % 2
    return label("complaint" if flip else "request")


def run(base, tuned, **options):
    return before_after(frame(), TASK, base, tuned, **options)


def test_tuned_right_where_base_is_wrong_is_better_on_that_point_only():
    base, tuned = FakeModel(always_request), FakeModel(right)
    result = run(base, tuned)
    table = result.table.set_index("point_id")
    assert list(result.table.columns) == BEFORE_AFTER_COLUMNS
    assert list(table.index) == ["P1", "P2", "regression", "(all test cases)"]
    p1 = table.loc["P1"]
    assert p1["cases"] == 12 and p1["base"] == 0 and p1["tuned"] == 1 and p1["method"] == "mcnemar_score"
    assert p1["verdict"] == "better" and p1["small"] and p1["p_adjusted"] >= p1["p_value"]
    assert table.loc["P2", "verdict"] == "no clear difference" and table.loc["P2", "difference"] == 0
    # Holm runs over the points only; the regression set and all test cases keep their own p-value.
    assert table.loc["regression", "p_adjusted"] == table.loc["regression", "p_value"]
    assert table.loc["(all test cases)", "cases"] == len(TESTS)


def test_default_call_adds_efficiency_and_nothing_else():
    base, tuned = FakeModel(always_request), FakeModel(right)
    result = run(base, tuned)
    assert len(base.calls) == len(tuned.calls) == len(TESTS)  # no extra answers asked for
    assert set(result.predictions["variant"]) == {"base", "tuned"} and (result.predictions["repeat"] == 0).all()
    assert list(result.efficiency["variant"]) == ["base", "tuned"]
    assert list(result.efficiency["prompt"]) == ["zero_shot", "zero_shot"]
    assert {"latency_p50_s", "latency_p95_s", "tokens_in_mean", "tokens_out_mean",
            "parse_failure_rate"} <= set(result.efficiency.columns)
    assert result.consistency.empty and list(result.consistency.columns) == CONSISTENCY_COLUMNS
    assert result.sampled.empty and result.versus_best is None


def test_parse_failures_show_in_efficiency():
    result = run(FakeModel("not json at all"), FakeModel(right))
    rates = dict(zip(result.efficiency["variant"], result.efficiency["parse_failure_rate"]))
    assert rates == {"base": 1.0, "tuned": 0.0}


def test_repeats_at_temperature_give_consistency_per_model_and_leave_the_tests_alone():
    base, tuned = FakeModel(by_seed), FakeModel(right)
    plain = run(FakeModel(by_seed), FakeModel(right))
    result = run(base, tuned, repeats=4, temperature=0.9, options=GenerationOptions(seed=7))
    sampled_seeds = sorted({call.options.seed for call in base.calls if call.options.temperature == 0.9})
    assert sampled_seeds == [7, 8, 9, 10]
    assert len(result.sampled) == 2 * 4 * len(TESTS) and set(result.sampled["repeat"]) == {0, 1, 2, 3}
    # The paired tests use the deterministic answers only.
    pd.testing.assert_frame_equal(result.table, plain.table)
    assert (result.predictions["repeat"] == 0).all() and len(result.predictions) == 2 * len(TESTS)
    consistency = result.consistency.set_index("variant")
    assert list(result.consistency.columns) == CONSISTENCY_COLUMNS and list(consistency.index) == ["base", "tuned"]
    assert (consistency["repeats"] == 4).all() and (consistency["examples"] == len(TESTS)).all()
    assert (consistency["temperature"] == 0.9).all() and (consistency["metric"] == "accuracy").all()
    tuned_row, base_row = consistency.loc["tuned"], consistency.loc["base"]
    assert tuned_row["all_agree_share"] == 1 and tuned_row["mean_pairwise_agreement"] == 1
    assert base_row["all_agree_share"] < 1 and base_row["mean_pairwise_agreement"] < 1
    assert tuned_row["score_mean"] == 1 and 0 < base_row["score_mean"] < 1


def test_repeats_need_a_temperature_above_zero():
    with pytest.raises(ValueError, match="temperature"):
        run(FakeModel(), FakeModel(), repeats=3, temperature=0)
    assert run(FakeModel(right), FakeModel(right), repeats=1).consistency.empty


def test_best_variant_pool_never_shows_a_test_case_and_the_tuned_model_meets_the_best_prompt():
    base, tuned = FakeModel(shots_help), FakeModel(right)
    # The pool holds every test case, and one more row with a test case's text under another id.
    test_rows = pd.DataFrame({"example_id": list(TESTS), "text": [t for _, t, _ in TESTS.values()],
                              "label": [g for _, _, g in TESTS.values()]})
    copy = pd.DataFrame({"example_id": ["dup"], "text": [TESTS["t01"][1]], "label": ["complaint"]})
    pool = pd.concat([test_rows, POOL, copy], ignore_index=True)
    result = run(base, tuned, best_variant="few_shot8", pool=pool)  # asks for more than the pool has
    shown = [texts_in(call) for call in base.calls]
    with_shots = [shots for _, shots in shown if shots]
    assert len(with_shots) == len(TESTS)  # every test case answered once with examples
    assert all(shots and not set(shots) & TEST_TEXTS for shots in with_shots)
    assert set(result.predictions["variant"]) == {"base", "tuned", "base_best"}
    best = result.versus_best.set_index("point_id")
    assert list(result.versus_best.columns) == BEFORE_AFTER_COLUMNS
    # Better than the training prompt on P1, but not better than the base model's best prompt.
    assert result.table.set_index("point_id").loc["P1", "verdict"] == "better"
    assert best.loc["P1", "base"] == 1 and best.loc["P1", "verdict"] == "no clear difference"
    # A tuned model needs no long prompt: the few-shot prompt costs many more prompt tokens.
    tokens = dict(zip(result.efficiency["variant"], result.efficiency["tokens_in_mean"]))
    assert tokens["tuned"] == tokens["base"] < tokens["base_best"]
    prompts = dict(zip(result.efficiency["variant"], result.efficiency["prompt"]))
    assert prompts == {"base": "zero_shot", "tuned": "zero_shot", "base_best": "few_shot8"}


def test_best_variant_is_sampled_too_with_repeats():
    result = run(FakeModel(by_seed), FakeModel(right), best_variant="definitions", repeats=2)
    assert list(result.consistency["variant"]) == ["base", "tuned", "base_best"]
    assert result.consistency.set_index("variant").loc["base_best", "prompt"] == "definitions"
    assert result.versus_best is not None and len(result.versus_best) == len(result.table)


def test_few_shot_best_variant_without_a_usable_pool_is_refused():
    with pytest.raises(ValueError, match="pass pool="):
        run(FakeModel(), FakeModel(), best_variant="few_shot")
    only_tests = pd.DataFrame({"example_id": ["t01", "u1"], "text": ["x", "y"], "label": ["complaint", "request"]})
    with pytest.raises(ValueError, match="no example left"):
        run(FakeModel(), FakeModel(), best_variant="few_shot", pool=only_tests)
    with pytest.raises(ValueError, match="lacks column"):
        run(FakeModel(), FakeModel(), best_variant="few_shot", pool=POOL.drop(columns="label"))


def test_both_models_answer_with_the_runs_own_template_when_it_has_one(tmp_path):
    """With `template_dir`, the base and the tuned model answer with the user's own template of
    the training variant (searched before the packaged one), the prompt the rows were rendered
    with: without it they would be re-tested on a prompt they were not trained with."""
    from workbench.prompting.templates import TEMPLATE_DIR

    house = (TEMPLATE_DIR / "tuned.classification.v1.jinja").read_text().replace(
        "{% block user %}", "{% block user %}\nHouse style: tickets only.")
    (tmp_path / "tuned.classification.v1.jinja").write_text(house)
    base, tuned = FakeModel(always_request), FakeModel(always_request)
    before_after(frame(), TASK, base, tuned, variant="tuned", template_dir=tmp_path)
    assert base.calls and tuned.calls
    assert all("House style: tickets only." in call.messages[-1]["content"] for call in base.calls + tuned.calls)
    packaged_base = FakeModel(always_request)
    before_after(frame(), TASK, packaged_base, FakeModel(always_request), variant="tuned")
    assert not any("House style" in call.messages[-1]["content"] for call in packaged_base.calls)
