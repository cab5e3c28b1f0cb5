"""Chat rows as token ids for supervised fine-tuning, with the loss on the answer tokens only.

A training row is a chat (`workbench.trainingdata`: system, user, assistant). The prompt is the
chat template applied to every message but the last, with the generation prompt; the row is the
template applied to the whole chat. The prompt's tokens get the label -100 (no loss), the answer's
tokens, its end-of-turn marker included, get their own ids: the model learns to answer, and to
stop, and nothing of the prompt. Every row must start with a system message: SmolLM2's chat
template writes its own ("You are a helpful AI assistant named SmolLM...") when there is none, which
the tuned model would then expect.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from workbench.core.errors import InputError

IGNORE = -100  # the label PyTorch's cross-entropy leaves out
MAX_LENGTH = 1024  # tokens a training row may have by default (`AdapterSettings.max_length`, `--max-length`)


class TrainingRowError(InputError):
    """A training row cannot be used; the message names the row and what to do."""


@dataclass(frozen=True)
class TokenizedRow:
    """One row: `input_ids`, `labels` (IGNORE on the prompt), and how many tokens are supervised."""

    input_ids: list[int]
    labels: list[int]

    @property
    def supervised(self) -> int:
        return sum(label != IGNORE for label in self.labels)


def load_tokenizer(gguf: str | Path | None = None) -> Any:
    """The tokenizer (with its chat template) of the GGUF at `gguf` (default: the embedded
    SmolLM2: `base_model.gguf_tokenizer`, converted from the file's metadata once and then kept in
    the user's cache), or of the transformers model folder `gguf` names; cached per process. The
    pad token is the end-of-sequence token when the model names none, as in `base_model.load_base`,
    so both give the same token ids."""
    from workbench.models.llama_cpp import embedded_model_path

    return _load_tokenizer(str(Path(gguf) if gguf is not None else embedded_model_path()))


@lru_cache(maxsize=2)
def _load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    from workbench.finetune.base_model import gguf_tokenizer

    if Path(path).is_dir():  # a transformers model folder (model kind transformers)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    else:
        tokenizer = gguf_tokenizer(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def chat_ids(tokenizer: Any, messages: Sequence[dict[str, str]], where: str) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids) of `messages` (system, user..., assistant last), as training
    sees them: the prompt with the generation prompt, then the rest of the whole chat (the answer
    and its end-of-turn marker). Raises TrainingRowError naming `where` when the chat has no
    system message first or does not end with the assistant's answer."""
    messages = [dict(message) for message in messages]
    if not messages or messages[0].get("role") != "system":
        raise TrainingRowError(f"{where}: the chat must start with a system message (the chat template would "
                               "otherwise insert its own); render rows with the workbench's templates")
    if messages[-1].get("role") != "assistant" or not str(messages[-1].get("content", "")).strip():
        raise TrainingRowError(f"{where}: the chat must end with the assistant's answer it teaches")
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    whole = tokenizer.apply_chat_template(messages, tokenize=False)
    if not whole.startswith(prompt):
        raise TrainingRowError(f"{where}: the chat template does not render the prompt as the start of the whole "
                               "chat, so the answer cannot be told apart; use a model whose template does")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(whole[len(prompt):], add_special_tokens=False)["input_ids"]
    return list(prompt_ids), list(answer_ids)


def prompt_length(tokenizer: Any, messages: Sequence[dict[str, str]]) -> int:
    """Tokens of the prompt `messages` (no answer) with the chat template's generation prompt, as
    the model reads them before answering and as `chat_ids` counts a row's prompt."""
    prompt = tokenizer.apply_chat_template([dict(m) for m in messages], tokenize=False, add_generation_prompt=True)
    return len(tokenizer(prompt, add_special_tokens=False)["input_ids"])


def too_long_message(where: str, tokens: int, max_length: int) -> str:
    """The error for a row of `tokens` tokens over `max_length`: what, the limit, and the flag."""
    return (f"{where}: {tokens} tokens, more than the {max_length} the training allows (--max-length "
            f"{max_length}, AdapterSettings.max_length); raise --max-length (within the model's context), render the "
            "rows with the compact variant 'tuned' (--train-variant tuned: no label list), or shorten or drop the text")


def tokenize_chat(tokenizer: Any, messages: Sequence[dict[str, str]], where: str, max_length: int) -> TokenizedRow:
    """`messages` (system, user..., assistant last) as a `TokenizedRow`. Raises TrainingRowError
    naming `where` when the chat has no system message first, does not end with the assistant's
    answer, or is longer than `max_length` tokens (checked before any training starts)."""
    prompt_ids, answer_ids = chat_ids(tokenizer, messages, where)
    ids = prompt_ids + answer_ids
    if len(ids) > max_length:
        raise TrainingRowError(too_long_message(where, len(ids), max_length))
    return TokenizedRow(ids, [IGNORE] * len(prompt_ids) + answer_ids)


def tokenize_rows(tokenizer: Any, chats: Sequence[Sequence[dict[str, str]]], names: Sequence[str],
                  max_length: int) -> list[TokenizedRow]:
    """Every chat tokenized, all checked before returning (the first bad one raises)."""
    return [tokenize_chat(tokenizer, chat, name, max_length) for chat, name in zip(chats, names)]


def data_hash(chats: Sequence[Sequence[dict[str, str]]]) -> str:
    """SHA-256 of the training chats, in order: what an adapter was trained on."""
    digest = hashlib.sha256()
    for chat in chats:
        digest.update(json.dumps([dict(m) for m in chat], sort_keys=True, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def pad_batch(rows: Sequence[TokenizedRow], pad_id: int) -> dict[str, list[list[int]]]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (IGNORE on padding)."""
    width = max(len(row.input_ids) for row in rows)
    return {
        "input_ids": [row.input_ids + [pad_id] * (width - len(row.input_ids)) for row in rows],
        "attention_mask": [[1] * len(row.input_ids) + [0] * (width - len(row.input_ids)) for row in rows],
        "labels": [row.labels + [IGNORE] * (width - len(row.labels)) for row in rows],
    }
