"""Fixtures that start the real things: the embedded model and llama.cpp's OpenAI-compatible server."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from workbench.core.data import load_dataset
from workbench.core.task import load_task
from workbench.models.llama_cpp import LlamaCppModel, embedded_model_path

# In CI a skip is a failure, and every run prints how many tests were skipped.
pytest_plugins = ["workbench.testing.ci_policy", "pytester"]

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode} before answering:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout_s} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def llama_cpp_server(models: list[dict], folder: Path):
    """llama-cpp-python's server started with a ``--config_file`` serving `models` (each a model
    entry: ``model``, ``model_alias``, optional ``lora_path``...) on a free port, its log in
    `folder`; yields its ``/v1`` URL and stops it afterwards."""
    port = free_port()
    config, log = folder / f"llama_server_{port}.json", folder / f"llama_server_{port}.log"
    config.write_text(json.dumps({"host": "127.0.0.1", "port": port, "models": models}))
    with served([sys.executable, "-m", "llama_cpp.server", "--config_file", str(config)], port, log) as url:
        yield url


@contextlib.contextmanager
def served(command: list[str], port: int, log: Path):
    """llama-cpp-python's server started with `command` (listening on `port`, its output in `log`);
    yields its ``/v1`` URL once it answers, and stops it afterwards."""
    with log.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/v1/models", process, timeout_s=120, log=log)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def complaint_task():
    return load_task(DATA / "complaint_triage" / "task.yaml")


@pytest.fixture(scope="session")
def complaint_test(complaint_task):
    return load_dataset(DATA / "complaint_triage" / "test.jsonl", complaint_task)


@pytest.fixture(scope="session")
def complaint_train(complaint_task):
    return load_dataset(DATA / "complaint_triage" / "train.jsonl", complaint_task)


@pytest.fixture(scope="session")
def ae_task():
    return load_task(DATA / "adverse_events" / "task.yaml")


@pytest.fixture(scope="session")
def ae_test(ae_task):
    return load_dataset(DATA / "adverse_events" / "test.jsonl", ae_task)


@pytest.fixture(scope="session")
def ae_train(ae_task):
    return load_dataset(DATA / "adverse_events" / "train.jsonl", ae_task)


@pytest.fixture(scope="session")
def embedded_model():
    """The embedded SmolLM2 in llama.cpp, loaded once per test session."""
    model = LlamaCppModel(n_threads=2)
    model.load()
    return model


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """llama.cpp's OpenAI-compatible server (llama-cpp-python[server]) serving the embedded GGUF."""
    port = free_port()
    log = tmp_path_factory.mktemp("llama_server") / "server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(embedded_model_path()), "--model_alias", "smollm2",
        "--host", "127.0.0.1", "--port", str(port), "--n_threads", "2", "--n_ctx", "4096",
    ]
    with served(command, port, log) as url:
        yield url


# Tiny transformers model folders (model kind `transformers`) for trainings that check mechanics.


def tiny_llama(folder: Path, tokenizer, seed: int) -> Path:
    """A two-layer Llama with random weights (seeded by `seed`) and `tokenizer`, saved in `folder`:
    a real transformers model folder that loads and trains in seconds, made here, never downloaded."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_folders(tmp_path_factory):
    """Two tiny Llama folders (other random weights, same tokenizer), built once per session."""
    from workbench.finetune.tokens import load_tokenizer

    tokenizer = load_tokenizer()  # the embedded SmolLM2's, with its chat template
    root = tmp_path_factory.mktemp("local_models")
    return tiny_llama(root / "tiny-llama", tokenizer, 0), tiny_llama(root / "tiny-llama-b", tokenizer, 1)


@pytest.fixture(scope="session")
def tiny_folder(tiny_folders):
    return tiny_folders[0]


# The embedded Argilla: one server for the whole session, shared by every test that talks to it.


@pytest.fixture(scope="session")
def argilla_home(tmp_path_factory):
    return tmp_path_factory.mktemp("argilla") / "home"


@pytest.fixture(scope="session")
def argilla(argilla_home):
    """The embedded Argilla started in a fresh home on a free port: {"info" (ServerInfo), "home",
    "port", "keys" (username -> API key), "credentials"}. Tests that stop it must start it again."""
    from workbench_argilla_embedded import start_server, stop_server
    from workbench_argilla_embedded.manage import load_credentials, missing_environment

    missing = missing_environment()
    if missing is not None:
        pytest.skip(missing)
    port = free_port()
    started = time.monotonic()
    info = start_server(home=argilla_home, port=port, quiet=True)
    print(f"\nembedded Argilla started in {time.monotonic() - started:.1f} s at {info.api_url}")
    credentials = load_credentials(argilla_home)
    keys = {user["username"]: user["api_key"] for user in credentials["users"]}
    try:
        yield {"info": info, "home": argilla_home, "port": port, "keys": keys, "credentials": credentials}
    finally:
        stop_server(argilla_home, quiet=True)
