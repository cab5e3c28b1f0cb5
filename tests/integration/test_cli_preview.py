"""`workbench preview <config>` prints the rendered messages: run as a real command (`python -m
workbench.cli`) for every variant, and through `main` in this process for the selections and refusals."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from workbench.cli.main import main
from workbench.core.task import load_task

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "complaint_triage"
TASK = load_task(DATA / "task.yaml")
FIRST_ID = json.loads((DATA / "test.jsonl").read_text(encoding="utf-8").splitlines()[0])["example_id"]
TRAIN_TEXTS = [json.loads(line)["text"] for line in (DATA / "train.jsonl").read_text(encoding="utf-8").splitlines()
               if line.strip()]
# A mapping without a name is named after its ingredients.
VARIANTS = ["zero_shot", "definitions", {"few_shot": 2, "example_selection": "similar"}]
NAMES = ["zero_shot", "definitions", "few_shot2_similar"]
HEADER = re.compile(r"^===== (\S+) / (\S+) =====$", re.MULTILINE)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "preview.yaml"
    path.write_text(yaml.safe_dump({
        "name": "preview_demo", "task": str(DATA / "task.yaml"), "dataset": str(DATA / "test.jsonl"),
        "examples": str(DATA / "train.jsonl"), "variants": VARIANTS,
    }))
    return path


def preview(config: Path, *args: str) -> subprocess.CompletedProcess:
    """`workbench preview` as a user runs it: `python -m workbench.cli` in a process of its own."""
    return subprocess.run([sys.executable, "-m", "workbench.cli", "preview", str(config), *args],
                          check=False, capture_output=True, text=True, cwd=config.parent, timeout=300)


@pytest.fixture
def preview_here(capsys):
    """`workbench preview` through `main` in this process: the same code as `preview` (whose own
    test keeps the entry point covered), without a new interpreter's imports, about 1.5 s a call."""
    def run(config: Path, *args: str) -> subprocess.CompletedProcess:
        capsys.readouterr()
        code = main(["preview", str(config), *args])
        out = capsys.readouterr()
        return subprocess.CompletedProcess(["workbench", "preview"], code, out.out, out.err)
    return run


def sections(stdout: str) -> dict[tuple[str, str], str]:
    """The printed blocks by (variant, example_id)."""
    headers = list(HEADER.finditer(stdout))
    ends = [match.start() for match in headers[1:]] + [len(stdout)]
    return {(match.group(1), match.group(2)): stdout[match.end():end] for match, end in zip(headers, ends)}


def system_and_user(block: str) -> tuple[str, str]:
    assert block.count("--- system ---") == 1 and block.count("--- user ---") == 1, block
    system, _, user = block.partition("--- user ---")
    assert system.strip().startswith("--- system ---")
    return system, user


def definition_starts() -> list[str]:
    return [label.definition.strip()[:60] for label in TASK.labels]


def test_every_variant_is_previewed_for_the_first_example(config):
    done = preview(config)
    assert done.returncode == 0, done.stderr
    blocks = sections(done.stdout)
    assert list(blocks) == [(name, FIRST_ID) for name in NAMES]
    first_text = json.loads((DATA / "test.jsonl").read_text(encoding="utf-8").splitlines()[0])["text"]
    for block in blocks.values():
        system, user = system_and_user(block)
        assert first_text in user and first_text not in system
    # Only the definitions variant shows the task's label definitions.
    zero_shot, _ = system_and_user(blocks[("zero_shot", FIRST_ID)])
    with_definitions = blocks[("definitions", FIRST_ID)]
    for start in definition_starts():
        assert start in with_definitions and start not in zero_shot


def test_variant_selects_by_the_variants_name(config, preview_here):
    done = preview_here(config, "--variant", "definitions")
    assert done.returncode == 0, done.stderr
    assert list(sections(done.stdout)) == [("definitions", FIRST_ID)]
    system, _ = system_and_user(sections(done.stdout)[("definitions", FIRST_ID)])
    assert all(start in system for start in definition_starts())

    done = preview_here(config, "--variant", "few_shot2_similar", "--example", "ct-0075")
    assert done.returncode == 0, done.stderr
    blocks = sections(done.stdout)
    assert list(blocks) == [("few_shot2_similar", "ct-0075")]
    _, user = system_and_user(blocks[("few_shot2_similar", "ct-0075")])
    assert "QuickLoanz" in user
    assert sum(text in user for text in TRAIN_TEXTS) == 2  # the two most similar training examples


@pytest.mark.parametrize(
    ("args", "named"),
    [(["--variant", "nope"], "'nope'"),
     (["--variant", "few_shot"], "'few_shot'"),  # a name, not ingredients: few_shot is not in the config
     (["--example", "ct-9999"], "'ct-9999'")],
)
def test_an_unknown_variant_or_example_exits_2_naming_it(config, args, named, preview_here):
    done = preview_here(config, *args)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and named in done.stderr
    assert done.stdout == ""
