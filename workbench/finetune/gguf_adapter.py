"""A peft LoRA adapter converted to llama.cpp's GGUF adapter format, with llama.cpp's own converter.

The tuned model then runs on the same runtime as its base (`LlamaCppModel(lora_path=...)`
in-process, or ``python -m llama_cpp.server --model <base gguf> --lora_path <adapter gguf>``), so a
before/after difference is the training and not the runtime.

The converter (``convert_lora_to_gguf.py``, with the ``conversion`` package and ``gguf-py`` it
imports) ships in the llama-cpp-python source distribution on PyPI, which is what the installed
llama.cpp was built from. `converter` fetches that exact version's source distribution from the
package index once (``pip download``), keeps only those files in a cache folder, and reuses them.
The converter reads the base model's configuration from a folder (`save_base_config` writes it
from the transformers-loaded model: ``config.json`` without the GGUF quantization entry, which
the converter refuses, and the tokenizer); the base weights are not needed. It runs in this
process (`run_converter`), with its own modules, and leaves the process as it found it.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import logging
import runpy
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.core.errors import WorkbenchError
from workbench.core.user_cache import cache_dir

CONVERTER = "convert_lora_to_gguf.py"
_KEEP = ("convert_lora_to_gguf.py", "convert_hf_to_gguf.py", "conversion/", "gguf-py/")


class AdapterConversionError(WorkbenchError, RuntimeError):
    """The adapter could not be converted; the message says why and what to do."""


def converter(folder: str | Path | None = None) -> Path:
    """Path of llama.cpp's LoRA converter for the installed llama-cpp-python, fetched on first use
    into `folder` (default: ``<cache_dir>/llama_cpp_convert/<version>``). Raises
    AdapterConversionError when llama-cpp-python is not installed or the package index cannot be
    reached."""
    try:
        version = importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError as error:
        raise AdapterConversionError("llama-cpp-python is not installed: run the README's set-up command") from error
    target = Path(folder) if folder else cache_dir() / "llama_cpp_convert" / version
    if (target / CONVERTER).exists():
        return target / CONVERTER
    with tempfile.TemporaryDirectory() as scratch:
        fetched = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
             "--dest", scratch, f"llama-cpp-python=={version}"], check=False, capture_output=True, text=True)
        archives = list(Path(scratch).glob("llama_cpp_python-*.tar.gz"))
        if fetched.returncode != 0 or not archives:
            raise AdapterConversionError(
                f"could not fetch the llama-cpp-python {version} source distribution, which holds llama.cpp's LoRA "
                f"converter, from the package index ({fetched.stderr.strip()[-500:]}); check the connection to PyPI, "
                f"or unpack that source distribution's vendor/llama.cpp into {target}")
        partial = Path(tempfile.mkdtemp(dir=target.parent if target.parent.exists() else None))
        with tarfile.open(archives[0]) as archive:
            for member in archive.getmembers():
                inside = member.name.split("/vendor/llama.cpp/", 1)
                if len(inside) == 2 and inside[1].startswith(_KEEP) and (member.isfile() or member.isdir()):
                    member.name = inside[1]
                    archive.extract(member, partial, filter="data")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        partial.replace(target)
    return target / CONVERTER


def save_base_config(model: Any, tokenizer: Any, folder: str | Path) -> Path:
    """The base model's configuration and tokenizer as the converter reads them (no weights)."""
    folder = Path(folder)
    base = getattr(model, "get_base_model", lambda: model)()
    config = base.config.to_dict()
    config.pop("quantization_config", None)  # "gguf": the converter refuses quantized configs
    config["architectures"] = config.get("architectures") or [type(base).__name__]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2, default=str), encoding="utf-8")
    tokenizer.save_pretrained(folder)
    return folder


def convert_adapter(adapter_dir: str | Path, out_file: str | Path, base_config: str | Path, *,
                    outtype: str = "f32", tool: str | Path | None = None) -> Path:
    """Convert the peft adapter in `adapter_dir` (``adapter_config.json``,
    ``adapter_model.safetensors``) to `out_file` (GGUF), against the base configuration in
    `base_config` (`save_base_config`). Raises AdapterConversionError with the converter's own
    words when it fails."""
    adapter_dir, out_file = Path(adapter_dir), Path(out_file)
    missing = [name for name in ("adapter_config.json", "adapter_model.safetensors")
               if not (adapter_dir / name).exists()]
    if missing:
        raise AdapterConversionError(f"{adapter_dir} lacks {missing}: pass the adapter folder train_adapter wrote")
    peft_type = json.loads((adapter_dir / "adapter_config.json").read_text()).get("peft_type")
    if peft_type != "LORA":
        raise AdapterConversionError(f"{adapter_dir} holds a {peft_type} adapter; llama.cpp runs LoRA adapters only. "
                                     "Serve it with workbench.finetune.transformers_model.load_tuned instead")
    if not (Path(base_config) / "config.json").exists():
        raise AdapterConversionError(f"{base_config} has no config.json: write it with save_base_config first")
    script = Path(tool) if tool else converter()
    out_file.parent.mkdir(parents=True, exist_ok=True)
    partial = out_file.with_name(out_file.name + ".partial")
    status, printed = run_converter(script, ["--base", str(base_config), "--outtype", outtype,
                                             "--outfile", str(partial), str(adapter_dir)])
    if status != 0 or not partial.exists():
        partial.unlink(missing_ok=True)
        raise AdapterConversionError(f"llama.cpp's converter failed on {adapter_dir} (exit {status}):\n"
                                     f"{printed[-2500:]}")
    partial.replace(out_file)
    return out_file


# The converter's own modules: the gguf-py beside it (the gguf it was written against, which may
# differ from the installed `gguf` under the same name) and its `conversion` package.
_CONVERTER_MODULES = ("gguf", "conversion")
_CONVERTING = threading.Lock()


def _converter_modules() -> dict[str, Any]:
    return {name: module for name, module in sys.modules.items() if name.split(".", 1)[0] in _CONVERTER_MODULES}


def run_converter(script: Path, arguments: list[str]) -> tuple[int, str]:
    """Run llama.cpp's converter `script` with `arguments` in this process, as ``python script
    arguments`` would: returns (its exit status, what it printed and logged).

    Why not a new interpreter: the converter imports torch and transformers, which a process that
    has just trained already holds; a new one took 3.5 s a conversion, this takes 0.2 to 1 s. What
    it changes is put back afterwards: the modules named `_CONVERTER_MODULES` (its own are imported
    for it alone, from its folder, and the process's own, such as the installed gguf, return),
    ``sys.path``, ``sys.argv`` and the root logger's handlers and level (its log is captured with
    its prints, at INFO as it sets). One conversion at a time (a lock): these are process-wide."""
    with _CONVERTING:
        own_modules = _converter_modules()
        for name in own_modules:
            del sys.modules[name]
        path, argv = list(sys.path), sys.argv
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        sys.path[:0] = [str(script.parent), str(script.parent / "gguf-py")]
        sys.argv = [str(script), *arguments]
        printed = io.StringIO()
        # Its log goes where its prints go, and to no handler of this process (its basicConfig
        # does nothing once the root logger has a handler), as in a new interpreter's stderr.
        root.handlers[:] = [logging.StreamHandler(printed)]
        root.setLevel(logging.INFO)
        status: int = 0
        try:
            with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
                runpy.run_path(str(script), run_name="__main__")
        except SystemExit as exit_:  # sys.exit(1) after logging why, or argparse's exit 2
            if isinstance(exit_.code, int | None):
                status = exit_.code or 0
            else:  # sys.exit("message"): the interpreter prints it and exits 1
                status = 1
                printed.write(str(exit_.code))
        except Exception:  # noqa: BLE001 - the converter's own failure, reported in its words as a new interpreter would
            status = 1
            printed.write(traceback.format_exc())
        finally:
            for name in _converter_modules():
                del sys.modules[name]
            sys.modules.update(own_modules)
            sys.path[:], sys.argv = path, argv
            root.handlers[:] = handlers
            root.setLevel(level)
        return status, printed.getvalue()


def train_for_llama_cpp(chats: list, folder: str | Path, *, settings: Any = None, model_path: str | Path | None = None,
                        names: list[str] | None = None, progress: bool = False,
                        start_from: str | Path | None = None,
                        train: Callable[..., Any] | None = None) -> tuple[Any, Path | None]:
    """LoRA (`train`: `lora.train_adapter` by default, or `trl_trainer.train_with_trl`, which take
    the same arguments) on a fresh copy of the base GGUF `model_path` (default: the embedded
    SmolLM2) in `folder`, then the adapter converted to ``folder/adapter.gguf`` for llama.cpp on
    that same base file. Returns (the `TrainedAdapter`, the GGUF adapter's path; None in any
    process but the first of a distributed training)."""
    from workbench.finetune.base_model import load_base
    from workbench.finetune.local_models import first_process
    from workbench.finetune.lora import train_adapter
    from workbench.models.llama_cpp import embedded_model_path

    folder = Path(folder)
    converter()  # fetched (or refused) before training: an offline machine must not lose the training at the end
    model, tokenizer = load_base(model_path)  # fresh each time: peft changes the model it wraps
    trained = (train or train_adapter)(chats, folder, settings=settings, base=lambda: (model, tokenizer),
                                       base_gguf=model_path or embedded_model_path(), names=names, progress=progress,
                                       start_from=start_from)
    if not first_process():
        return trained, None  # under torchrun or `accelerate launch`, the first process converts
    adapter = convert_adapter(trained.path, folder / "adapter.gguf",
                              save_base_config(model, tokenizer, folder / "base_config"))
    return trained, adapter
