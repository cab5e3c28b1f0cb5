"""Training data as spaCy DocBins plus a generated config: the classic non-LLM baseline.

`write_docbins` writes ``train.spacy``, ``test.spacy`` and ``config.cfg`` from the canonical
training-data frame (columns ``point_id``, ``split``, ``source``, ``example_id``, ``text``,
``target``, ...; see `workbench.trainingdata.export_hf`), so that, in that folder,

    python -m spacy train config.cfg --paths.train train.spacy --paths.dev test.spacy

trains a baseline. `train_spacy` runs exactly that, and `spacy_predictions` turns the trained
pipeline's answers into the runner's prediction rows, which the workbench scores like any run.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from workbench.core.errors import InputError, OverwriteError
from workbench.core.frames import require_columns
from workbench.prompting.runner import PREDICTION_COLUMNS
from workbench.trainingdata.examples import one_row_per_example
from workbench.trainingdata.export_hf import gold_example

if TYPE_CHECKING:
    from workbench.core.task import Task

FRAME_COLUMNS = ["point_id", "split", "example_id", "text", "target"]
SPLITS = ("train", "test")
MULTILABEL_THRESHOLD = 0.5  # a textcat_multilabel cat at or above this score is predicted


@dataclass(frozen=True)
class SpacyExport:
    """What `write_docbins` wrote: the three files, docs per split (``{"train": n, "test": n}``),
    the spaCy component trained (``"textcat"``, ``"textcat_multilabel"`` or ``"ner"``), and the
    gold spans left out because they do not fall on spaCy's token boundaries: how many
    (`unaligned`) and which, as ``(example_id, span)`` pairs (`unaligned_examples`)."""

    train_path: Path
    test_path: Path
    config_path: Path
    docs: dict[str, int]
    unaligned: int
    unaligned_examples: tuple[tuple[str, dict[str, Any]], ...]
    pipeline: str
    lang: str


def write_docbins(
    frame: pd.DataFrame, task: Task, out_dir: str | Path, *, lang: str = "en", overwrite: bool = False
) -> SpacyExport:
    """Write the frame's train and test rows as ``train.spacy`` and ``test.spacy`` (spaCy
    `DocBin`s) and a training ``config.cfg`` into `out_dir`.

    Each row becomes ``task.kind.to_doc(task, spacy.blank(lang), example)`` with the row's
    ``target`` as the example's gold target, and ``example_id`` kept in ``doc.user_data``.
    Classification docs carry ``doc.cats`` with every label; NER docs carry ``doc.ents``, each
    gold span snapped to spaCy's tokens with ``alignment_mode="strict"``: a span that does not
    start and end on a token boundary is left out of the doc (never moved) and counted in
    `SpacyExport.unaligned`. The config is spaCy's own (`init_config`, optimised for efficiency,
    CPU). Refuses a non-empty `out_dir` unless `overwrite` (which replaces the three files only).
    """
    import spacy
    from spacy.tokens import DocBin

    require_columns(frame, FRAME_COLUMNS, "the training-data frame",
                    "pass the canonical training-data frame (one row per point and example)")
    unknown = sorted(set(frame["split"].astype(str)) - set(SPLITS))
    if unknown:
        raise InputError(f"the training-data frame has split value(s) {unknown}; spaCy export writes only "
                         f"{list(SPLITS)}")
    if frame.empty:
        raise InputError("the training-data frame has no rows; there is nothing to export")
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise OverwriteError(f"{out_dir} already exists and is not empty; pass overwrite=True to replace "
                              "its train.spacy, test.spacy and config.cfg, or choose another folder")

    frame = one_row_per_example(frame)  # a trainer sees an example once, under its first point
    nlp = spacy.blank(lang)
    bins, unaligned, has_cats = {}, [], False
    for split in SPLITS:
        docs = DocBin(store_user_data=True)
        for record in frame[frame["split"].astype(str) == split].to_dict("records"):
            doc = task.kind.to_doc(task, nlp, gold_example(record, task))
            doc.user_data["example_id"] = str(record["example_id"])
            unaligned += [(str(record["example_id"]), span) for span in doc.user_data.get("unaligned_spans", [])]
            has_cats = has_cats or bool(doc.cats)
            docs.add(doc)
        bins[split] = docs
    pipeline = _pipeline(has_cats, frame["target"])

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {split: out_dir / f"{split}.spacy" for split in SPLITS}
    for split, docs in bins.items():
        docs.to_disk(paths[split])
    config_path = out_dir / "config.cfg"
    _config(lang, pipeline).to_disk(config_path)
    return SpacyExport(
        train_path=paths["train"], test_path=paths["test"], config_path=config_path,
        docs={split: len(docs) for split, docs in bins.items()}, unaligned=len(unaligned),
        unaligned_examples=tuple(unaligned), pipeline=pipeline, lang=lang,
    )


def train_spacy(
    export: SpacyExport, output_dir: str | Path, *, max_steps: int = 1000, seed: int = 0,
    timeout_s: float | None = None,
) -> Path:
    """Run ``python -m spacy train`` on an export (in a subprocess, on CPU) and return the folder
    of the pipeline after its last step, ``model-last``.

    spaCy needs a dev set and keeps as ``model-best`` the pipeline that scored best on it; the
    dev set here is the test cases, so ``model-best`` would be chosen on the very cases it is then
    scored on. ``model-last`` is not, which keeps its test scores honest. `max_steps` is spaCy's
    ``training.max_steps`` (batches); the test docs are evaluated about five times along the way
    (``training.eval_frequency``), which only logs. Raises ValueError when a split has no
    docs, RuntimeError with the end of spaCy's output when training fails or runs past `timeout_s`.
    """
    empty = [split for split, count in export.docs.items() if count == 0]
    if empty:
        raise InputError(f"the export has no {' or '.join(empty)} docs; spaCy needs both to train and evaluate")
    if max_steps < 1:
        raise InputError(f"max_steps must be at least 1, got {max_steps}")
    output_dir = Path(output_dir)
    command = [
        sys.executable, "-m", "spacy", "train", str(export.config_path), "--output", str(output_dir),
        "--paths.train", str(export.train_path), "--paths.dev", str(export.test_path),
        "--training.max_steps", str(max_steps),
        "--training.eval_frequency", str(max(1, max_steps // 5)),
        "--system.seed", str(seed),
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        output = _text(exc.stdout) + _text(exc.stderr)
        raise RuntimeError(f"spacy train ran past {timeout_s} s; its last output:\n{output[-3000:]}") from None
    if result.returncode != 0:
        raise RuntimeError(f"spacy train failed (exit status {result.returncode}); its last output:\n"
                           f"{(result.stdout + result.stderr)[-3000:]}")
    if (output_dir / "model-last" / "config.cfg").exists():
        return output_dir / "model-last"
    raise RuntimeError(f"spacy train finished but wrote no model-last in {output_dir}; "
                       f"its last output:\n{(result.stdout + result.stderr)[-3000:]}")


def spacy_predictions(model_dir: str | Path, frame: pd.DataFrame, task: Task, *,
                      variant: str = "spacy") -> pd.DataFrame:
    """The trained pipeline's answers on the frame's test rows, as the runner's prediction rows.

    Columns are `workbench.prompting.runner.PREDICTION_COLUMNS`: ``variant``, ``example_id``,
    ``repeat`` (0), ``prediction`` in gold form (textcat: the top-scoring label; textcat_multilabel:
    the labels scoring at least 0.5, in the task's label order; ner: ``{"start", "end", "label",
    "text"}`` spans by start), ``raw_response``, ``parse_error``, ``request_error``,
    ``reasoning``, ``finish_reason`` (None), ``hallucinations`` ([]), ``latency_s`` (seconds for
    this text), ``tokens_in``, ``tokens_out`` (0), ``cost`` (0.0), ``cached`` (False), ``samples``
    (1), ``confidence`` (NaN). An example in several points' test rows is predicted once, so the
    rows score with `workbench.evaluation.scores.score` against the test examples.
    """
    import spacy

    require_columns(frame, ["split", "example_id", "text"], "the training-data frame")
    nlp = spacy.load(model_dir)
    answer = _answerer(nlp, task, model_dir)
    tests = frame[frame["split"].astype(str) == "test"].drop_duplicates("example_id")
    rows = []
    for example_id, text in zip(tests["example_id"].astype(str), tests["text"]):
        started = time.perf_counter()
        prediction = answer(nlp(text))
        rows.append({
            "variant": variant, "example_id": example_id, "repeat": 0, "raw_response": None,
            "prediction": prediction, "parse_error": None, "request_error": None, "hallucinations": [],
            "reasoning": None, "finish_reason": None, "latency_s": time.perf_counter() - started,
            "tokens_in": 0, "tokens_out": 0, "cost": 0.0, "cached": False, "samples": 1,
            "confidence": math.nan,
        })
    # Object columns keep None as None (pandas would otherwise infer str and turn it into NaN).
    frame_out = pd.DataFrame(rows, columns=PREDICTION_COLUMNS, dtype=object)
    return frame_out.astype({"repeat": int, "latency_s": float, "tokens_in": int, "tokens_out": int,
                             "cost": float, "cached": bool, "samples": int, "confidence": float})


def _pipeline(has_cats: bool, targets: pd.Series) -> str:
    # Which spaCy component fits is read off the data, not the kind's name. The kinds' docs carry
    # either `doc.cats` (every label, so never empty for a labelling kind) or `doc.ents`. Among
    # labelling kinds, a gold target that is a list of labels means several may apply at once
    # (textcat_multilabel); a single label string means exactly one does (textcat, exclusive).
    if not has_cats:
        return "ner"
    listed = targets.map(lambda value: isinstance(value, (list, tuple)) or hasattr(value, "tolist"))
    return "textcat_multilabel" if bool(listed.any()) else "textcat"


def _config(lang: str, pipeline: str):
    from spacy.cli.init_config import init_config

    return init_config(lang=lang, pipeline=[pipeline], optimize="efficiency", gpu=False)


def _answerer(nlp: Any, task: Task, model_dir: str | Path):
    """A function from a processed doc to a gold-form prediction, by the pipeline's component."""
    factories = {nlp.get_pipe_meta(name).factory for name in nlp.pipe_names}
    order = {label: index for index, label in enumerate(task.label_names)}
    if "textcat_multilabel" in factories:
        return lambda doc: sorted((label for label, score in doc.cats.items() if score >= MULTILABEL_THRESHOLD),
                                  key=lambda label: order.get(label, len(order)))
    if "textcat" in factories:
        return lambda doc: max(doc.cats, key=doc.cats.__getitem__) if doc.cats else None
    if "ner" in factories:
        return lambda doc: [{"start": ent.start_char, "end": ent.end_char, "label": ent.label_, "text": ent.text}
                            for ent in sorted(doc.ents, key=lambda ent: ent.start_char)]
    raise InputError(f"the spaCy pipeline in {model_dir} has components {nlp.pipe_names} "
                     "and none of textcat, textcat_multilabel or ner; train it with train_spacy")


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else (value or "")
