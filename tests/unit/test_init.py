"""`workbench init`: a user's own file to a task, a seeded split and an experiment config; no model call."""

import json
import re

import pandas as pd
import pytest
import yaml

from workbench.cli.main import main
from workbench.core.data import DatasetError, load_dataset
from workbench.core.importing import TableImportError, import_table, iob_to_spans, read_conll
from workbench.core.task import load_task
from workbench.experiments.config import load_experiment
from workbench.experiments.project_init import PROJECT_FILES, ProjectError, split_dataset, write_project

TICKETS = pd.DataFrame({
    "id": [f"t{n}" for n in range(1, 21)],
    "message": [f"ticket number {n} about something" for n in range(1, 21)],
    "category": ["billing", "bug", "billing", "other", "bug"] * 4,
})


def write_table(frame: pd.DataFrame, path):
    """`frame` in the format `path`'s suffix names."""
    suffix = path.suffix
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif suffix == ".xlsx":
        frame.to_excel(path, index=False)
    elif suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        raise AssertionError(suffix)
    return path


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- formats --------------------------------------------------------------------------------


@pytest.mark.parametrize("with_id", [True, False])
def test_the_same_data_in_every_format_gives_the_same_task_and_split(tmp_path, with_id):
    projects, first_ids = {}, {}
    for suffix in (".csv", ".tsv", ".xlsx", ".parquet", ".jsonl"):
        data = write_table(TICKETS, tmp_path / f"tickets{suffix}")
        imported = import_table(data, text_column="message", label_column="category",
                                id_column="id" if with_id else None)
        project = write_project(imported, tmp_path / suffix[1:], test_size=0.25, seed=3)
        files = [read_jsonl(project.test_path), read_jsonl(project.train_path)]
        first_ids[suffix] = next(row["example_id"] for row in files[0] + files[1]
                                 if row["text"] == TICKETS["message"][0])
        if not with_id:  # made ids say where the row is, which differs by format (see the next test)
            files = [[{key: value for key, value in row.items() if key != "example_id"} for row in rows]
                     for rows in files]
        projects[suffix] = (yaml.safe_load(project.task_path.read_text()), *files)
    first = projects[".csv"]
    assert all(found == first for found in projects.values())
    task, test, pool = first
    assert task["name"] == "tickets" and task["kind"] == "classification"
    assert [label["name"] for label in task["labels"]] == ["billing", "bug", "other"]
    assert all(label["definition"] == "" for label in task["labels"])
    assert len(test) == 5 and len(pool) == 15
    # Stratified: every label is in both files; the files keep the file's row order.
    assert {row["label"] for row in test} == {row["label"] for row in pool} == {"billing", "bug", "other"}
    texts = [row["text"] for row in pool]
    assert texts == sorted(texts, key=lambda text: int(text.split()[2]))
    assert first_ids == ({suffix: "t1" for suffix in first_ids} if with_id else
                         {".csv": "row-2", ".tsv": "row-2", ".xlsx": "row-2", ".parquet": "row-1", ".jsonl": "row-1"})


def test_the_split_is_seeded(tmp_path):
    imported = import_table(write_table(TICKETS, tmp_path / "t.csv"), text_column="message", label_column="category")
    first = split_dataset(imported.dataset, imported.task, test_size=0.3, seed=1)
    again = split_dataset(imported.dataset, imported.task, test_size=0.3, seed=1)
    other = split_dataset(imported.dataset, imported.task, test_size=0.3, seed=2)
    assert list(first.test["example_id"]) == list(again.test["example_id"])
    assert list(first.test["example_id"]) != list(other.test["example_id"])
    assert len(first.test) == 6  # ceil(0.3 * 20)
    assert len(split_dataset(imported.dataset, imported.task, test_size=7).test) == 7
    # 0.55 of 100 rows is 55, though 0.55 * 100 is 55.00000000000001 in floating point.
    hundred = pd.concat([imported.dataset] * 5, ignore_index=True).assign(example_id=[f"e{n}" for n in range(100)])
    assert len(split_dataset(hundred, imported.task, test_size=0.55).test) == 55


def test_made_ids_say_where_the_row_is_in_the_file(tmp_path):
    # The row a spreadsheet shows (its header is on row 1), so that a user finds row-7 on row 7.
    imported = import_table(write_table(TICKETS, tmp_path / "t.xlsx"), text_column="message", label_column="category")
    assert list(imported.dataset["example_id"][:3]) == ["row-2", "row-3", "row-4"]
    assert imported.locations[:2] == ("row 2", "row 3")
    # A JSONL file's line, blank lines counted.
    path = tmp_path / "t.jsonl"
    path.write_text('{"t": "a", "l": "x"}\n\n{"t": "b", "l": "y"}\n', encoding="utf-8")
    imported = import_table(path, text_column="t", label_column="l")
    assert list(imported.dataset["example_id"]) == ["row-1", "row-3"] and imported.locations == ("line 1", "line 3")


def test_numeric_labels_are_kept_as_their_text(tmp_path):
    frame = pd.DataFrame({"text": [f"review {n}" for n in range(8)], "stars": [1, 5, 1, 5, 3, 3, 5, 1]})
    for suffix in (".csv", ".xlsx", ".parquet", ".jsonl"):
        imported = import_table(write_table(frame, tmp_path / f"stars{suffix}"), text_column="text",
                                label_column="stars")
        assert imported.task.label_names == ("1", "3", "5")
        assert list(imported.dataset["label"][:2]) == ["1", "5"]
    # A spreadsheet that stores them as 1.0 still gives "1"; 0.5 stays "0.5".
    floats = pd.DataFrame({"text": ["a", "b", "c", "d"], "score": [1.0, 0.0, 0.5, 1.0]})
    imported = import_table(write_table(floats, tmp_path / "floats.xlsx"), text_column="text", label_column="score")
    assert imported.task.label_names == ("0", "0.5", "1")
    # The written task quotes them, so that load_task reads text, not numbers.
    project = write_project(imported, tmp_path / "out", test_size=1)
    assert load_task(project.task_path).label_names == ("0", "0.5", "1")


def test_csv_cells_stay_as_written(tmp_path):
    path = tmp_path / "codes.csv"
    path.write_text("id,text,code\n007,first,01\n008,second,1.0\n009,third,01\n010,fourth,1.0\n", encoding="utf-8")
    imported = import_table(path, text_column="text", label_column="code", id_column="id")
    assert imported.task.label_names == ("01", "1.0")
    assert list(imported.dataset["example_id"]) == ["007", "008", "009", "010"]


# --- multi-label ----------------------------------------------------------------------------

TOPICS = pd.DataFrame({
    "review": ["fees are high and the app crashes", "love the budgeting", "crash after update", "fees again",
               "nothing to say", "budget tool and fees"],
    "topics": ["fees; bugs", "budgeting", "bugs", "fees", "", "budgeting;fees"],
})


def test_multilabel_from_a_delimiter(tmp_path):
    imported = import_table(write_table(TOPICS, tmp_path / "topics.csv"), text_column="review", label_column="topics",
                            sep=";")
    assert str(imported.task.kind) == "multilabel"  # --sep implies it
    assert imported.task.label_names == ("budgeting", "bugs", "fees")
    assert list(imported.dataset["labels"]) == [["bugs", "fees"], ["budgeting"], ["bugs"], ["fees"], [],
                                                ["budgeting", "fees"]]
    assert dict(imported.counts) == {"budgeting": 2, "bugs": 2, "fees": 3}


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".csv"])
def test_multilabel_from_a_list_column(tmp_path, suffix):
    frame = TOPICS.assign(topics=[[part.strip() for part in cell.split(";") if part.strip()]
                                  for cell in TOPICS["topics"]])
    if suffix == ".csv":  # a CSV holds the lists as JSON text
        frame = frame.assign(topics=[json.dumps(labels) for labels in frame["topics"]])
    imported = import_table(write_table(frame, tmp_path / f"topics{suffix}"), text_column="review",
                            label_column="topics", kind="multilabel")
    assert imported.task.label_names == ("budgeting", "bugs", "fees")
    assert imported.dataset["labels"][0] == ["bugs", "fees"]


def test_a_delimited_cell_without_sep_says_to_pass_it(tmp_path):
    with pytest.raises(DatasetError, match=r"row 2 \(example_id 'row-2'\): column 'topics' holds 'fees; bugs'.*--sep"):
        import_table(write_table(TOPICS, tmp_path / "topics.csv"), text_column="review", label_column="topics",
                     kind="multilabel")


# --- NER ------------------------------------------------------------------------------------

def entities(dataset):
    return [[(text[span["start"]:span["end"]], span["label"]) for span in spans]
            for text, spans in zip(dataset["text"], dataset["spans"])]


EXPECTED_ENTITIES = [[("Aspirin", "DRUG"), ("severe headache", "AE")], [("ibuprofen", "DRUG")], []]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_ner_from_character_offsets(tmp_path, suffix):
    texts = ["Aspirin gave me a severe headache.", "I took ibuprofen.", "No problems at all."]
    spans = [[{"start": 0, "end": 7, "label": "DRUG"}, {"start": 18, "end": 33, "label": "AE"}],
             [{"start": 7, "end": 16, "label": "DRUG"}], []]
    frame = pd.DataFrame({"note": texts, "entities": spans if suffix == ".jsonl" else [json.dumps(s) for s in spans]})
    imported = import_table(write_table(frame, tmp_path / f"notes{suffix}"), text_column="note",
                            label_column="entities", kind="ner")
    assert imported.task.label_names == ("AE", "DRUG")
    assert entities(imported.dataset) == EXPECTED_ENTITIES


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_ner_from_iob_token_columns(tmp_path, suffix):
    tokens = [["Aspirin", "gave", "me", "a", "severe", "headache", "."], ["I", "took", "ibuprofen", "."],
              ["No", "problems", "at", "all", "."]]
    tags = [["B-DRUG", "O", "O", "O", "B-AE", "I-AE", "O"], ["O", "O", "B-DRUG", "O"], ["O"] * 5]
    frame = pd.DataFrame({"tokens": tokens, "tags": tags})
    if suffix == ".csv":  # space-separated strings
        frame = frame.map(" ".join)
    imported = import_table(write_table(frame, tmp_path / f"tagged{suffix}"), text_column="tokens",
                            label_column="tags", kind="ner")
    assert imported.dataset["text"][0] == "Aspirin gave me a severe headache ."
    assert entities(imported.dataset) == EXPECTED_ENTITIES


def test_iob1_style_and_bad_tags():
    # An I- tag after O or after another type starts an entity (IOB1); B- always starts one.
    text, spans, problems = iob_to_spans(["New", "York", "Paris", "Rome"], ["I-LOC", "I-LOC", "B-LOC", "I-ORG"])
    assert [(text[s["start"]:s["end"]], s["label"]) for s in spans] == [("New York", "LOC"), ("Paris", "LOC"),
                                                                          ("Rome", "ORG")]
    assert problems == []
    assert "not O, B-<type> or I-<type>" in iob_to_spans(["x"], ["S-LOC"])[2][0]


CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O

BRUSSELS NNP B-NP B-LOC
"""


def test_ner_from_a_conll_file(tmp_path):
    path = tmp_path / "news.conll"
    path.write_text(CONLL, encoding="utf-8")
    frame = read_conll(path)
    assert list(frame["line"]) == [3, 9, 14]
    imported = import_table(path)
    assert str(imported.task.kind) == "ner" and imported.task.label_names == ("LOC", "MISC", "ORG", "PER")
    assert list(imported.dataset["example_id"]) == ["sentence-1", "sentence-2", "sentence-3"]
    assert list(imported.dataset["text"]) == ["EU rejects German call .", "Peter Blackburn", "BRUSSELS"]
    assert entities(imported.dataset) == [[("EU", "ORG"), ("German", "MISC")], [("Peter Blackburn", "PER")],
                                          [("BRUSSELS", "LOC")]]


def test_a_conll_line_without_a_tag_is_named(tmp_path):
    path = tmp_path / "bad.conll"
    path.write_text("EU B-ORG\nrejects\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="line 2: 'rejects' has one field"):
        import_table(path)


# --- refusals -------------------------------------------------------------------------------

def csv_file(text):
    def write(folder):
        path = folder / "data.csv"
        path.write_text(text, encoding="utf-8")
        return path
    return write


def txt_file(folder):
    path = folder / "data.txt"
    path.write_text("text,label\n", encoding="utf-8")
    return path


def xlsx_file(frame):
    return lambda folder: write_table(frame, folder / "data.xlsx")


BAD_FILES = [
    pytest.param(csv_file("id,text,label\na,hello,x\nb,,y\nc,bye,x\n"), {"id_column": "id"},
                 [r"row 3 \(example_id 'b'\): column 'text' is empty"], id="empty text"),
    pytest.param(xlsx_file(pd.DataFrame({"text": ["hello", None, "bye"], "label": ["x", "y", "x"]})), {},
                 [r"row 3 \(example_id 'row-3'\): column 'text' is missing"], id="missing text (Excel)"),
    pytest.param(csv_file("id,text,label\na,one,x\nb,two,y\na,three,x\n"), {"id_column": "id"},
                 [r"row 4 \(example_id 'a'\): duplicate id in column 'id', first used in row 2"], id="duplicate id"),
    pytest.param(csv_file(""), {}, [r"data.csv is empty \(0 bytes\)"], id="empty file"),
    pytest.param(csv_file("text,label\n"), {}, [r"data.csv has a header but no rows"], id="header only"),
    pytest.param(csv_file("text,label\na,spam\nb,spam\nc,spam\n"), {},
                 [r"column 'label' has only one label, 'spam' \(3 rows\)", "a classifier needs at least two labels"],
                 id="one class"),
    pytest.param(csv_file("message,category\na,x\nb,y\n"), {},
                 [r"no column 'text' \(the text column\) and no column 'label'",
                  r"its columns are \['message', 'category'\]"], id="unknown columns"),
    pytest.param(csv_file("text,Label\na,x\nb,y\n"), {}, [r"did you mean 'Label'\?"], id="column of another case"),
    pytest.param(csv_file("text,label\na,x\nb,y\nc,\n"), {}, [r"row 4 \(example_id 'row-4'\): column 'label'"],
                 id="empty label"),
    pytest.param(csv_file("text,label\na,x\nb,(none)\n"), {}, [r"'\(none\)' is reserved"], id="reserved label"),
    pytest.param(txt_file, {},
                 [r"unsupported file type '.txt'"], id="unknown file type"),
]


@pytest.mark.parametrize(("make", "options", "messages"), BAD_FILES)
def test_bad_files_are_refused_with_the_reason(tmp_path, make, options, messages):
    path = make(tmp_path)
    with pytest.raises((TableImportError, DatasetError)) as refused:
        import_table(path, text_column="text", label_column="label", **options)
    for message in messages:
        assert re.search(message, str(refused.value)), str(refused.value)


def test_nothing_is_written_when_the_input_is_refused(tmp_path, capsys):
    data = tmp_path / "one.csv"
    data.write_text("text,label\na,spam\nb,spam\n", encoding="utf-8")
    assert main(["init", str(data), "--text", "text", "--label", "label", "--out", str(tmp_path / "out")]) == 2
    assert "a classifier needs at least two labels" in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["one.csv"]


def test_existing_files_are_refused_unless_overwrite(tmp_path):
    imported = import_table(write_table(TICKETS, tmp_path / "t.csv"), text_column="message", label_column="category")
    out = tmp_path / "out"
    write_project(imported, out, seed=1)
    (out / "notes.md").write_text("mine")
    before = (out / "test.jsonl").read_text()
    with pytest.raises(ProjectError, match="already holds task.yaml.*--overwrite"):
        write_project(imported, out, seed=2)
    assert (out / "test.jsonl").read_text() == before
    write_project(imported, out, seed=2, overwrite=True)
    assert (out / "test.jsonl").read_text() != before
    assert (out / "notes.md").read_text() == "mine"  # other files are left alone
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out", "t.csv"]  # no staging folder left


def test_rare_labels_stay_in_the_pool_and_are_named(tmp_path):
    frame = pd.DataFrame({"text": [f"t{n}" for n in range(9)], "label": ["a"] * 4 + ["b"] * 4 + ["rare"]})
    imported = import_table(write_table(frame, tmp_path / "r.csv"), text_column="text", label_column="label")
    split = split_dataset(imported.dataset, imported.task, test_size=2, seed=0)
    assert "rare" in set(split.train["label"]) and "rare" not in set(split.test["label"])
    assert set(split.test["label"]) == {"a", "b"}
    assert any("'rare'" in note and "row-10" in note for note in split.notes)
    with pytest.raises(ProjectError, match="both need at least one"):
        split_dataset(imported.dataset, imported.task, test_size=9)


def test_a_test_set_too_small_for_every_label_is_split_at_random_and_says_so(tmp_path):
    imported = import_table(write_table(TICKETS, tmp_path / "t.csv"), text_column="message", label_column="category")
    split = split_dataset(imported.dataset, imported.task, test_size=2, seed=0)  # 3 labels
    assert len(split.test) == 2 and len(split.train) == 18
    assert split.notes and "random, not stratified" in split.notes[0]


# --- the command line -----------------------------------------------------------------------

def test_init_on_the_command_line_writes_a_config_that_run_loads(tmp_path, capsys):
    data = tmp_path / "tickets.csv"
    data.write_text("ticket,body,team\n" + "".join(
        f"T-{n},customer message {n},{['billing', 'tech', '2'][n % 3]}\n" for n in range(1, 31)), encoding="utf-8")
    out = tmp_path / "project"
    assert main(["init", str(data), "--text", "body", "--label", "team", "--id", "ticket", "--test-size", "0.2",
                 "--seed", "5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "3 labels" in printed and "billing" in printed
    assert f"workbench run {out.as_posix()}/experiment.yaml" in printed
    assert sorted(path.name for path in out.iterdir()) == sorted(PROJECT_FILES)

    experiment = load_experiment(out / "experiment.yaml")
    assert experiment.name == "tickets" and experiment.model_config == {"kind": "embedded"}
    assert experiment.task.label_names == ("2", "billing", "tech")
    assert len(experiment.dataset) == 6 and len(experiment.examples) == 24
    assert set(experiment.dataset["example_id"]).isdisjoint(experiment.examples["example_id"])
    assert experiment.variants == ["zero_shot", "few_shot", "few_shot_similar"]
    assert load_dataset(out / "train.jsonl", load_task(out / "task.yaml"))["label"].value_counts().to_dict() == {
        "billing": 8, "tech": 8, "2": 8}

    # A second init into the same folder is refused; --overwrite replaces it.
    assert main(["init", str(data), "--text", "body", "--label", "team", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["init", str(data), "--text", "body", "--label", "team", "--out", str(out), "--overwrite"]) == 0
    assert load_experiment(out / "experiment.yaml").dataset["example_id"].str.startswith("row-").all()


def test_init_without_text_and_label_columns_lists_the_columns(tmp_path, capsys):
    data = write_table(TICKETS, tmp_path / "t.csv")
    assert main(["init", str(data), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--text COLUMN --label COLUMN" in err and "['id', 'message', 'category']" in err
