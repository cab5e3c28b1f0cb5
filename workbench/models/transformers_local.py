"""A causal LM that transformers loads from a local folder, run in-process (model kind ``transformers``).

`TransformersModel` is the runtime: a transformers causal LM (or a peft model around one) and its
tokenizer behind the `Model` protocol, greedy by default, one request at a time. Answers are not
constrained to the schema here (transformers has no grammar decoding built in); the task's parser
reads them as it reads any model's. It also serves soft prompts, which llama.cpp cannot run.

`LocalTransformersModel` is what the registry's ``kind: transformers`` builds: the folder
``base_model`` (what ``save_pretrained`` or ``huggingface-cli download --local-dir`` writes:
``config.json``, the weights, the tokenizer with a chat template), checked when it is built, its
weights loaded on the first call (a run answered from the cache never loads them), optionally
with a peft adapter folder (``adapter``: LoRA or a soft prompt, what `workbench finetune` trains).

Identity. A folder is known by its resolved name and `folder_sha256`: the SHA-256 of every
top-level file that decides its answers (`HASHED_SUFFIXES`: the config, generation config,
tokenizer files, chat template and the weights), each file's name, size and own SHA-256. Each
file is hashed once and the result kept in ``<WORKBENCH_CACHE or ~/.cache/workbench>/file_sha256.json``
under its resolved path, size and modification time, so a multi-gigabyte model is read in full
only the first time (about 1 to 2 GB/s) and after it changes. A cheaper hash of the config and
the weights' sizes was rejected: a fine-tuned or merged checkpoint of a base has the same config
and the same sizes, and an adapter or a cache entry must tell them apart.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from workbench.core.user_cache import cache_dir
from workbench.models.base import ChatRequest, Completion, FatalModelError

HASHED_SUFFIXES = (".json", ".jinja", ".model", ".txt", ".safetensors", ".bin")
WEIGHT_SUFFIXES = (".safetensors", ".bin")
DTYPES = ("float32", "bfloat16", "float16")


class ModelFolderError(FatalModelError):
    """A model folder is missing, or is not a transformers causal LM with a chat template; the
    message names the path and says what to do."""


def pick_device(device: str | None = None) -> str:
    """`device` when given (not "auto"), else "cuda" when a GPU is visible, else "cpu"."""
    if device and device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class TransformersModel:
    """`model` (a transformers causal LM, or a peft model around one) and its `tokenizer` as a
    `Model`. `name` and `adapter` (e.g. the adapter's data hash) make up its identity."""

    max_concurrency = 1

    def __init__(self, model: Any, tokenizer: Any, *, name: str, adapter: str | None = None,
                 adapter_sha256: str | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.adapter = adapter
        self.adapter_sha256 = adapter_sha256
        config = getattr(model, "peft_config", {}).get("default")
        self.soft_prompt = str(getattr(config, "peft_type", "")).endswith("PROMPT_TUNING")
        self._lock = threading.Lock()

    @property
    def identity(self) -> dict[str, Any]:
        """The model, and for a tuned one its training data hash and its weights' SHA-256: two
        trainings on the same rows (another method, epochs or seed) never share cache entries."""
        identity: dict[str, Any] = {"kind": "transformers", "model": self.name}
        if self.adapter:
            identity["adapter"] = self.adapter
        if self.adapter_sha256:
            identity["adapter_sha256"] = self.adapter_sha256
        return identity

    async def complete(self, request: ChatRequest) -> Completion:
        return await asyncio.to_thread(self.complete_sync, request)

    def complete_sync(self, request: ChatRequest) -> Completion:
        import torch

        prompt = self.tokenizer.apply_chat_template(list(request.messages), tokenize=False, add_generation_prompt=True)
        encoded = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        device = next(self.model.parameters()).device
        encoded = {key: value.to(device) for key, value in encoded.items()}
        options = request.options
        sampling: dict[str, Any] = {"do_sample": options.temperature > 0}
        if options.temperature > 0:
            sampling.update(temperature=options.temperature, top_p=options.top_p or 1.0)
            if options.seed is not None:
                torch.manual_seed(options.seed)
        pad = self.tokenizer.pad_token_id or self.tokenizer.eos_token_id
        with self._lock, torch.no_grad():
            started = time.perf_counter()
            if self.soft_prompt:
                # peft's own generate() with the key-value cache answers garbled text with a soft
                # prompt (transformers 5, peft 0.21), and without the cache every token is a whole
                # forward pass. So: the soft prompt's embeddings and then the prompt's token
                # embeddings, as peft's forward builds them, given to the base model, cache on.
                tokens = self.model.word_embeddings(encoded["input_ids"])
                inputs = torch.cat([self.model.get_prompt(batch_size=1).to(tokens.dtype), tokens], dim=1)
                new = self.model.get_base_model().generate(
                    inputs_embeds=inputs, attention_mask=torch.ones(inputs.shape[:2], dtype=torch.long, device=device),
                    max_new_tokens=options.max_tokens, pad_token_id=pad, **sampling)[0]  # the new tokens only
            else:
                output = self.model.generate(**encoded, max_new_tokens=options.max_tokens, pad_token_id=pad,
                                             **sampling)
                new = output[0][encoded["input_ids"].shape[1]:]
            latency = time.perf_counter() - started
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        finished = len(new) and int(new[-1]) == self.tokenizer.eos_token_id
        return Completion(text=text.strip(), tokens_in=int(encoded["input_ids"].shape[1]), tokens_out=len(new),
                          finish_reason="stop" if finished or len(new) < options.max_tokens else "length",
                          latency_s=latency)


def check_model_folder(folder: str | Path) -> Path:
    """The resolved `folder` when it holds a transformers model with a chat template:
    ``config.json``, weights (``*.safetensors`` or ``*.bin``) and a chat template (in
    ``tokenizer_config.json``, ``chat_template.jinja`` or ``chat_template.json``). Reads no
    weights. Raises ModelFolderError naming the path and what to do otherwise."""
    given = Path(folder).expanduser()
    path = given.resolve()
    where = f"{given}" + (f" (resolved: {path})" if str(path) != str(given) else "")
    how = ("base_model must be a local folder as transformers' save_pretrained writes it (config.json, weights, "
           "tokenizer): save one with model.save_pretrained(folder) and tokenizer.save_pretrained(folder), or fetch "
           "one where there is internet with `huggingface-cli download <repo> --local-dir <folder>`")
    if not path.exists():
        raise ModelFolderError(f"model folder {where} does not exist: {how}. A relative path is read from the "
                               "working directory")
    if not path.is_dir():
        hint = " (a GGUF file runs with kind: embedded and model_path)" if path.suffix == ".gguf" else ""
        raise ModelFolderError(f"model folder {where} is a file, not a folder{hint}: {how}")
    if not (path / "config.json").is_file():
        raise ModelFolderError(f"model folder {where} holds no config.json, so it is not a transformers model "
                               f"folder: {how}")
    if not any(p.suffix in WEIGHT_SUFFIXES for p in path.iterdir() if p.is_file()):
        raise ModelFolderError(f"model folder {where} holds config.json but no weights (*.safetensors or *.bin): "
                               f"{how}")
    if not _has_chat_template(path):
        raise ModelFolderError(
            f"model folder {where} has no chat template (none in tokenizer_config.json, no chat_template.jinja): the "
            "workbench sends chat messages, so the model needs one. Use an instruct/chat model, or set "
            "tokenizer.chat_template to the template its makers document and tokenizer.save_pretrained(folder)")
    return path


def _has_chat_template(path: Path) -> bool:
    if (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file():
        return True
    config = path / "tokenizer_config.json"
    if not config.is_file():
        return False
    try:
        return bool(json.loads(config.read_text(encoding="utf-8")).get("chat_template"))
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False


def folder_identity(folder: str | Path) -> dict[str, str]:
    """What names a model folder in caches and adapter records: ``kind`` "transformers",
    ``file`` (the folder's resolved name) and ``sha256`` (`folder_sha256`). The folder must pass
    `check_model_folder`."""
    path = check_model_folder(folder)
    return {"kind": "transformers", "file": path.name, "sha256": folder_sha256(path)}


def folder_sha256(folder: str | Path) -> str:
    """SHA-256 over the top-level files of `folder` whose names end in `HASHED_SUFFIXES`, in name
    order: each file's name, size and SHA-256 (`cached_file_sha256`). Hidden files are left out."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).resolve().iterdir()):
        if path.is_file() and not path.name.startswith(".") and path.name.endswith(HASHED_SUFFIXES):
            digest.update(f"{path.name}\0{path.stat().st_size}\0{cached_file_sha256(path)}\n".encode())
    return digest.hexdigest()


_HASHES_LOCK = threading.Lock()


def hash_cache_path() -> Path:
    """Where file hashes are kept: ``file_sha256.json`` in the user's cache folder (`cache_dir`)."""
    return cache_dir() / "file_sha256.json"


def cached_file_sha256(path: str | Path) -> str:
    """SHA-256 of the file at `path`, read in blocks, or the one recorded for it in
    `hash_cache_path` when its resolved path, size and modification time are the ones recorded.
    A new hash is written to that file (best effort: an unwritable cache only costs a re-read)."""
    path = Path(path).resolve()
    stat = path.stat()
    key, stamp = str(path), [stat.st_size, stat.st_mtime_ns]
    store = hash_cache_path()
    with _HASHES_LOCK:
        known = _read_hashes(store)
        entry = known.get(key)
        if isinstance(entry, dict) and entry.get("stamp") == stamp and entry.get("sha256"):
            return str(entry["sha256"])
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    with _HASHES_LOCK:
        known = _read_hashes(store)  # again: another process may have added its own meanwhile
        known[key] = {"stamp": stamp, "sha256": value}
        try:
            store.parent.mkdir(parents=True, exist_ok=True)
            partial = store.with_name(f"{store.name}.{os.getpid()}.partial")
            partial.write_text(json.dumps(known, indent=0), encoding="utf-8")
            os.replace(partial, store)
        except OSError:
            pass
    return value


def _read_hashes(store: Path) -> dict[str, Any]:
    try:
        found = json.loads(store.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return found if isinstance(found, dict) else {}


def load_model_folder(folder: str | Path, *, device: str | None = None,
                      dtype: str = "float32") -> tuple[Any, Any]:
    """(model, tokenizer) of the transformers folder `folder` (`check_model_folder`), the model
    with `AutoModelForCausalLM.from_pretrained` in `dtype` (one of `DTYPES`) on `device`
    (`pick_device`: "auto" or None is CUDA when visible, else CPU), in eval mode; the tokenizer with
    `AutoTokenizer.from_pretrained`, its pad token the end-of-sequence token when it names none.
    Nothing is downloaded (``local_files_only``). Raises ModelFolderError when the folder is not
    usable or `device` is "cuda" without a GPU."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = check_model_folder(folder)
    if dtype not in DTYPES:
        raise ModelFolderError(f"dtype {dtype!r} for {path}: use one of {', '.join(DTYPES)}")
    where = pick_device(device)
    if where.startswith("cuda") and not torch.cuda.is_available():
        raise ModelFolderError(f"device {where} for {path}, but no GPU is visible to torch: use device: auto or cpu")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if not getattr(tokenizer, "chat_template", None):
        raise ModelFolderError(f"the tokenizer in {path} has no chat template: use an instruct/chat model, or set "
                               "tokenizer.chat_template and tokenizer.save_pretrained(folder)")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), local_files_only=True)
    return model.to(where).eval(), tokenizer


def adapter_identity(adapter: str | Path) -> dict[str, str]:
    """What names a peft adapter folder (``adapter_config.json``, ``adapter_model.safetensors``):
    ``name`` (its parent's and its own name, e.g. "lora/adapter"), ``sha256`` of its weights and,
    when the training record beside it (``../training.json``) has one, ``data_hash`` (the SHA-256
    of the rows it was trained on). Raises ModelFolderError when the folder is not an adapter."""
    path = Path(adapter).expanduser().resolve()
    weights = path / "adapter_model.safetensors"
    if not (path / "adapter_config.json").is_file() or not weights.is_file():
        raise ModelFolderError(f"adapter {adapter} is not a peft adapter folder (adapter_config.json and "
                               "adapter_model.safetensors): pass the adapter/ folder that `workbench finetune` or "
                               "train_adapter wrote")
    identity = {"name": f"{path.parent.name}/{path.name}", "sha256": cached_file_sha256(weights)}
    record = _training_record(path)
    if record.get("data_hash"):
        identity["data_hash"] = str(record["data_hash"])
    return identity


def _training_record(adapter: Path) -> dict[str, Any]:
    record = adapter.parent / "training.json"
    try:
        found = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}
    return found if isinstance(found, dict) else {}


class LocalTransformersModel:
    """The transformers model in the local folder `base_model` (`check_model_folder`), with the
    peft adapter folder `adapter` on top when given, as a `Model` (model kind ``transformers``).

    The folder (and the adapter) are checked and hashed when this is built, the weights loaded on
    the first call (or `load`), on `device` in `dtype` (`load_model_folder`). `identity`: ``kind``
    "transformers", ``model`` (the folder's resolved name), ``sha256`` (`folder_sha256`),
    ``dtype`` and, with an adapter, ``adapter`` (`adapter_identity`). The device is not in it (like
    llama.cpp's thread count): the same weights answer the same on either, up to rounding.

    Raises ModelFolderError when the folder or the adapter is unusable, or when the adapter's
    training record names another base than this folder (a LoRA adapter on the wrong base loads
    without complaint and answers nonsense)."""

    max_concurrency = 1

    def __init__(self, base_model: str | Path, *, device: str | None = None, dtype: str = "float32",
                 adapter: str | Path | None = None):
        self.folder = check_model_folder(base_model)
        self.device = device
        self.dtype = dtype
        self._identity: dict[str, Any] = {"kind": "transformers", "model": self.folder.name,
                                          "sha256": folder_sha256(self.folder), "dtype": dtype}
        self.adapter = Path(adapter).expanduser().resolve() if adapter else None
        if self.adapter is not None:
            self._identity["adapter"] = adapter_identity(self.adapter)
            trained_on = _training_record(self.adapter).get("base") or {}
            if trained_on.get("sha256") and trained_on["sha256"] != self._identity["sha256"]:
                raise ModelFolderError(
                    f"the adapter {self.adapter} was trained on {trained_on.get('file')} (sha256 "
                    f"{str(trained_on['sha256'])[:12]}...), not on {self.folder.name} (sha256 "
                    f"{self._identity['sha256'][:12]}...): serve it on the base it was trained on, or train it again "
                    "on this one")
        self._runtime: TransformersModel | None = None
        self._lock = threading.Lock()

    @property
    def identity(self) -> dict[str, Any]:
        return dict(self._identity)

    def load(self) -> TransformersModel:
        """Load the weights now (otherwise the first call does); returns the `TransformersModel`."""
        with self._lock:
            if self._runtime is None:
                model, tokenizer = load_model_folder(self.folder, device=self.device, dtype=self.dtype)
                if self.adapter is not None:
                    from peft import PeftModel

                    model = PeftModel.from_pretrained(model, str(self.adapter))
                self._runtime = TransformersModel(model, tokenizer, name=self.folder.name)
            return self._runtime

    async def complete(self, request: ChatRequest) -> Completion:
        return await asyncio.to_thread(self.complete_sync, request)

    def complete_sync(self, request: ChatRequest) -> Completion:
        return self.load().complete_sync(request)

