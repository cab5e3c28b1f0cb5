"""Generated examples: new texts that show a point's failure in new words, kept only when an
independent labelling pass agrees with the answer they were written for.

A capable model behind the model seam (`generator`) is shown a point's member texts, what went
wrong, and the client's definitions, and writes new texts, each with its intended answer in the
task's own answer format. Another pass, by `validator` (a different model, or the same one with a
different prompt) through the prompting stage's normal variant and parser, labels each new text
blind. A text is accepted only when the two answers are the same answer (`TaskKind.answer_key`);
every other one is kept in ``rejected`` with the reason (unreadable, a different answer, equal to
or nearly repeating an existing text), never silently dropped. Accepted texts are marked
``synthetic`` and join the point's training rows through `add_examples`.

The embedded 135M model writes poor texts and mostly fails its own validation; the mechanism is
meant for a capable endpoint, and the tests drive it with a scripted model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.core.answers import extract_json, parse_answer
from workbench.core.frames import require_columns
from workbench.core.task import Task
from workbench.models.base import ChatRequest, Completion, GenerationOptions, Model
from workbench.points.encoder import Encoder, cached
from workbench.prompting.cache import ResponseCache
from workbench.prompting.runner import run_variants, send_requests
from workbench.trainingdata.leakage import NEAR_DUPLICATE_COSINE, normalise_text, similarity

REJECTED_COLUMNS = ["point_id", "example_id", "text", "intended", "validated", "reason"]
_SYSTEM = (
    "You write new example texts for a labelling task, to teach a model a case it gets wrong. Each new text must "
    "show the same difficulty as the examples you are shown, in new words and with new details (names, amounts, "
    "products), and be realistic. Give each text the correct answer by the client's definitions. Reply with JSON "
    'only: {"examples": [{"text": "...", "answer": <the answer object>}, ...]}.'
)


@dataclass
class GeneratedExamples:
    """`accepted`: rows for `add_examples` (``point_id``, ``split`` "train", ``source``
    "generated", ``example_id``, ``text``, ``target``, ``synthetic`` True); `rejected`: every other
    generated text with why (`REJECTED_COLUMNS`: ``intended`` and ``validated`` are gold-form
    answers or None)."""

    accepted: pd.DataFrame
    rejected: pd.DataFrame


def generation_messages(point_id: str, signature: str, members: Sequence[tuple[str, str]], task: Task,
                        count: int) -> tuple[dict[str, str], ...]:
    """The request for `count` new texts for one point; `members` are (text, answer JSON) pairs."""
    definitions = "\n".join(f"- {label.name}: {label.definition or '(no definition)'}" for label in task.labels)
    shown = "\n".join(f"{number}. {text}\n   correct answer: {answer}" for number, (text, answer) in
                      enumerate(members, 1))
    user = (f"Label definitions:\n{definitions}\n\nThe model gets these texts wrong ({signature}):\n{shown}\n\n"
            f"Write {count} new texts with the same difficulty, each with its correct answer in the same format.")
    return ({"role": "system", "content": _SYSTEM}, {"role": "user", "content": user})


def generate_examples(
    examples: pd.DataFrame, task: Task, generator: Model, validator: Model, *, per_point: int = 4,
    points: Sequence[str] | None = None, validation_variant: str = "definitions", members: int = 4,
    cache: ResponseCache | str | Path | None = None, encoder: Encoder | None = None,
    threshold: float = NEAR_DUPLICATE_COSINE, options: GenerationOptions | None = None,
) -> GeneratedExamples:
    """New training texts for the points of `examples` (the training-data frame; `points` limits
    which), `per_point` asked of `generator` per point from up to `members` of its training
    members, each validated by `validator` answering `validation_variant` blind. Texts that equal
    or nearly repeat any text of `examples` (or each other) are rejected, so a generated text can
    never leak into a test case."""
    require_columns(examples, ["point_id", "split", "source", "example_id", "text", "answer", "signature"],
                    "examples", "pass TrainingData.examples")
    wanted = [p for p in dict.fromkeys(examples["point_id"]) if points is None or p in points]
    requests, order = [], []
    for point_id in wanted:
        mine = examples[(examples["point_id"] == point_id) & (examples["source"].isin(["members", "corrections"]))
                        & (examples["split"] == "train")]
        if mine.empty:
            continue
        shown = list(zip(mine["text"], mine["answer"]))[:members]
        signature = str(mine["signature"].dropna().iloc[0]) if mine["signature"].notna().any() else "errors"
        requests.append(ChatRequest(generation_messages(point_id, signature, shown, task, per_point),
                                    options or GenerationOptions(temperature=0.7, max_tokens=600, seed=0)))
        order.append(point_id)
    answers = send_requests(generator, requests, cache=cache) if requests else []
    proposed, rejected = [], []
    for point_id, answer in zip(order, answers):
        for number, item in enumerate(_items(answer)):
            text, intended, problem = _read_item(item, task)
            # From the text, not the position: a second batch for the same point must not reuse
            # the first batch's ids (add_examples refuses an id that comes back with another text).
            example_id = f"gen-{point_id}-" + (hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
                                               if isinstance(text, str) and text else str(number + 1))
            if problem is not None:
                rejected.append(_rejected(point_id, example_id, text, intended, None, problem))
            else:
                proposed.append({"point_id": point_id, "example_id": example_id, "text": text, "intended": intended})
        if isinstance(answer, str) or not _items(answer):
            rejected.append(_rejected(point_id, f"gen-{point_id}", None, None, None,
                                      f"the generator gave no examples: {_why(answer)}"))
    proposed, rejected = _drop_repeats(proposed, rejected, list(examples["text"]), encoder, threshold)
    accepted = []
    if proposed:
        dataset = pd.DataFrame({"example_id": [p["example_id"] for p in proposed],
                                "text": [p["text"] for p in proposed],
                                task.kind.target_column: [p["intended"] for p in proposed]})
        labelled = run_variants(task, dataset, [validation_variant], validator, cache=cache, progress=False)
        verdicts = dict(zip(labelled["example_id"], labelled["prediction"]))
        for item in proposed:
            validated = verdicts.get(item["example_id"])
            if validated is not None and task.kind.answer_key(validated) == task.kind.answer_key(item["intended"]):
                accepted.append({"point_id": item["point_id"], "split": "train", "source": "generated",
                                 "example_id": item["example_id"], "text": item["text"], "target": item["intended"],
                                 "synthetic": True})
            else:
                reason = "the validator could not answer" if validated is None else "the validator answered otherwise"
                rejected.append(_rejected(item["point_id"], item["example_id"], item["text"], item["intended"],
                                          validated, reason))
    return GeneratedExamples(
        pd.DataFrame(accepted, columns=["point_id", "split", "source", "example_id", "text", "target", "synthetic"]),
        pd.DataFrame(rejected, columns=REJECTED_COLUMNS))


def _items(answer: Completion | str) -> list[Any]:
    if isinstance(answer, str):
        return []
    value = extract_json(answer.text, prefer_key=("examples",))
    items = value.get("examples") if isinstance(value, dict) else value
    return list(items) if isinstance(items, list) else []


def _read_item(item: Any, task: Task) -> tuple[str | None, Any, str | None]:
    """(text, intended gold-form answer, None) or (text, None, why not)."""
    if not isinstance(item, dict) or not isinstance(item.get("text"), str) or not item["text"].strip():
        return None, None, f"not an example with a text: {str(item)[:120]!r}"
    text = " ".join(item["text"].split())
    answer = item.get("answer")
    raw = answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False)
    parsed = parse_answer(task, raw, text)
    if parsed.parse_error:
        return text, None, f"its answer cannot be read as a {task.kind} answer: {parsed.parse_error}"
    return text, parsed.prediction, None


def _drop_repeats(proposed: list[dict], rejected: list[dict], existing: list[str], encoder: Encoder | None,
                  threshold: float) -> tuple[list[dict], list[dict]]:
    if not proposed:
        return proposed, rejected
    encoder = cached(encoder)
    texts = [p["text"] for p in proposed]
    against_existing = similarity(encoder, texts, existing).max(axis=1) if existing else [0.0] * len(texts)
    among = similarity(encoder, texts, texts)
    normal_existing = {normalise_text(text) for text in existing}
    kept = []
    for i, item in enumerate(proposed):
        repeats_kept = any(among[i, j] >= threshold for j in range(i) if proposed[j] in kept)
        if normalise_text(item["text"]) in normal_existing or against_existing[i] >= threshold or repeats_kept:
            rejected.append(_rejected(item["point_id"], item["example_id"], item["text"], item["intended"], None,
                                      "equals or nearly repeats an existing text"))
        else:
            kept.append(item)
    return kept, rejected


def _rejected(point_id, example_id, text, intended, validated, reason) -> dict[str, Any]:
    return {"point_id": point_id, "example_id": example_id, "text": text, "intended": intended,
            "validated": validated, "reason": reason}


def _why(answer: Completion | str) -> str:
    return f"request failed: {answer}" if isinstance(answer, str) else f"answer {answer.text[:120]!r}"
