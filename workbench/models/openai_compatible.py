"""Any OpenAI-compatible HTTP endpoint (OpenAI, vLLM, llama.cpp's server, Ollama, a provider),
called through the `openai` SDK: the only module that imports it."""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from workbench.core.errors import InputError
from workbench.models.base import ChatRequest, Completion, FatalModelError, RetryableModelError

# OpenAI's strict mode refuses these keywords in a fine-tuned model's schema (its models are named "ft:..."),
# though its current models take some of them (Structured Outputs guide, "Supported schemas"). The task's own
# parser still checks the answer against the full schema.
FINE_TUNED_DROPPED_KEYWORDS = frozenset({"minLength", "maxLength", "pattern", "format", "minimum", "maximum",
                                         "multipleOf", "patternProperties", "minItems", "maxItems"})
StructuredOutput = Literal["json_schema", "json_object_schema", "grammar", "json_object", "none"]
AdapterStyle = Literal["model_name", "llama_cpp"]
OPENAI_BASE_URL = "https://api.openai.com/v1"


class OpenAICompatibleModel:
    """A model behind an OpenAI-compatible HTTP endpoint, called through the `openai` SDK.

    `base_url` defaults to OpenAI's own endpoint (`OPENAI_BASE_URL`). `api_key` is sent as
    ``Authorization: Bearer <key>`` to `base_url` and nowhere else; with None no Authorization
    header is sent at all (servers that need no key). The model never reads the environment:
    `workbench.models.registry.resolve_api_key` decides which variable, if any, holds the key.
    `structured_output` says how the answer schema is enforced, which depends on the server:

    - ``json_schema``: OpenAI's ``response_format={"type": "json_schema", ...}`` (OpenAI, vLLM).
    - ``json_object_schema``: ``{"type": "json_object", "schema": ...}`` (llama.cpp's servers).
    - ``grammar``: a GBNF grammar in ``extra_body["grammar"]`` (llama.cpp); needs llama-cpp-python.
    - ``json_object``: JSON mode without a schema.
    - ``none``: rely on the prompt alone.

    `adapter` names a LoRA adapter the server applies on top of `model` (the base), and
    `adapter_style` says how a request selects it:

    - ``model_name``: the request's ``model`` is the adapter's name (vLLM's ``--lora-modules
      NAME=PATH``; SGLang, LoRAX and others the same way).
    - ``llama_cpp``: the request keeps ``model`` and carries ``lora: [{"id": adapter_id, "scale":
      1.0}]`` (llama.cpp's ``llama-server --lora FILE``: `adapter_id` is the adapter's place among
      its ``--lora`` options, 0 for the first; adapters not named get scale 0 for that request).
      `adapter` is then only the name identities and reports show.

    The adapter is part of `identity`, so base and adapter never share cache entries.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        structured_output: StructuredOutput = "json_schema",
        max_concurrency: int = 16,
        timeout_s: float = 60.0,
        extra_body: dict[str, Any] | None = None,
        adapter: str | None = None,
        adapter_style: AdapterStyle = "model_name",
        adapter_id: int = 0,
    ):
        import openai

        if adapter_style not in ("model_name", "llama_cpp"):
            raise InputError(f"adapter_style must be model_name or llama_cpp, got {adapter_style!r}")
        self.model = model
        self.adapter = adapter or None
        self.adapter_style = adapter_style
        self.adapter_id = int(adapter_id)
        self.base_url = base_url or OPENAI_BASE_URL
        self.structured_output = structured_output
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.extra_body = dict(extra_body or {})
        self._api_key = api_key or None
        # One SDK client per event loop: pooled connections belong to the loop that opened them, and
        # every run_variants call runs its own loop.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, openai.AsyncOpenAI] = (
            weakref.WeakKeyDictionary()
        )
        self._grammars: dict[str, str] = {}

    def _client(self) -> Any:
        """The SDK client of the running event loop, created on first use."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            import openai

            # Retries are ours (the runner honours Retry-After and logs attempts), so the SDK's are off.
            # The SDK insists on a key; without one a placeholder is given and never sent (see `complete`).
            client = openai.AsyncOpenAI(
                base_url=self.base_url, api_key=self._api_key or "unused", max_retries=0, timeout=self.timeout_s,
                http_client=aiohttp_client(self.timeout_s),
            )
            self._clients[loop] = client
        return client

    async def aclose(self) -> None:
        """Close the running event loop's client and its connections (the runner calls this after a run)."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.close()

    @property
    def identity(self) -> dict[str, Any]:
        identity: dict[str, Any] = {
            "kind": "openai_compatible",
            "model": self.model,
            "endpoint": redact_url(self.base_url),
            "structured_output": self.structured_output,
            "extra_body": self.extra_body,
        }
        if self.adapter is not None:  # only then: a base model's identity (and its cache keys) stay as they were
            identity["adapter"] = self.adapter
            if self.adapter_style == "llama_cpp":
                identity["adapter_style"], identity["adapter_id"] = self.adapter_style, self.adapter_id
        return identity

    @property
    def has_key(self) -> bool:
        """Whether requests carry a key (``Authorization: Bearer``); the key itself is never shown."""
        return self._api_key is not None

    @property
    def request_model(self) -> str:
        """The ``model`` a request names: the adapter's name for ``adapter_style: model_name``, else `model`."""
        return self.adapter if self.adapter is not None and self.adapter_style == "model_name" else self.model

    def _body_parts(self, request: ChatRequest) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the chat request's parameters, the extra body merged after them) for `request`."""
        kwargs: dict[str, Any] = {"model": self.request_model, "messages": list(request.messages),
                                  **request.options.as_dict()}
        extra_body = dict(self.extra_body)
        if self.adapter is not None and self.adapter_style == "llama_cpp":
            extra_body["lora"] = [{"id": self.adapter_id, "scale": 1.0}]
        if request.schema is not None:
            self._add_structure(kwargs, extra_body, request.schema)
        # Byte for byte the body `chat.completions.create` sends: model, messages, the rest in its (alphabetical)
        # order; then its request options (extra_body is merged into the body after those keys).
        kwargs = {"model": kwargs.pop("model"), "messages": kwargs.pop("messages"), **dict(sorted(kwargs.items()))}
        return kwargs, extra_body

    def request_body(self, request: ChatRequest) -> dict[str, Any]:
        """The JSON body `complete` posts to ``/chat/completions`` for `request` (no credentials):
        the ``body`` of a Batch API request line (`workbench.scale.batch_lines`)."""
        kwargs, extra_body = self._body_parts(request)
        return {**kwargs, **extra_body}

    def batch_client(self) -> Any:
        """A synchronous ``openai.OpenAI`` client for this model's endpoint and key, for the Files
        and Batches endpoints (`workbench.scale.openai_batch`); the key goes to `base_url` only."""
        import openai

        return openai.OpenAI(base_url=self.base_url, api_key=self._api_key or "unused", max_retries=2,
                             timeout=max(self.timeout_s, 120.0))

    async def complete(self, request: ChatRequest) -> Completion:
        import openai

        kwargs, extra_body = self._body_parts(request)
        options: dict[str, Any] = {"security": {"bearer_auth": True}}
        if self._api_key is None:
            options["headers"] = {"Authorization": openai.Omit()}  # no key: no Authorization header at all
        if extra_body:
            options["extra_json"] = extra_body
        started = time.perf_counter()
        try:
            # The SDK's documented `post` to the endpoint `chat.completions.create` uses: the same request,
            # errors and exceptions, without that method's per-call walk of its parameter types and its
            # response model construction (together about 40% of the SDK's client CPU per call).
            response = await self._client().post("/chat/completions", body=kwargs, cast_to=object, options=options)
        except openai.RateLimitError as exc:
            raise RetryableModelError(f"rate limited (429): {_short(exc)}", _retry_after(exc.response)) from exc
        except openai.InternalServerError as exc:
            hint = self._structure_hint(exc)
            if hint:  # every request would fail the same way: stop the run, say what to change
                raise FatalModelError(f"{redact_url(self.base_url)} refused the request ({exc.status_code}): "
                                      f"{_short(exc)}{hint}") from exc
            raise RetryableModelError(f"server error ({exc.status_code}): {_short(exc)}", _retry_after(exc.response)) from exc
        except openai.APITimeoutError as exc:
            if not _caused_by_timeout(exc.__cause__):
                # The SDK's aiohttp adapter reports refused and dropped connections as connect timeouts.
                raise RetryableModelError(f"connection failed: {_short(exc.__cause__ or exc)}") from exc
            raise RetryableModelError(f"timed out after {self.timeout_s:g} s") from exc
        except openai.APIConnectionError as exc:
            raise RetryableModelError(f"connection failed: {_short(exc.__cause__ or exc)}") from exc
        except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as exc:
            # The endpoint as `identity` shows it: a key in the URL's user info or query stays out of the message.
            adapter = ""
            if self.adapter is not None:
                adapter = (f"; the config's adapter {self.adapter!r} on base {self.model!r} must be served there "
                           f"(vLLM: --lora-modules {self.adapter}=PATH; llama-server: --lora FILE, number adapter_id)")
            raise FatalModelError(
                f"{redact_url(self.base_url)} refused model {self.request_model!r} ({exc.status_code}): {_short(exc)}"
                f"{adapter}. Check the key (the variable the config's api_key_env names), base_url and the model name."
            ) from exc
        except openai.APIStatusError as exc:
            if exc.status_code in (408, 409) or exc.status_code >= 500:
                raise RetryableModelError(f"HTTP {exc.status_code}: {_short(exc)}", _retry_after(exc.response)) from exc
            hint = self._structure_hint(exc)
            if hint:
                raise FatalModelError(f"{redact_url(self.base_url)} refused the request ({exc.status_code}): "
                                      f"{_short(exc)}{hint}") from exc
            raise
        except (openai.APIResponseValidationError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            # A 200 whose body is not valid JSON (or not text): a broken response, not an answer. Only these:
            # any other ValueError comes from the client before anything was sent (e.g. aiohttp refusing a key
            # together with user:password in base_url), which a retry repeats.
            raise RetryableModelError(f"malformed response body: {_short(exc)}") from exc
        latency = time.perf_counter() - started
        # `response` is the decoded JSON body, or its text when the server did not label it JSON; like the
        # SDK's own models, still read it as JSON then.
        if isinstance(response, str):
            response = _json_or_text(response)
        if not isinstance(response, dict) or not response.get("choices"):
            raise RetryableModelError(f"response has no choices: {str(response)[:200]}")
        choice = response["choices"][0]
        message = choice.get("message") or {}
        usage = response.get("usage") or {}
        return Completion(
            text=message.get("content") or "",
            tokens_in=int(usage.get("prompt_tokens") or 0),
            tokens_out=int(usage.get("completion_tokens") or 0),
            finish_reason=choice.get("finish_reason"),
            latency_s=latency,
        )

    def _structure_hint(self, exc: Exception) -> str:
        """What to change when the server rejected the answer format this model asked for: servers
        differ in which `response_format` types they take (llama.cpp's: ``json_object`` with a schema)."""
        sent = {"json_schema": "json_schema", "json_object_schema": "json_object", "json_object": "json_object"}
        text = str(exc)
        # Only a refusal of the type itself (llama.cpp: "Input should be 'text' or 'json_object'",
        # input 'json_schema'); a schema the server finds fault with is another error, kept as it is.
        if self.structured_output not in sent or "response_format" not in text or "type" not in text \
                or f"'{sent[self.structured_output]}'" not in text or "Invalid schema" in text:
            return ""
        return (f". This server does not take the answer format structured_output: {self.structured_output} asks "
                "for; set structured_output in the model config to json_object_schema (llama.cpp's server), "
                "grammar, json_object or none")

    def _add_structure(self, kwargs: dict[str, Any], extra_body: dict[str, Any], schema: dict[str, Any]) -> None:
        mode = self.structured_output
        if mode == "json_schema":
            # OpenAI's strict mode rejects length keywords; the prompt still asks for brevity.
            dropped = FINE_TUNED_DROPPED_KEYWORDS if self.request_model.startswith("ft:") else {"maxLength"}
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": _without_keys(schema, dropped), "strict": True},
            }
        elif mode == "json_object_schema":
            kwargs["response_format"] = {"type": "json_object", "schema": schema}
        elif mode == "json_object":
            kwargs["response_format"] = {"type": "json_object"}
        elif mode == "grammar":
            extra_body["grammar"] = self._grammar(schema)

    def _grammar(self, schema: dict[str, Any]) -> str:

        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            from llama_cpp.llama_grammar import json_schema_to_gbnf

            self._grammars[key] = json_schema_to_gbnf(key)
        return self._grammars[key]


def aiohttp_client(timeout_s: float) -> Any:
    """The SDK's aiohttp-based HTTP client, or None (the SDK's default httpx client) without ``openai[aiohttp]``.

    Same SDK, requests and error mapping; its transport costs about half the client CPU per call.
    """
    import openai

    factory = getattr(openai, "DefaultAioHttpClient", None)
    if factory is None:
        return None
    try:
        return factory(timeout=timeout_s)
    except RuntimeError:  # the SDK's placeholder when aiohttp is not installed
        return None


def redact_url(url: str) -> str:
    """`url` without user info or query string, so credentials never reach keys, logs or reports."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def _retry_after(response: Any) -> float | None:
    return None if response is None else retry_after_seconds(response.headers.get("retry-after"))


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header value asks to wait (a number or an HTTP date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _json_or_text(text: str) -> Any:

    try:
        return json.loads(text)
    except ValueError:
        return text


def _caused_by_timeout(exc: BaseException | None) -> bool:
    """Whether a timeout (not a refused or dropped connection) is somewhere in `exc`'s chain."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


# Schema keywords whose value maps names (of properties, definitions) to subschemas, and keywords whose
# value is data, not schema: neither the names nor the data are keywords.
_NAMED_SUBSCHEMAS = frozenset({"properties", "$defs", "definitions", "patternProperties", "dependentSchemas"})
_DATA_KEYWORDS = frozenset({"enum", "const", "default", "examples"})


def _without_keys(value: Any, keys: set[str]) -> Any:
    """The JSON schema `value` without the keywords `keys`, at any depth.

    A property (or definition) that happens to be named like a keyword is kept, and so are
    ``enum``/``const``/``default``/``examples`` values: dropping one would leave ``required``
    naming a property that is gone, which strict mode refuses.
    """
    if isinstance(value, dict):
        kept: dict[str, Any] = {}
        for key, item in value.items():
            if key in keys:
                continue
            if key in _DATA_KEYWORDS:
                kept[key] = item
            elif key in _NAMED_SUBSCHEMAS and isinstance(item, dict):
                kept[key] = {name: _without_keys(subschema, keys) for name, subschema in item.items()}
            else:
                kept[key] = _without_keys(item, keys)
        return kept
    if isinstance(value, list):
        return [_without_keys(item, keys) for item in value]
    return value


def _short(exc: BaseException) -> str:
    return str(exc).replace("\n", " ")[:200]
