"""No key is ever written down: plant recognisable keys, go down the whole demo path with a model that
really uses one (run, report, push to Argilla, a notebook), then look for them in every file written.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import nbformat
import pytest
import yaml
from nbclient import NotebookClient

from workbench.testing.openai_stub import StubConfig, StubServer

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_planted_keys_reach_the_endpoint_and_no_file(tmp_path, argilla, monkeypatch):
    endpoint_key = f"sk-PLANTED-{uuid.uuid4().hex}"
    openai_key = f"sk-PLANTED-OPENAI-{uuid.uuid4().hex}"
    monkeypatch.setenv("WORKBENCH_TEST_KEY", endpoint_key)
    monkeypatch.setenv("OPENAI_API_KEY", openai_key)
    monkeypatch.setenv("ARGILLA_API_URL", argilla["info"].api_url)
    monkeypatch.setenv("ARGILLA_API_KEY", argilla["keys"]["owner"])
    stub = StubServer(StubConfig())
    stub.start_in_thread()
    try:
        config = tmp_path / "experiment.yaml"
        config.write_text(yaml.safe_dump({
            "name": "planted", "task": str(ROOT / "data/complaint_triage/task.yaml"),
            "dataset": str(ROOT / "data/complaint_triage/test.jsonl"),
            "examples": str(ROOT / "data/complaint_triage/train.jsonl"), "limit": 6,
            "variants": ["zero_shot", "few_shot"], "runs_dir": str(tmp_path / "runs"),
            "model": {"kind": "openai_compatible", "model": "stub-model", "base_url": stub.base_url,
                      "api_key_env": "WORKBENCH_TEST_KEY", "structured_output": "none"},
        }))
        cli = [sys.executable, "-m", "workbench.cli"]
        # -v logs every retry and request detail, so the logs are worth scanning too.
        for command in (["-v", "run", str(config), "--no-progress"],
                        ["-v", "push", str(tmp_path / "runs" / "planted"), "--suggest-from", "zero_shot"]):
            done = subprocess.run([*cli, *command], capture_output=True, text=True, env=dict(os.environ), timeout=600,
                                  cwd=tmp_path)
            assert done.returncode in (0, 1), done.stderr  # 1: some answers failed, still a finished run
            (tmp_path / f"{command[1]}.log").write_text(done.stdout + done.stderr)

        notebook = nbformat.read(ROOT / "notebooks" / "01_prompt_variants.ipynb", as_version=4)
        index = next(i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", []))
        notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(
            f"CONFIG = {str(config)!r}\nLIMIT = 4\nRUN_DIR = {str(tmp_path / 'notebook_run')!r}"))
        NotebookClient(notebook, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
        nbformat.write(notebook, tmp_path / "executed.ipynb")
    finally:
        stub.stop_thread()

    # The key really went to the endpoint it belongs to, so finding it nowhere else means something.
    assert f"Bearer {endpoint_key}" in stub.authorizations
    assert all(header in (None, f"Bearer {endpoint_key}") for header in stub.authorizations)

    written = [path for path in [*tmp_path.rglob("*"), *Path(argilla["home"]).rglob("*")] if path.is_file()]
    assert {"predictions.parquet", "report.html", "cache.sqlite", "executed.ipynb", "push.log"} <= {p.name for p in written}
    for path in written:
        content = path.read_bytes()
        for key in (endpoint_key, openai_key):
            assert key.encode() not in content, f"a planted key was written to {path}"
