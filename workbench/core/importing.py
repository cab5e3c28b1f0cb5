"""Map a user's own table to the project's dataset frame and task, refusing what cannot work.

A user's file (CSV, TSV, Excel, Parquet, JSONL or JSON, or a CoNLL file for NER) has its own column
names, numeric labels, delimited multi-label cells or token-level tags. `import_table` reads it and
`table_to_dataset` maps it to a dataset frame (see `workbench.core.data`) with the columns

- ``example_id`` (str): from the ``--id`` column as text, or made from where the row is in the
  file, so that a user finds it there: ``row-<n>`` with n the row a spreadsheet shows for a CSV,
  TSV or Excel file (its header is row 1, so the first data row is ``row-2``), the line of a
  JSONL file, the item of a JSON list or the record of a Parquet file (from 1); and
  ``sentence-<n>`` for the n-th sentence of a CoNLL file;
- ``text`` (str);
- the kind's gold column: ``label`` (classification), ``labels`` (multilabel) or ``spans``
  (NER, character offsets into ``text``).

and builds a task with every label found, without definitions. The checks themselves are
`workbench.core.task.task_from_dict`'s and `workbench.core.data.validate_dataset`'s; this module
only says their findings in the user's terms (the file's row and column names).

Cells become labels as text: ``1`` is ``"1"``, and a number a spreadsheet stores as ``1.0`` is
``"1"`` when it is integral; CSV and TSV cells are kept exactly as written in the file.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.core.answers import is_missing
from workbench.core.data import DatasetError, jsonl_records, label_counts, validate_dataset
from workbench.core.errors import InputError, MissingInputError
from workbench.core.kinds import KINDS
from workbench.core.task import Task, TaskSpecError, task_from_dict

TABLE_SUFFIXES = (".csv", ".tsv", ".xlsx", ".parquet", ".pq", ".jsonl", ".ndjson", ".json")
CONLL_SUFFIXES = (".conll", ".iob", ".iob2", ".bio")
_NAME_PATTERN = re.compile(r"[^A-Za-z0-9_\-]+")


class TableImportError(InputError):
    """A user's file cannot be mapped to a dataset; the message names the file, column or row and the fix."""


@dataclass(frozen=True)
class ImportedData:
    """A user's table as the project's dataset and task.

    `dataset` has the columns ``example_id``, ``text`` and the task kind's gold column, validated
    by `validate_dataset`; `locations` says where each of its rows is in the file (``row 4``,
    ``line 3``, ``sentence 2 (line 9)``), in the same order; `counts` is `label_counts` of the
    dataset (rows per label; entities per label for NER).
    """

    task: Task
    dataset: pd.DataFrame
    locations: tuple[str, ...]
    source: str
    counts: pd.Series


def import_table(path: str | Path, *, text_column: str | None = None, label_column: str | None = None,
                 id_column: str | None = None, kind: str | None = None, sep: str | None = None,
                 name: str | None = None) -> ImportedData:
    """Read a user's file and map it to a dataset and task (see `table_to_dataset`).

    `path` is a table (.csv, .tsv, .xlsx (its first sheet), .parquet, .jsonl, .json) whose
    columns `text_column` and `label_column` name, or a CoNLL file (.conll, .iob, .iob2, .bio:
    ``token ... tag`` per line, a blank line between sentences, ``-DOCSTART-`` lines ignored),
    which needs neither. `kind` defaults to ``ner`` for CoNLL, ``multilabel`` when `sep` is given,
    else ``classification``. `name` (the task's) defaults to the file's stem made a plain
    identifier. Raises `TableImportError` or `DatasetError` saying what is wrong and where.
    """
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"data file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in CONLL_SUFFIXES:
        if kind not in (None, "ner"):
            raise TableImportError(f"{path} is a CoNLL file (token and tag per line): its kind is ner, not {kind!r}")
        if id_column is not None:
            raise TableImportError(f"{path} is a CoNLL file, which has no id column: leave out --id "
                                   "(sentences get the ids sentence-1, sentence-2, ...)")
        frame = read_conll(path)
        locations = [f"sentence {n} (line {line})" for n, line in enumerate(frame["line"], start=1)]
        ids = [f"sentence-{n}" for n in range(1, len(frame) + 1)]
        return table_to_dataset(frame, text_column="tokens", label_column="tags", kind="ner", name=name or path.stem,
                                source=str(path), locations=locations, ids=ids)
    frame, numbers, unit = _read_table(path)
    locations = [f"{unit} {number}" for number in numbers]
    if text_column is None or label_column is None:
        raise TableImportError(f"{path}: say which columns hold the text and the label (--text COLUMN --label "
                               f"COLUMN); its columns are {list(frame.columns)}")
    return table_to_dataset(frame, text_column=text_column, label_column=label_column, id_column=id_column,
                            kind=kind or ("multilabel" if sep is not None else "classification"), sep=sep,
                            name=name or path.stem, source=str(path), locations=locations,
                            ids=[f"row-{number}" for number in numbers])


def table_to_dataset(frame: pd.DataFrame, *, text_column: str, label_column: str, id_column: str | None = None,
                     kind: str = "classification", sep: str | None = None, name: str = "task",
                     source: str = "DataFrame", locations: Sequence[str] | None = None,
                     ids: Sequence[str] | None = None) -> ImportedData:
    """Map a DataFrame with the user's own column names to a validated dataset and task.

    `text_column` holds the texts, or for NER with token tags the tokens (a list, or one string
    of space-separated tokens; the text is the tokens joined by single spaces). `label_column`
    holds, by `kind`:

    - ``classification``: one label per row, kept as text;
    - ``multilabel``: labels separated by `sep` (``"bug; billing"`` with ``sep=";"``, spaces
      around each label ignored, an empty cell meaning none), or a list or JSON list per row;
    - ``ner``: character-offset spans (a list or JSON list of ``{start, end, label}``), or IOB/BIO
      tags, one per token (``O``, ``B-<type>``, ``I-<type>``; a list or space-separated string).

    Ids come from `id_column` as text, else from `ids`, else ``row-<n>`` (n from 1, in frame
    order). `locations` names each row for messages (default ``row <n>``, the same n). Every
    label found becomes a task label with no definition; `name` is made a plain identifier.
    Raises `TableImportError` (unknown column, a task the labels cannot make) or `DatasetError`
    (bad rows, in the user's row and column names).
    """
    if kind not in KINDS:
        raise TableImportError(f"kind {kind!r} is not one of {sorted(KINDS)}")
    named = {"text": text_column, "label": label_column, **({"id": id_column} if id_column is not None else {})}
    unknown = [(role, column) for role, column in named.items() if column not in frame.columns]
    if unknown:
        raise TableImportError(_unknown_columns(unknown, frame, source))
    if frame.empty:
        raise TableImportError(f"{source} has a header but no rows: there is nothing to import")
    frame = frame.reset_index(drop=True)
    locations = list(locations) if locations is not None else [f"row {n}" for n in range(1, len(frame) + 1)]
    if id_column is not None:
        example_ids = [_text_cell(value) or "" for value in frame[id_column]]
    else:
        example_ids = list(ids) if ids is not None else [f"row-{n}" for n in range(1, len(frame) + 1)]

    problems: list[str] = []
    texts, targets = _map_targets(frame, text_column, label_column, kind, sep, locations, example_ids, problems)
    if problems:
        raise DatasetError(source, problems)
    target = KINDS[kind].target_column
    dataset = pd.DataFrame({"example_id": example_ids, "text": texts, target: targets})
    task = _task_for(dataset, kind, plain_name(name), label_column, source)
    columns = {"text": text_column, "example_id": id_column or "example_id", target: label_column}
    try:
        dataset = validate_dataset(dataset, task, source=source)
    except DatasetError as exc:
        raise DatasetError(source, [_in_user_terms(problem, columns, locations) for problem in exc.problems]) from None
    return ImportedData(task=task, dataset=dataset, locations=tuple(locations), source=source,
                        counts=label_counts(dataset, task))


def read_conll(path: str | Path) -> pd.DataFrame:
    """Read a CoNLL file into one row per sentence: ``tokens`` (list of str), ``tags`` (list of
    str) and ``line`` (the line its first token is on, from 1).

    Each line is ``token ... tag``: the first field is the token, the last its tag (CoNLL-2003's
    part-of-speech and chunk columns in between are ignored); a blank line ends a sentence;
    ``-DOCSTART-`` lines are skipped. A line with one field is refused, naming it.
    """
    path = Path(path)
    sentences: list[dict[str, Any]] = []
    tokens: list[str] = []
    tags: list[str] = []
    first_line = 0
    problems = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if tokens:
                sentences.append({"tokens": tokens, "tags": tags, "line": first_line})
            tokens, tags = [], []
            continue
        if len(fields) < 2:
            problems.append(f"line {number}: {line.strip()!r} has one field; each line needs a token and its tag")
            continue
        if not tokens:
            first_line = number
        tokens.append(fields[0])
        tags.append(fields[-1])
    if tokens:
        sentences.append({"tokens": tokens, "tags": tags, "line": first_line})
    if problems:
        raise DatasetError(str(path), problems)
    if not sentences:
        raise TableImportError(f"{path} is empty: it holds no sentence (token and tag lines)")
    return pd.DataFrame(sentences, columns=["tokens", "tags", "line"])


def cell_text(value: Any) -> str | None:
    """A cell as the text a user sees in it: None when empty (None, NaN), integral numbers without
    ``.0`` (``1.0`` is ``"1"``), other values as `str` gives them. Lists and dicts are not cells
    of text: TypeError."""
    if isinstance(value, (list, dict, tuple, np.ndarray)):
        raise TypeError(f"expected a single value, got {type(value).__name__}")
    if isinstance(value, np.generic):  # numpy scalars (int64, float64, bool_) from pandas
        value = value.item()
    if is_missing(value) or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return str(value)


def plain_name(text: str) -> str:
    """`text` as a task name: runs of characters other than letters, digits, ``_`` and ``-``
    become ``_``, and a name that does not start with a letter gets ``task_`` in front."""
    name = _NAME_PATTERN.sub("_", text).strip("_") or "task"
    return name if name[0].isascii() and name[0].isalpha() else f"task_{name}"


def iob_to_spans(tokens: Sequence[str], tags: Sequence[str]) -> tuple[str, list[dict[str, Any]], list[str]]:
    """Text and character-offset spans from tokens and their IOB/BIO tags.

    The text is the tokens joined by single spaces. ``B-X`` starts an entity of type X, ``I-X``
    continues one (or starts one after ``O`` or another type, as IOB1 files do), ``O`` is
    outside. Returns ``(text, spans, problems)``: spans are ``{start, end, label}`` dicts,
    problems name each tag that is none of these.
    """
    spans: list[dict[str, Any]] = []
    problems: list[str] = []
    offset = 0
    current: dict[str, Any] | None = None
    for index, (token, tag) in enumerate(zip(tokens, tags)):
        start, end = offset, offset + len(token)
        offset = end + 1
        prefix, _, label = tag.partition("-")
        if tag == "O":
            current = None
        elif prefix in ("B", "I") and label:
            if prefix == "I" and current is not None and current["label"] == label:
                current["end"] = end
            else:
                current = {"start": start, "end": end, "label": label}
                spans.append(current)
        else:
            problems.append(f"tag {tag!r} of token {index + 1} ({token!r}) is not O, B-<type> or I-<type>")
            current = None
    return " ".join(tokens), spans, problems


def _read_table(path: Path) -> tuple[pd.DataFrame, list[int], str]:
    """The file as a DataFrame, where each row is in it, and what those numbers count (row, line, ...)."""
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise TableImportError(
            f"{path}: unsupported file type {suffix!r}; use a table ({', '.join(TABLE_SUFFIXES)}) or, for NER, "
            f"a CoNLL file ({', '.join(CONLL_SUFFIXES)}; rename a CoNLL .txt file to .conll)")
    if path.stat().st_size == 0:
        raise TableImportError(f"{path} is empty (0 bytes): there is nothing to import")
    if suffix in (".jsonl", ".ndjson"):
        rows, lines = jsonl_records(path, _read_text(path))
        if not rows:
            raise TableImportError(f"{path} is empty: it holds no JSON object")
        return pd.DataFrame(rows), lines, "line"
    if suffix == ".json":
        try:
            data = json.loads(_read_text(path))
        except json.JSONDecodeError as exc:
            raise TableImportError(f"{path} is not valid JSON ({exc}); a .json file holds a list of objects") from None
        if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
            raise TableImportError(f"{path} must hold a JSON list of objects, one per row (or use .jsonl)")
        return _framed(pd.DataFrame(data), path, "item")
    if suffix in (".csv", ".tsv"):
        _read_text(path)  # refuses a file that is not UTF-8 with the fix
        try:
            # Every cell as the text written in the file: labels such as 1, 01 or 1.0 stay as typed.
            frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=str, keep_default_na=False,
                                encoding="utf-8-sig")
        except pd.errors.EmptyDataError:
            raise TableImportError(f"{path} is empty: no header and no rows") from None
        except pd.errors.ParserError as exc:
            raise TableImportError(f"{path} could not be read as {suffix[1:].upper()}: {exc}") from None
        return _framed(frame, path, "row", first=2)  # a spreadsheet shows the header on row 1
    if suffix == ".xlsx":
        try:
            frame = pd.read_excel(path, sheet_name=0, dtype=object)
        except ImportError as exc:
            raise TableImportError(f"reading {path} needs openpyxl: pip install openpyxl ({exc})") from None
        return _framed(frame, path, "row", first=2)
    return _framed(pd.read_parquet(path), path, "record")


def _framed(frame: pd.DataFrame, path: Path, unit: str, first: int = 1) -> tuple[pd.DataFrame, list[int], str]:
    if len(frame.columns) == 0:
        raise TableImportError(f"{path} is empty: no columns and no rows")
    return frame, list(range(first, first + len(frame))), unit


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TableImportError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8 "
                               "(in Excel: Save As, CSV UTF-8)") from None


def _unknown_columns(unknown: list[tuple[str, str]], frame: pd.DataFrame, source: str) -> str:
    columns = [str(name) for name in frame.columns]
    if not columns:
        return f"{source} is empty: no columns and no rows"
    named = []
    for role, column in unknown:
        close = [name for name in columns if name.strip().lower() == str(column).strip().lower()]
        named.append(f"{column!r} (the {role} column{f'; did you mean {close[0]!r}?' if close else ''})")
    return f"{source} has no column {' and no column '.join(named)}; its columns are {columns}"


def _map_targets(frame: pd.DataFrame, text_column: str, label_column: str, kind: str, sep: str | None,
                 locations: list[str], ids: list[str], problems: list[str]) -> tuple[list[Any], list[Any]]:
    """The texts and gold targets, one per row; what cannot be mapped goes into `problems`."""
    texts: list[Any] = []
    targets: list[Any] = []
    tagged = kind == "ner" and not any(_looks_like_spans(value) for value in frame[label_column])
    for row, (text, value) in enumerate(zip(frame[text_column], frame[label_column])):
        where = f"{locations[row]} (example_id {ids[row]!r})"
        try:
            if tagged:
                text, value = _tagged(text, value, text_column, label_column)
            else:
                text = _text_cell(text)
                value = (_label_cell(value, label_column) if kind == "classification" else
                         _labels_cell(value, sep, label_column) if kind == "multilabel" else
                         _spans_cell(value))
        except TableImportError as exc:
            problems.append(f"{where}: {exc}")
            text, value = None, None
        texts.append(text)
        targets.append(value)
    return texts, targets


def _text_cell(value: Any) -> Any:
    try:
        return cell_text(value)
    except TypeError:
        return value  # a list where text belongs: validate_dataset names it


def _label_cell(value: Any, column: str) -> str | None:
    try:
        return cell_text(value)
    except TypeError:
        raise TableImportError(f"column {column!r} holds a list, not one label: for several labels per row "
                               "use --kind multilabel") from None


def _labels_cell(value: Any, sep: str | None, column: str) -> list[str]:
    if isinstance(value, np.ndarray):  # lists read from Parquet
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        labels = [cell_text(item) for item in value]
        if None in labels:
            raise TableImportError(f"column {column!r} has an empty label in its list {value!r}")
        return labels
    text = cell_text(value)
    if text is None or not text.strip():
        return []  # an empty cell: none of the labels
    if sep is not None:
        return [part.strip() for part in text.split(sep) if part.strip()]
    if text.lstrip().startswith("["):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TableImportError(f"column {column!r} holds {text[:60]!r}, which is not a JSON list ({exc.msg})") \
                from None
        if isinstance(parsed, list):
            return _labels_cell(parsed, sep, column)
    raise TableImportError(f"column {column!r} holds {text[:60]!r}, not a list of labels: if labels are separated "
                           "by a delimiter, say which (--sep ';'), or write a JSON list ([\"a\", \"b\"])")


def _looks_like_spans(value: Any) -> bool:
    """True when a cell holds character-offset spans (mappings), not tags."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return False
    if isinstance(value, np.ndarray):
        value = value.tolist()
    return isinstance(value, list) and any(isinstance(item, dict) for item in value)


def _spans_cell(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError as exc:
            raise TableImportError(f"spans {value[:60]!r} are not JSON ({exc.msg}); write a list of "
                                   '{"start": 0, "end": 4, "label": "X"}') from None
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list):
        # Labels as text (a numeric entity type is kept as its digits); offsets are validate_dataset's to check.
        return [{**span, "label": cell_text(span["label"])} if isinstance(span, dict) and "label" in span
                and not isinstance(span["label"], str) else span for span in value]
    return value


def _tagged(tokens: Any, tags: Any, tokens_column: str, tags_column: str) -> tuple[str | None, list[dict]]:
    token_list = _token_list(tokens, tokens_column)
    tag_list = _token_list(tags, tags_column)
    if len(token_list) != len(tag_list):
        raise TableImportError(f"column {tokens_column!r} has {len(token_list)} tokens but column {tags_column!r} "
                               f"has {len(tag_list)} tags; give one tag per token")
    text, spans, problems = iob_to_spans(token_list, tag_list)
    if problems:
        raise TableImportError(f"column {tags_column!r}: " + "; ".join(problems))
    return (text if token_list else None), spans


def _token_list(value: Any, column: str) -> list[str]:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass  # a token that starts with "[": split on spaces below
    if isinstance(value, (list, tuple)):
        items = [cell_text(item) for item in value]
        if None in items:
            raise TableImportError(f"column {column!r} has an empty item in {value!r}")
        return [item for item in items if item is not None]
    text = cell_text(value)
    return text.split() if text else []


def _task_for(dataset: pd.DataFrame, kind: str, name: str, label_column: str, source: str) -> Task:
    """The task whose labels are every label in the dataset's gold column, with no definitions."""
    counts: Counter[str] = Counter()
    target_kind = KINDS[kind]
    for value in dataset[target_kind.target_column]:
        try:
            found = [] if value is None else target_kind.target_labels(value)
        except (KeyError, TypeError, AttributeError):
            continue  # a malformed target: validate_dataset names its row
        # A blank label is left out of the task, so that validation names the rows that hold it.
        counts.update(label for label in found if label.strip())
    labels = sorted(counts, key=_natural)
    spec = {"name": name, "kind": kind, "labels": [{"name": label, "definition": ""} for label in labels]}
    spec_source = f"the task made from {source}"
    try:
        return task_from_dict(spec, source=spec_source)
    except TaskSpecError as exc:
        if not labels:
            raise TableImportError(f"{source}: column {label_column!r} holds no label in any row") from None
        if len(labels) == 1:
            raise TableImportError(
                f"{source}: column {label_column!r} has only one label, {labels[0]!r} ({counts[labels[0]]} rows); "
                "a classifier needs at least two labels to choose between: add rows with another label (for a "
                f"yes/no question, label the other rows too, e.g. 'not_{labels[0]}')") from None
        reason = str(exc).removeprefix(f"{spec_source} is not a valid task specification: ")
        raise TableImportError(f"{source}: the labels in column {label_column!r} cannot make a task: "
                               f"{reason}") from None


def _natural(label: str) -> tuple:
    """Sort key that puts "2" before "10"."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", label) if part)


_ROW = re.compile(r"^row (\d+) \(example_id=(.*?)\): ")
_FIRST_USED = re.compile(r"duplicate example_id, first used in row (\d+)")


def _in_user_terms(problem: str, columns: dict[str, str], locations: list[str]) -> str:
    """A `validate_dataset` problem with its row in the file's terms and its field as the user's column."""
    match = _ROW.match(problem)
    if match:
        problem = f"{locations[int(match.group(1))]} (example_id {match.group(2)}): " + problem[match.end():]
    problem = _FIRST_USED.sub(lambda found: f"duplicate id in column {columns['example_id']!r}, first used in "
                              f"{locations[int(found.group(1))]}", problem)
    for field, column in columns.items():
        problem = problem.replace(f"field {field!r}", f"column {column!r}")
    return problem
