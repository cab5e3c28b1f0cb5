"""Do the prompts fit in the model's context window? Checked before any model call.

A context window holds the prompt and the answer: a request fits when its prompt tokens plus its
``max_tokens`` are at most the model's limit (an endpoint such as vLLM refuses a request that
does not; llama.cpp silently shortens the answer's budget, which cuts answers off). A model says
its limit with a ``context_tokens`` attribute, or ``n_ctx``
(`workbench.models.llama_cpp.LlamaCppModel`); a model that says neither (an OpenAI-compatible
endpoint) is not checked, and the endpoint itself answers a request that is too long with an
error.

Prompt tokens are counted with the model's own tokenizer where that is cheap and needed, otherwise
estimated (`estimate_tokens`):

- The estimate comes first, for every prompt: one token per 3 other ASCII characters (letters,
  spaces), one per digit and per ASCII punctuation mark, and one per 1.5 bytes of non-ASCII
  characters (UTF-8), plus `MESSAGE_OVERHEAD_TOKENS` per chat message and
  `REPLY_OVERHEAD_TOKENS` for the assistant's turn. Against SmolLM2's tokenizer (a small English
  vocabulary, so a pessimistic one) it is 20 to 70% above the true count for English prose,
  label lists (CLINC150's 150 intents: +41%), NER prompts and code, about right for digits, CJK
  and French, above for Cyrillic, and about 12% below for German.
- Prompts whose estimate comes within a quarter of the limit (`EXACT_MARGIN`) are counted again
  with the model's tokenizer when it has one: a ``count_tokens(text) -> int`` method, or the
  ``tokenize`` of what a ``load()`` method returns (llama.cpp's ``Llama``; for the embedded model
  loading takes well under a second). Without one, the estimate decides, and the error says so.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from workbench.core.errors import InputError
from workbench.models.base import ChatRequest

logger = logging.getLogger(__name__)

MESSAGE_OVERHEAD_TOKENS = 8  # a chat template's role markers and separators around each message
REPLY_OVERHEAD_TOKENS = 8  # the assistant turn's opening markers
EXACT_MARGIN = 0.75  # prompts estimated above this share of the limit are counted exactly, if possible
_DIGITS = "0123456789"
_PUNCTUATION = re.compile(r"[!-/:-@\[-`{-~]")  # ASCII punctuation and symbols

TokenCounter = Callable[[str], int]


class PromptTooLongError(InputError):
    """A rendered prompt and its answer do not fit in the model's context window."""

    def __init__(self, message: str, check: ContextCheck):
        super().__init__(message)
        self.check = check


@dataclass(frozen=True)
class ContextCheck:
    """What `check_context` found.

    `limit` is the context window in tokens (None: unknown, nothing was checked).
    `prompt_tokens` is the longest prompt's length in tokens, `max_tokens` the answer budget of
    its request, and `variant` and `example_id` name it (all None when nothing was checked).
    `method` is ``"tokenizer"`` when the longest prompt was counted with the model's tokenizer,
    ``"estimate"`` when by `estimate_tokens`. `prompts` is how many requests were checked and
    `too_long` how many do not fit.
    """

    limit: int | None
    prompt_tokens: int | None = None
    max_tokens: int | None = None
    variant: str | None = None
    example_id: str | None = None
    method: str | None = None
    prompts: int = 0
    too_long: int = 0

    @property
    def fits(self) -> bool:
        return self.too_long == 0

    def describe(self) -> str:
        """One line for logs and notebooks."""
        if self.limit is None:
            return "context window unknown: prompt lengths not checked"
        if self.prompt_tokens is None:
            return f"no prompts to check against the context window of {self.limit} tokens"
        counted = "counted by the model's tokenizer" if self.method == "tokenizer" else "estimated"
        return (f"longest prompt {self.prompt_tokens} tokens ({counted}; variant {self.variant!r}, example "
                f"{self.example_id!r}) + max_tokens {self.max_tokens} against a context window of "
                f"{self.limit} tokens: {'fits' if self.fits else f'{self.too_long} of {self.prompts} do not fit'}")


def estimate_tokens(text: str) -> int:
    """A quick estimate of how many tokens `text` is (see the module docstring for how close it is)."""
    size = len(text.encode("utf-8"))
    ascii_chars = len(text) if text.isascii() else len(text.encode("ascii", "ignore"))
    digits = sum(text.count(digit) for digit in _DIGITS)
    marks = len(_PUNCTUATION.findall(text))
    return math.ceil((ascii_chars - digits - marks) / 3 + digits + marks + (size - ascii_chars) / 1.5)


def prompt_tokens(messages: Sequence[dict[str, str]], count_tokens: TokenCounter = estimate_tokens) -> int:
    """The tokens of a chat prompt: each message's content by `count_tokens`, plus the chat
    template's overhead per message and for the reply."""
    return sum(count_tokens(message["content"]) + MESSAGE_OVERHEAD_TOKENS for message in messages) + REPLY_OVERHEAD_TOKENS


def context_limit(model: Any) -> int | None:
    """The model's context window in tokens: its ``context_tokens`` or ``n_ctx``; None if it has neither."""
    for attribute in ("context_tokens", "n_ctx"):
        value = getattr(model, attribute, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def model_token_counter(model: Any) -> TokenCounter | None:
    """The model's own token counter, or None: its ``count_tokens``, else the ``tokenize`` of what
    its ``load()`` returns (llama.cpp; this loads the weights, which its first call does anyway)."""
    count = getattr(model, "count_tokens", None)
    if callable(count):
        return count
    load = getattr(model, "load", None)
    if not callable(load):
        return None
    try:
        tokenizer = load()
    except Exception as exc:  # noqa: BLE001 - no tokenizer means the estimate decides; the run reports the rest
        logger.info("could not load the model's tokenizer (%s); prompt lengths are estimated", exc)
        return None
    tokenize = getattr(tokenizer, "tokenize", None)
    if not callable(tokenize):
        return None
    return lambda text: len(tokenize(text.encode("utf-8"), add_bos=False, special=False))


def check_context(
    requests: Iterable[tuple[str, str, ChatRequest]],
    limit: int | None,
    *,
    count_tokens: TokenCounter | None = None,
    load_counter: Callable[[], TokenCounter | None] | None = None,
) -> ContextCheck:
    """Check that every request's prompt plus its ``max_tokens`` fits in `limit` tokens.

    `requests` are ``(variant, example_id, ChatRequest)``. Prompts are estimated
    (`estimate_tokens`); those estimated within `EXACT_MARGIN` of the limit are counted again
    with `count_tokens`, or with the counter `load_counter` returns (called only then, so a
    tokenizer is loaded only when needed), when there is one. Returns the `ContextCheck`; raises
    `PromptTooLongError` naming the longest prompt, its length, the limit and what to change when
    any request does not fit. With no `limit`, checks nothing.
    """
    if limit is None:
        return ContextCheck(limit=None)
    prompts: dict[tuple[str, str], tuple[str, str, ChatRequest]] = {}
    for variant, example_id, request in requests:
        # Repeats of a (variant, example) share its prompt: check it once.
        prompts.setdefault((variant, str(example_id)), (variant, str(example_id), request))
    if not prompts:
        return ContextCheck(limit=limit)
    tokens = {key: prompt_tokens(request.messages) for key, (_, _, request) in prompts.items()}
    close = [key for key, (_, _, request) in prompts.items()
             if tokens[key] + request.options.max_tokens > EXACT_MARGIN * limit]
    counter = count_tokens
    if close and counter is None and load_counter is not None:
        counter = load_counter()
    exact: set[tuple[str, str]] = set()
    if close and counter is not None:
        for key in close:
            tokens[key] = prompt_tokens(prompts[key][2].messages, counter)
            exact.add(key)

    def needed(key: tuple[str, str]) -> int:
        return tokens[key] + prompts[key][2].options.max_tokens

    longest = max(prompts, key=needed)
    variant, example_id, request = prompts[longest]
    check = ContextCheck(
        limit=limit, prompt_tokens=tokens[longest], max_tokens=request.options.max_tokens,
        variant=variant, example_id=example_id, method="tokenizer" if longest in exact else "estimate",
        prompts=len(prompts), too_long=sum(needed(key) > limit for key in prompts),
    )
    logger.info("%s", check.describe())
    if not check.fits:
        raise PromptTooLongError(_too_long_message(check), check)
    return check


def check_model_context(model: Any, requests: Iterable[tuple[str, str, ChatRequest]]) -> ContextCheck:
    """`check_context` with the model's own limit (`context_limit`) and tokenizer (`model_token_counter`)."""
    return check_context(requests, context_limit(model), load_counter=lambda: model_token_counter(model))


def _too_long_message(check: ContextCheck) -> str:
    counted = ("counted by the model's tokenizer" if check.method == "tokenizer"
               else "estimated (about 3 letters, or one digit or punctuation mark, per token); the model's "
                    "tokenizer was not available")
    others = f" ({check.too_long} of {check.prompts} prompts are too long)" if check.too_long > 1 else ""
    return (
        f"the longest prompt is {check.prompt_tokens} tokens ({counted}), for variant {check.variant!r} and "
        f"example {check.example_id!r}; with max_tokens {check.max_tokens} for the answer it needs "
        f"{check.prompt_tokens + check.max_tokens} tokens, but the model's context window is {check.limit}"
        f"{others}. Nothing was sent. Shorten the prompt (fewer few-shot examples, shorter definitions, a "
        "variant without definitions), lower max_tokens, or use a larger context window (n_ctx of "
        "LlamaCppModel or of the model config)"
    )
