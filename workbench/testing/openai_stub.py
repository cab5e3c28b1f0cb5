"""A small OpenAI-compatible HTTP stub server, built on aiohttp, with deterministic fault injection.

The stub speaks just enough of the OpenAI REST API for the official ``openai``
SDK to talk to it over real TCP: ``POST /v1/chat/completions`` and
``GET /v1/models`` (both also without the ``/v1`` prefix), the files and fine-tuning jobs
endpoints (`workbench.testing.openai_stub_finetuning`) and the Batch API
(`workbench.testing.openai_stub_batches`, whose lines are answered like the chat
endpoint's ok path).  It exists for two jobs:

* integration tests that need faults injected into a *real* HTTP exchange
  (429 with ``Retry-After``, 500, slow answers, broken bodies, dropped
  connections, unusable model output, a server that stops answering);
* throughput benchmarks, which is why it runs on aiohttp's low-level
  :class:`aiohttp.web.Server` (HTTP keep-alive, no router, no middlewares, no
  access log): the cost per request is aiohttp's parser, one ``json.loads`` and
  one ``json.dumps``.

Faults are chosen from the SHA-256 of the raw request body, so a given request
always meets the same fate, independent of timing and concurrency.  Transport
faults only hit the first attempt of a body (a retry succeeds); the two
"content" faults are answers and hit every attempt.  Each fault is one small
handler in ``_FAULT_HANDLERS``.

Structured output is checked the way OpenAI checks it: a request whose
``response_format`` is ``{"type": "json_schema", "json_schema": {"name", "schema",
"strict": true}}`` is refused with a 400 (logged ``bad_request``) when the schema
breaks a rule of OpenAI's strict mode (see :func:`check_response_format`), and
otherwise answered, by default, with a value that follows the schema (see
:func:`schema_example`).  ``StubConfig(status_for_all=401)`` answers every chat
request with that status instead (logged ``status_for_all``), as an endpoint
does that refuses the key, the account or the model.

What it serves. By default ``GET /v1/models`` lists one model (``stub-model``) and a chat request
may name any model. ``StubConfig(models=..., lora_modules=...)`` makes it serve only those, the way
vLLM does: the listing holds each base (``root`` its id, ``parent`` null) and each LoRA module
(`StubLoraModule`: ``id``, ``root`` the adapter's path, ``parent`` its base), and a chat request for
any other name is refused with vLLM's 404 (logged ``model_not_found``). A request naming an adapter
is answered like any other, its ``model`` echoed. ``StubConfig(lora_adapters=...)`` answers
llama-server's ``GET /lora-adapters`` (``id``, ``path``, ``scale`` per adapter).

Every chat request gets one line in the optional JSON-lines request log (see
:func:`read_request_log`).  Outcomes that are full responses (``ok``,
``rate_limit``, ``server_error``, ``malformed_body``, ``malformed_content``,
``truncated_content``, ``bad_request``, ``answer_error``, ``status_for_all``,
``model_not_found``) are logged only after the response bytes were written to the
socket, so "logged ok" means the client was sent a complete response.  ``slow``, ``hang``, ``disconnect`` and
``truncated_body`` are logged when the fault starts, because the client may
never see an answer.  A request whose connection is lost (or whose server is
stopped) before its response was written is logged as ``aborted`` with status
``null``.

Run as a process::

    python -m workbench.testing.openai_stub --port 0 --delay 0.1 \\
        --faults rate_limit,server_error --fault-rate 0.3 \\
        --hang-after-ok 10 --log /tmp/log.jsonl --port-file /tmp/port
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

from aiohttp import web

from workbench.testing.openai_stub_batches import PREFIXES as BATCH_PREFIXES
from workbench.testing.openai_stub_batches import BatchEndpoints
from workbench.testing.openai_stub_finetuning import PREFIXES as FINE_TUNING_PREFIXES
from workbench.testing.openai_stub_finetuning import FineTuningEndpoints

if TYPE_CHECKING:  # only for annotations
    from typing_extensions import Self

__all__ = [
    "FAULTS",
    "PERMANENT_FAULTS",
    "STRICT_FINE_TUNED_UNSUPPORTED_KEYWORDS",
    "STRICT_STRING_FORMATS",
    "STRICT_UNSUPPORTED_KEYWORDS",
    "SchemaViolation",
    "StubConfig",
    "StubLoraModule",
    "StubServer",
    "check_response_format",
    "default_answer",
    "main",
    "read_request_log",
    "schema_example",
    "select_fault",
]

#: Every fault name the stub understands.
FAULTS: tuple[str, ...] = (
    "rate_limit",
    "server_error",
    "slow",
    "malformed_body",
    "truncated_body",
    "disconnect",
    "malformed_content",
    "truncated_content",
)

#: Faults that are answers rather than transport errors: they hit every attempt.
PERMANENT_FAULTS: frozenset[str] = frozenset({"malformed_content", "truncated_content"})

MODEL_ID = "stub-model"

# Content sent for the ``malformed_content`` fault: looks like what a chatty
# model produces when it ignores the JSON instruction.
MALFORMED_CONTENT = "Sure! The label is {label: complaint,,"

# Guards against a client streaming garbage at us forever; aiohttp's own
# default (1 MiB) would turn a long prompt into a 413.
_MAX_BODY_BYTES = 64 * 1024 * 1024
# A file upload may be as large as OpenAI allows one (512 MB; a batch input file up to 200 MB).
_MAX_FILE_BYTES = 512 * 1024 * 1024

_LABELS_RE = re.compile(r"^[ \t]*labels[ \t]*:[ \t]*(.*?)[ \t]*$", re.IGNORECASE | re.MULTILINE)

# -- OpenAI's strict Structured Outputs rules ------------------------------------------------
#
# Checked against OpenAI's Structured Outputs guide, section "Supported schemas"
# (https://platform.openai.com/docs/guides/structured-outputs#supported-schemas), read in a
# verbatim copy of its current text (robobenjie/battlebuddy, .cursor/rules/OpenAIDoc.md), and
# against pydantic-ai's OpenAI profile (`_STRICT_INCOMPATIBLE_KEYS` and
# `_STRICT_COMPATIBLE_STRING_FORMATS` in pydantic_ai/profiles/openai.py), which tracks that page.
#
# - The guide as published with the feature (August 2024) refused, for strings, minLength,
#   maxLength, pattern and format; for numbers minimum, maximum and multipleOf; for objects
#   patternProperties, unevaluatedProperties, propertyNames, minProperties and maxProperties; for
#   arrays unevaluatedItems, contains, minContains, maxContains, minItems, maxItems, uniqueItems.
# - The current guide lists as supported: pattern and format (only the formats in
#   STRICT_STRING_FORMATS); multipleOf, maximum, exclusiveMaximum, minimum and exclusiveMinimum;
#   minItems and maxItems. It refuses the composition keywords allOf, not, dependentRequired,
#   dependentSchemas, if, then and else; for fine-tuned models it still refuses minLength,
#   maxLength, pattern, format, minimum, maximum, multipleOf, patternProperties, minItems and
#   maxItems. Keywords it does not list as supported (minLength, maxLength, the object keywords,
#   the other array keywords) stay refused here, as pydantic-ai also treats them.
# - Every object needs "additionalProperties": false and must list every property in
#   "required"; the root must be an object and not anyOf; a schema has at most 5000 object
#   properties, 10 levels of nesting and 1000 enum values; json_schema.name matches
#   ^[a-zA-Z0-9_-]{1,64}$ (the API reference: a-z, A-Z, 0-9, underscores and dashes, at most 64).
# Nesting is counted with the root as the first level. Not checked: the limits on total string
# length (120,000 characters) and on long enums.

#: Keywords OpenAI's strict mode refuses for its current (not fine-tuned) models.
STRICT_UNSUPPORTED_KEYWORDS: frozenset[str] = frozenset(
    {
        "allOf",
        "not",
        "dependentRequired",
        "dependentSchemas",
        "if",
        "then",
        "else",
        "minLength",
        "maxLength",
        "patternProperties",
        "unevaluatedProperties",
        "propertyNames",
        "minProperties",
        "maxProperties",
        "unevaluatedItems",
        "contains",
        "minContains",
        "maxContains",
        "uniqueItems",
    }
)

#: What strict mode also refuses for fine-tuned models (``StubConfig(strict_unsupported_keywords=...)``).
STRICT_FINE_TUNED_UNSUPPORTED_KEYWORDS: frozenset[str] = STRICT_UNSUPPORTED_KEYWORDS | {
    "pattern",
    "format",
    "minimum",
    "maximum",
    "multipleOf",
    "minItems",
    "maxItems",
}

#: The only values of ``format`` strict mode accepts.
STRICT_STRING_FORMATS: frozenset[str] = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"}
)

_STRICT_TYPES = frozenset({"string", "number", "boolean", "integer", "object", "array", "null"})
_STRICT_MAX_PROPERTIES = 5000
_STRICT_MAX_NESTING = 10
_STRICT_MAX_ENUM_VALUES = 1000
_SCHEMA_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

_CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
_MODELS_PATHS = frozenset({"/v1/models", "/models"})
_MODELS_BODY = json.dumps(
    {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "workbench"}]}
).encode()


@dataclass(frozen=True)
class StubLoraModule:
    """A LoRA module the stub lists as vLLM does (``--lora-modules id=root``): its `id` (the name a
    request's ``model`` gives), `root` (the adapter's path) and `parent` (its base; default the
    first of `StubConfig.models`)."""

    id: str
    root: str
    parent: str | None = None


@dataclass
class StubConfig:
    """Behaviour of a :class:`StubServer`.

    Attributes:
        delay_s: fixed delay before every response (simulates model latency).
        faults: fault names (see :data:`FAULTS`) that may be injected.
        fault_rate: fraction (0..1) of distinct request bodies that get a fault.
        retry_after_s: value of the ``Retry-After`` header on 429 answers.
        retry_after_http_date: send ``Retry-After`` as an HTTP date (now +
            `retry_after_s`, rounded up to the next whole second) instead of seconds.
        slow_s: extra delay of the ``slow`` fault; meant to exceed the client timeout.
        hang_after_ok: after this many ``ok`` answers every further chat
            request is logged as ``hang`` and never answered.
        status_for_all: answer every chat request with this HTTP status (400..599)
            and an OpenAI-shaped error body, e.g. 401 for a refused key; ``None``: off.
        strict_unsupported_keywords: the JSON-schema keywords a strict
            ``json_schema`` request may not use (see :data:`STRICT_UNSUPPORTED_KEYWORDS`).
        log_path: JSON-lines request log to append to, or ``None``.
        models: the base models served (vLLM's ``--served-model-name``); with these or
            `lora_modules`, only the listed names are answered (others: 404).
        lora_modules: the LoRA modules served (:class:`StubLoraModule`), listed with ``root``
            and ``parent``.
        lora_adapters: llama-server's ``GET /lora-adapters`` answer (each ``{"id", "path",
            "scale"}``), or ``None``: that path is not there (404).
    """

    delay_s: float = 0.0
    faults: tuple[str, ...] = ()
    fault_rate: float = 0.0
    retry_after_s: float = 1.0
    retry_after_http_date: bool = False
    slow_s: float = 30.0
    hang_after_ok: int | None = None
    status_for_all: int | None = None
    strict_unsupported_keywords: frozenset[str] = STRICT_UNSUPPORTED_KEYWORDS
    log_path: str | None = None
    models: tuple[str, ...] = ()
    lora_modules: tuple[StubLoraModule, ...] = ()
    lora_adapters: tuple[dict, ...] | None = None

    def __post_init__(self) -> None:
        self.faults = tuple(self.faults)
        self.models, self.lora_modules = tuple(self.models), tuple(self.lora_modules)
        if self.lora_modules and not self.models:
            raise ValueError("lora_modules need the base they are served on: give models too")
        unknown = [f for f in self.faults if f not in FAULTS]
        if unknown:
            raise ValueError(f"unknown fault(s) {unknown}; known: {', '.join(FAULTS)}")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be within [0, 1], got {self.fault_rate}")
        if self.delay_s < 0 or self.slow_s < 0 or self.retry_after_s < 0:
            raise ValueError("delay_s, slow_s and retry_after_s must be >= 0")
        if self.hang_after_ok is not None and self.hang_after_ok < 0:
            raise ValueError("hang_after_ok must be >= 0 or None")
        if self.status_for_all is not None and not 400 <= self.status_for_all <= 599:
            raise ValueError(f"status_for_all must be within [400, 599] or None, got {self.status_for_all}")
        self.strict_unsupported_keywords = frozenset(self.strict_unsupported_keywords)


def select_fault(body_sha256: str, faults: tuple[str, ...] | list[str], fault_rate: float) -> str | None:
    """Return the fault configured for a request body hash, or ``None``.

    This ignores the attempt number; :class:`StubServer` applies non-permanent
    faults on the first attempt only.  Exposed so tests can predict outcomes.
    """
    if not faults or fault_rate <= 0.0:
        return None
    if (int(body_sha256[:8], 16) % 1000) / 1000 >= fault_rate:
        return None
    return faults[int(body_sha256[8:16], 16) % len(faults)]


def _message_text(message: Any) -> str:
    """Flatten a chat message's content (string or list of parts) to text."""
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(parts)
    return ""


def _last_user_text(body: dict) -> str:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _message_text(message)
    return ""


def default_answer(body: dict) -> str:
    """Deterministic default answer as a JSON string.

    A request that carries a schema (``response_format`` of type ``json_schema``,
    or llama.cpp's ``json_object`` with a ``schema``) gets :func:`schema_example`
    of that schema, so a client that enforces the schema can parse the answer.
    Otherwise the answer is ``{"label": X}``: X is picked from a ``Labels: a, b, c``
    line in the last user message by the SHA-256 of that message's text, so the
    same prompt always gets the same label; without such a line the label is
    ``"unknown"``.
    """
    schema = _response_schema(body)
    if schema is not None:
        return json.dumps(schema_example(schema))
    text = _last_user_text(body)
    match = _LABELS_RE.search(text)
    labels = [s.strip() for s in match.group(1).split(",")] if match else []
    labels = [s for s in labels if s]
    if not labels:
        return json.dumps({"label": "unknown"})
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return json.dumps({"label": labels[int(digest[:8], 16) % len(labels)]})


def _response_schema(body: dict) -> dict | None:
    """The JSON schema the request's ``response_format`` asks the answer to follow, or None."""
    response_format = body.get("response_format")
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
    elif response_format.get("type") == "json_object":
        schema = response_format.get("schema")
    else:
        return None
    return schema if isinstance(schema, dict) else None


def schema_example(schema: dict, *, _root: dict | None = None, _depth: int = 0) -> Any:
    """The simplest value that follows `schema` (the subset strict mode supports).

    Objects get every property; a ``const`` or the first ``enum`` value wins;
    otherwise strings are ``""``, numbers the ``minimum`` or 0, booleans ``False``,
    arrays ``minItems`` items (usually none); ``anyOf`` takes its first branch and
    ``$ref`` (``#`` or ``#/$defs/...``) is followed.  A recursion deeper than 32
    levels ends in ``None``.
    """
    root = schema if _root is None else _root
    if not isinstance(schema, dict) or _depth > 32:
        return None
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    if isinstance(schema.get("$ref"), str):
        return schema_example(_resolve_ref(root, schema["$ref"]), _root=root, _depth=_depth + 1)
    any_of = schema.get("anyOf")
    if isinstance(any_of, list) and any_of:
        return schema_example(any_of[0], _root=root, _depth=_depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((t for t in kind if t != "null"), "null")
    properties = schema.get("properties")
    if kind == "object" or isinstance(properties, dict):
        properties = properties if isinstance(properties, dict) else {}
        return {key: schema_example(value, _root=root, _depth=_depth + 1) for key, value in properties.items()}
    if kind == "array":
        count = schema.get("minItems") if isinstance(schema.get("minItems"), int) else 0
        return [schema_example(schema.get("items", {}), _root=root, _depth=_depth + 1) for _ in range(count)]
    if kind == "string":
        return ""
    if kind in ("integer", "number"):
        minimum = schema.get("minimum")
        if isinstance(minimum, (int, float)) and not isinstance(minimum, bool):
            return math.ceil(minimum) if kind == "integer" else minimum
        return 0
    if kind == "boolean":
        return False
    return None


def _resolve_ref(root: dict, ref: str) -> Any:
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        return None
    node: Any = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


@dataclass(frozen=True)
class SchemaViolation:
    """Why a ``response_format`` breaks OpenAI's strict Structured Outputs rules.

    Attributes:
        rule: which rule (``name_pattern``, ``schema_missing``, ``root_object``,
            ``additional_properties``, ``required_all``, ``unsupported_keyword``,
            ``unsupported_type``, ``unsupported_format``, ``type_required``,
            ``nesting_depth``, ``too_many_properties``, ``too_many_enum_values``);
            also the error body's ``code``.
        path: where in the schema, as keys from its root, e.g. ``("properties", "label")``.
        message: OpenAI's wording, naming the rule and the path.
        param: the request parameter at fault, as OpenAI names it.
    """

    rule: str
    path: tuple[str | int, ...]
    message: str
    param: str = "response_format"


def check_response_format(
    response_format: Any, *, unsupported_keywords: frozenset[str] = STRICT_UNSUPPORTED_KEYWORDS
) -> SchemaViolation | None:
    """The first way `response_format` breaks OpenAI's strict-mode rules, or None when it keeps them.

    Only ``{"type": "json_schema", ...}`` is checked: its ``json_schema`` needs a
    ``name`` matching ``^[a-zA-Z0-9_-]{1,64}$`` and a ``schema`` object; with
    ``"strict": true`` the schema must also keep strict mode's rules: the root is an
    object (not ``anyOf``); every object has ``"additionalProperties": false`` and
    lists all its properties in ``required``; no keyword in `unsupported_keywords`
    (default :data:`STRICT_UNSUPPORTED_KEYWORDS`); ``format`` only from
    :data:`STRICT_STRING_FORMATS`; the documented limits on properties, nesting
    and enum values.  Without ``strict`` OpenAI takes any schema as a hint, and
    so does the stub.
    """
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict):
        return SchemaViolation(
            "schema_missing",
            (),
            "Missing required parameter: 'response_format.json_schema'.",
            "response_format.json_schema",
        )
    name = spec.get("name")
    if not isinstance(name, str) or not _SCHEMA_NAME_RE.match(name):
        return SchemaViolation(
            "name_pattern",
            (),
            f"Invalid 'response_format.json_schema.name': string does not match pattern. Expected a string that "
            f"matches the pattern '{_SCHEMA_NAME_RE.pattern}', got {name!r} (strict mode rule: name_pattern).",
            "response_format.json_schema.name",
        )
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        return SchemaViolation(
            "schema_missing",
            (),
            f"Invalid schema for response_format {name!r}: 'schema' must be "
            f"a JSON schema object, got {type(schema).__name__} (strict mode rule: schema_missing).",
        )
    if spec.get("strict") is not True:
        return None
    return _StrictChecker(name, unsupported_keywords).check(schema)


class _StrictChecker:
    """Walks one schema for :func:`check_response_format`; stops at the first violation."""

    def __init__(self, name: str, unsupported: frozenset[str]) -> None:
        self.name = name
        self.unsupported = unsupported
        self.properties = 0
        self.enum_values = 0

    def check(self, schema: dict) -> SchemaViolation | None:
        if schema.get("type") != "object" or "anyOf" in schema:
            return self._violation(
                "root_object",
                (),
                "the root schema must be an object ('type': 'object') and must not use anyOf, "
                f"got type {schema.get('type')!r}",
            )
        problem = self._node(schema, (), 0)
        if problem is None:
            for key in ("$defs", "definitions"):
                definitions = schema.get(key)
                if isinstance(definitions, dict):
                    for def_name, definition in definitions.items():
                        problem = problem or self._node(definition, (key, def_name), 0)
        return problem

    def _violation(self, rule: str, path: tuple[str | int, ...], detail: str) -> SchemaViolation:
        message = (
            f"Invalid schema for response_format {self.name!r}: In context={path!r}, {detail} "
            f"(strict mode rule: {rule})."
        )
        return SchemaViolation(rule, path, message)

    def _node(self, node: Any, path: tuple[str | int, ...], depth: int) -> SchemaViolation | None:
        if not isinstance(node, dict):
            return self._violation("type_required", path, f"a schema must be an object with a 'type' key, got {node!r}")
        for key in node:
            if key in self.unsupported:
                return self._violation("unsupported_keyword", path, f"'{key}' is not permitted")
        if not any(key in node for key in ("type", "anyOf", "$ref", "enum", "const")):
            return self._violation("type_required", path, "schema must have a 'type' key")
        kinds = node.get("type")
        kinds = kinds if isinstance(kinds, list) else [] if kinds is None else [kinds]
        for kind in kinds:
            if kind not in _STRICT_TYPES:
                return self._violation(
                    "unsupported_type", path, f"type {kind!r} is not supported; use one of {sorted(_STRICT_TYPES)}"
                )
        if "format" in node and node["format"] not in STRICT_STRING_FORMATS:
            return self._violation(
                "unsupported_format",
                path,
                f"format {node['format']!r} is not supported; use one of {sorted(STRICT_STRING_FORMATS)}",
            )
        enum = node.get("enum")
        if isinstance(enum, list):
            self.enum_values += len(enum)
            if self.enum_values > _STRICT_MAX_ENUM_VALUES:
                return self._violation(
                    "too_many_enum_values", path, f"a schema may have at most {_STRICT_MAX_ENUM_VALUES} enum values"
                )
        if "object" in kinds or "properties" in node:
            problem = self._object(node, path, depth + 1)
            if problem is not None:
                return problem
        items = node.get("items")
        if isinstance(items, dict):
            problem = self._node(items, (*path, "items"), depth)
            if problem is not None:
                return problem
        any_of = node.get("anyOf")
        if isinstance(any_of, list):
            for index, branch in enumerate(any_of):
                problem = self._node(branch, (*path, "anyOf", index), depth)
                if problem is not None:
                    return problem
        return None

    def _object(self, node: dict, path: tuple[str | int, ...], depth: int) -> SchemaViolation | None:
        if depth > _STRICT_MAX_NESTING:
            return self._violation(
                "nesting_depth", path, f"objects may be nested at most {_STRICT_MAX_NESTING} levels deep"
            )
        if node.get("additionalProperties") is not False:
            return self._violation(
                "additional_properties", path, "'additionalProperties' is required to be supplied and to be false"
            )
        properties = node.get("properties", {})
        if not isinstance(properties, dict):
            return self._violation("type_required", (*path, "properties"), "'properties' must be an object")
        required = node.get("required", [])
        required = required if isinstance(required, list) else []
        missing = [key for key in properties if key not in required]
        if missing or not isinstance(node.get("required", []), list):
            return self._violation(
                "required_all",
                path,
                "'required' is required to be supplied and to be an array including every "
                f"key in properties. Missing {missing}",
            )
        extra = [key for key in required if key not in properties]
        if extra:
            return self._violation("required_all", path, f"Extra required key(s) {extra} supplied")
        self.properties += len(properties)
        if self.properties > _STRICT_MAX_PROPERTIES:
            return self._violation(
                "too_many_properties", path, f"a schema may have at most {_STRICT_MAX_PROPERTIES} object properties"
            )
        for key, value in properties.items():
            problem = self._node(value, (*path, "properties", key), depth)
            if problem is not None:
                return problem
        return None


def _error_json(message: str, type_: str, code: str | None, param: str | None = None) -> bytes:
    # Same envelope as the OpenAI API so the SDK's error parsing is exercised.
    return json.dumps(_error_body(message, type_, code, param)).encode()


def _error_body(message: str, type_: str, code: str | None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


# The errors OpenAI answers when it refuses the key, the account or the model.
_STATUS_ERRORS: dict[int, tuple[str, str, str | None]] = {
    401: ("Incorrect API key provided (stub: status_for_all=401).", "invalid_request_error", "invalid_api_key"),
    403: (
        "You are not allowed to use this model (stub: status_for_all=403).",
        "invalid_request_error",
        "model_not_allowed",
    ),
    404: (
        "The model {model!r} does not exist or you do not have access to it (stub: status_for_all=404).",
        "invalid_request_error",
        "model_not_found",
    ),
}


def _format_seconds(value: float) -> str:
    # "1" rather than "1.0": some clients only accept integer Retry-After.
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _json_response(
    request: web.BaseRequest, status: int, body: bytes, headers: dict[str, str] | None = None
) -> web.Response:
    response = web.Response(status=status, body=body, content_type="application/json", headers=headers)
    if request.keep_alive:
        # aiohttp leaves the header out on HTTP/1.1 keep-alive; saying it lets a
        # raw-socket client (and the tests) see the connection is kept.
        response.headers["Connection"] = "keep-alive"
    return response


def read_request_log(path: str | os.PathLike[str]) -> list[dict]:
    """Read a request log written by the stub; returns one dict per line.

    A partially written last line (e.g. the server was killed mid-write) is
    ignored rather than raising.
    """
    records: list[dict] = []
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    except FileNotFoundError:
        return []
    return records


class _AnswerFailed(Exception):
    """The server's ``answer()`` raised or returned a non-string; becomes a 500."""


class _Call:
    """One chat completion request on its way through a fault handler."""

    __slots__ = ("server", "request", "digest", "attempt", "body", "logged", "ok_reserved")

    def __init__(self, server: StubServer, request: web.BaseRequest, digest: str, attempt: int) -> None:
        self.server = server
        self.request = request
        self.digest = digest
        self.attempt = attempt
        self.body: dict = {}
        self.logged = False
        self.ok_reserved = False

    def log(self, outcome: str, status: int | None) -> None:
        self.server._log(self.digest, self.attempt, outcome, status)
        self.logged = True

    async def send(
        self, status: int, payload: bytes, outcome: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        """Write a whole response, wait until the kernel took every byte, then log it.

        Raises ConnectionError if the peer is gone.  Not logged again if the
        fault already logged itself when it started (``slow``).
        """
        response = _json_response(self.request, status, payload, headers)
        await response.prepare(self.request)
        # write_eof() drains; with the transport's high-water mark at 0 (see
        # StubServer._chat) that means "nothing left unsent".
        await response.write_eof()
        if not self.logged:
            self.log(outcome, status)
        return response

    def content(self) -> str:
        """The answer to this request from the server's ``answer()``; raises _AnswerFailed."""
        return _answer_content(self.server.answer, self.body)

    def completion(self, content: str, finish_reason: str = "stop") -> bytes:
        completion_id = f"chatcmpl-{self.digest[:24]}-{self.attempt}"
        payload = _completion_body(self.body, content, completion_id, finish_reason)
        return json.dumps(payload, separators=(",", ":")).encode()


def _answer_content(answer: Callable[[dict], str], body: dict) -> str:
    """`answer`'s content for `body`; raises _AnswerFailed when it raises or returns a non-string."""
    try:
        content = answer(body)
    except Exception as exc:  # noqa: BLE001 -- a broken custom answer() becomes a 500, not a dead server
        raise _AnswerFailed(f"answer() raised {exc!r}") from exc
    if not isinstance(content, str):
        raise _AnswerFailed(f"answer() must return str, got {type(content).__name__}")
    return content


def _completion_body(body: dict, content: str, completion_id: str, finish_reason: str = "stop") -> dict:
    """The ``chat.completion`` object answering `body` with `content` (usage counted in words)."""
    messages = body.get("messages")
    prompt_tokens = 0
    if isinstance(messages, list):
        prompt_tokens = sum(len(_message_text(m).split()) for m in messages)
    prompt_tokens = max(1, prompt_tokens)
    completion_tokens = max(1, len(content.split()))
    model = body.get("model")
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model if isinstance(model, str) and model else MODEL_ID,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "system_fingerprint": "stub",
    }


# -- one handler per outcome -----------------------------------------------------------------


async def _ok(call: _Call) -> web.StreamResponse:
    response = await call.send(200, call.completion(call.content()), "ok")
    call.server._ok_done += 1
    call.ok_reserved = False  # consumed, not released
    return response


async def _rate_limit(call: _Call) -> web.StreamResponse:
    error = _error_json("Rate limit reached (stub fault injection)", "requests", "rate_limit_exceeded")
    config = call.server.config
    if config.retry_after_http_date:
        # An HTTP date has whole seconds: round up, so that the wait is never shorter than asked.
        retry_after = formatdate(math.ceil(time.time() + config.retry_after_s), usegmt=True)
    else:
        retry_after = _format_seconds(config.retry_after_s)
    return await call.send(429, error, "rate_limit", headers={"Retry-After": retry_after})


async def _server_error(call: _Call) -> web.StreamResponse:
    error = _error_json("Internal server error (stub fault injection)", "server_error", None)
    return await call.send(500, error, "server_error")


async def _slow(call: _Call) -> web.StreamResponse:
    call.log("slow", 200)
    await asyncio.sleep(call.server.config.slow_s)
    # A patient client still gets a good answer (already logged above, so once).
    return await call.send(200, call.completion(call.content()), "slow")


async def _malformed_body(call: _Call) -> web.StreamResponse:
    payload = call.completion(call.content())
    # A complete HTTP response whose JSON body stops half-way.
    return await call.send(200, payload[: len(payload) // 2], "malformed_body")


async def _truncated_body(call: _Call) -> web.StreamResponse:
    payload = call.completion(call.content())
    call.log("truncated_body", 200)
    # Promise the full length, deliver half, hang up.
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = len(payload)
    response.force_close()
    await response.prepare(call.request)
    await response.write(payload[: len(payload) // 2])
    if call.request.transport is not None:
        call.request.transport.close()  # close() still flushes what was written before the FIN
    return response


async def _disconnect(call: _Call) -> web.StreamResponse:
    call.log("disconnect", None)
    if call.request.transport is not None:
        # A FIN with no response, as from a server that crashed mid-request.
        call.request.transport.close()
    # Never sent: aiohttp's write to the closing transport fails and is ignored.
    return web.Response(status=500)


async def _malformed_content(call: _Call) -> web.StreamResponse:
    call.content()  # a broken answer() is still an answer_error, as without the fault
    return await call.send(200, call.completion(MALFORMED_CONTENT), "malformed_content")


async def _truncated_content(call: _Call) -> web.StreamResponse:
    content = call.content()
    # Cut mid-value (e.g. '{"label": "compl'): a strict prefix of a JSON
    # object is never valid JSON.
    content = content[: max(1, min(len(content) - 1, len(content) * 3 // 4))]
    return await call.send(200, call.completion(content, finish_reason="length"), "truncated_content")


async def _hang(call: _Call) -> web.StreamResponse:
    call.log("hang", None)
    # Never answer; the connection stays open until the client or stop()
    # closes it, which cancels this handler.
    await asyncio.get_running_loop().create_future()
    raise AssertionError("unreachable: only cancellation ends the wait")


async def _bad_request(
    call: _Call, message: str, code: str | None = None, param: str | None = None
) -> web.StreamResponse:
    if call.server.config.delay_s:
        await asyncio.sleep(call.server.config.delay_s)
    return await call.send(400, _error_json(message, "invalid_request_error", code, param), "bad_request")


async def _status_for_all(call: _Call) -> web.StreamResponse:
    status = call.server.config.status_for_all or 500  # only called when it is set
    model = call.body.get("model")
    message, type_, code = _STATUS_ERRORS.get(
        status,
        (
            f"HTTP {status} (stub: status_for_all={status})",
            "server_error" if status >= 500 else "invalid_request_error",
            None,
        ),
    )
    if call.server.config.delay_s:
        await asyncio.sleep(call.server.config.delay_s)
    return await call.send(status, _error_json(message.format(model=model), type_, code), "status_for_all")


async def _model_not_found(call: _Call) -> web.StreamResponse:
    # vLLM's answer to a model it does not serve (serving_engine's _check_model).
    error = _error_json(f"The model `{call.body.get('model')}` does not exist.", "NotFoundError", "404", "model")
    return await call.send(404, error, "model_not_found")


def _serves(config: StubConfig, model: Any) -> bool:
    """Whether a chat request for `model` is answered: any name when the stub lists no models of its own."""
    if not config.models and not config.lora_modules:
        return True
    return model in config.models or any(module.id == model for module in config.lora_modules)


def _models_body(config: StubConfig) -> bytes:
    """``GET /v1/models``: the default listing, or `config`'s models and LoRA modules in vLLM's shape."""
    if not config.models and not config.lora_modules:
        return _MODELS_BODY
    card = {"object": "model", "created": 0, "owned_by": "vllm", "permission": []}
    data = [{"id": name, **card, "root": name, "parent": None, "max_model_len": 2048} for name in config.models]
    data += [{"id": m.id, **card, "root": m.root, "parent": m.parent or config.models[0], "max_model_len": None}
             for m in config.lora_modules]
    return json.dumps({"object": "list", "data": data}).encode()


#: Handler per fault; ``None`` is the normal answer.
_FAULT_HANDLERS: dict[str | None, Callable[[_Call], Awaitable[web.StreamResponse]]] = {
    None: _ok,
    "rate_limit": _rate_limit,
    "server_error": _server_error,
    "slow": _slow,
    "malformed_body": _malformed_body,
    "truncated_body": _truncated_body,
    "disconnect": _disconnect,
    "malformed_content": _malformed_content,
    "truncated_content": _truncated_content,
}


class StubServer:
    """OpenAI-compatible stub server; run it in-process (async or in a thread).

    Example (pytest fixture)::

        server = StubServer(StubConfig(delay_s=0.01))
        server.start_in_thread()
        client = openai.OpenAI(base_url=server.base_url, api_key="test")
        ...
        server.stop_thread()
    """

    def __init__(
        self,
        config: StubConfig | None = None,
        answer: Callable[[dict], str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.config = config if config is not None else StubConfig()
        self.answer: Callable[[dict], str] = answer if answer is not None else default_answer
        self.host = host
        self.port = port
        #: Every log record written by this server instance, in order (also when no log file).
        self.records: list[dict] = []
        #: TCP connections accepted so far (lets tests check keep-alive reuse).
        self.connections_accepted = 0
        #: The ``Authorization`` header of every chat request received, in order (None when absent),
        #: so tests can assert which key reached this endpoint. Kept in memory only, never in the log.
        self.authorizations: list[str | None] = []
        #: Uploaded files and fine-tuning jobs (`workbench.testing.openai_stub_finetuning`).
        self.fine_tuning = FineTuningEndpoints()
        #: Batches (`workbench.testing.openai_stub_batches`), their files kept with the ones above.
        self.batches = BatchEndpoints(self.fine_tuning, self._answer_without_fault)
        self._attempts: dict[str, int] = {}
        self._ok_reserved = 0
        self._ok_done = 0
        self._chat_tasks: set[asyncio.Task] = set()
        self._web: web.Server | None = None
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._log_file: Any = None
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None

    @property
    def base_url(self) -> str:
        """Base URL for the OpenAI SDK, e.g. ``http://127.0.0.1:12345/v1``."""
        if self._server is None:
            raise RuntimeError("server is not started")
        return f"http://{self.host}:{self.port}/v1"

    @property
    def ok_count(self) -> int:
        """Number of ``ok`` responses fully written so far."""
        return self._ok_done

    def attempts(self, body_sha256: str) -> int:
        """How many requests with this body hash were seen so far."""
        return self._attempts.get(body_sha256, 0)

    def wait_for_records(self, count: int, timeout: float = 5.0) -> list[dict]:
        """Wait until at least ``count`` log records exist; returns a copy of them.

        A line is written just *after* its response, so a client thread can
        see the response a moment before the line exists: poll, don't assume.
        Raises TimeoutError if the records do not appear in time.
        """
        deadline = time.monotonic() + timeout
        while len(self.records) < count:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{len(self.records)} of {count} log records after {timeout}s")
            time.sleep(0.002)
        return list(self.records)

    def _log(self, digest: str, attempt: int, outcome: str, status: int | None) -> None:
        record = {"t": time.time(), "body_sha256": digest, "attempt": attempt, "outcome": outcome, "status": status}
        self.records.append(record)
        if self._log_file is not None:
            # One write + flush per line so a killed client or server leaves a
            # log that is complete up to the last finished request.
            self._log_file.write(json.dumps(record) + "\n")
            self._log_file.flush()

    # -- request handling ------------------------------------------------------------------------

    async def _route(self, request: web.BaseRequest) -> web.StreamResponse:
        path, method = request.path, request.method
        if path in _CHAT_PATHS:
            if method == "POST":
                return await self._chat(request)
            return _json_response(request, 405, _error_json("use POST", "invalid_request_error", None))
        if path in _MODELS_PATHS and method == "GET":
            return _json_response(request, 200, _models_body(self.config))
        if path == "/lora-adapters" and method == "GET" and self.config.lora_adapters is not None:
            return _json_response(request, 200, json.dumps(list(self.config.lora_adapters)).encode())
        if path.startswith(FINE_TUNING_PREFIXES):
            self.authorizations.append(request.headers.get("Authorization"))
            return await self.fine_tuning.handle(request)
        if path.startswith(BATCH_PREFIXES):
            self.authorizations.append(request.headers.get("Authorization"))
            return await self.batches.handle(request)
        return _json_response(request, 404, _error_json(f"no route for {method} {path}", "invalid_request_error", None))

    async def _chat(self, request: web.BaseRequest) -> web.StreamResponse:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            message = f"request body larger than {_MAX_BODY_BYTES} bytes"
            return _json_response(request, 413, _error_json(message, "invalid_request_error", None))
        except ConnectionError:
            return web.Response(status=400)  # the client left mid-body: nobody to answer, nothing to log
        if request.transport is not None:
            # high=0: the transport pauses aiohttp's writer whenever anything is
            # left unsent, so write_eof() returns only once the kernel has every
            # byte, which is what "logged after the response was written" needs.
            request.transport.set_write_buffer_limits(high=0)
        self.authorizations.append(request.headers.get("Authorization"))
        digest = hashlib.sha256(raw).hexdigest()
        attempt = self._attempts.get(digest, 0) + 1
        self._attempts[digest] = attempt
        call = _Call(self, request, digest, attempt)
        cfg = self.config
        task = asyncio.current_task()
        if task is not None:
            self._chat_tasks.add(task)  # stop() cancels these and waits for their "aborted" lines
        try:
            if cfg.hang_after_ok is not None and self._ok_reserved >= cfg.hang_after_ok:
                return await _hang(call)
            try:
                body = json.loads(raw)
            except ValueError as exc:
                body = f"invalid JSON body: {exc}"
            if isinstance(body, dict):
                call.body = body
            if cfg.status_for_all is not None:
                # Key, account and model are refused before the request itself is looked at.
                return await _status_for_all(call)
            if not isinstance(body, dict):
                return await _bad_request(call, body if isinstance(body, str) else "request body must be a JSON object")
            if not _serves(cfg, body.get("model")):
                return await _model_not_found(call)
            violation = check_response_format(
                body.get("response_format"), unsupported_keywords=cfg.strict_unsupported_keywords
            )
            if violation is not None:
                # A request error: every attempt of this body gets it, whatever the faults.
                return await _bad_request(call, violation.message, violation.rule, violation.param)

            fault = select_fault(digest, cfg.faults, cfg.fault_rate)
            if fault is not None and attempt > 1 and fault not in PERMANENT_FAULTS:
                fault = None
            if fault is None:
                # Reserve the ok now so hang_after_ok yields exactly N oks even
                # with many requests in flight; released below if it fails.
                self._ok_reserved += 1
                call.ok_reserved = True
            if cfg.delay_s:
                await asyncio.sleep(cfg.delay_s)
            try:
                return await _FAULT_HANDLERS[fault](call)
            except _AnswerFailed as exc:
                return await call.send(500, _error_json(str(exc), "server_error", None), "answer_error")
        except asyncio.CancelledError:
            # The peer went away (aiohttp cancels the handler: handler_cancellation)
            # or the server stops.
            if not call.logged:
                self._log(digest, attempt, "aborted", None)
            raise
        except ConnectionError:
            # Lost before or while the response was being written; aiohttp's own
            # attempt to send this placeholder fails the same way and is ignored.
            if not call.logged:
                self._log(digest, attempt, "aborted", None)
            return web.Response(status=500)
        finally:
            if task is not None:
                self._chat_tasks.discard(task)
            if call.ok_reserved:
                self._ok_reserved -= 1

    def _answer_without_fault(self, body: dict) -> tuple[int, dict]:
        """How ``POST /v1/chat/completions`` answers `body` when no fault is drawn: (status, JSON body).

        200 and the ok path's ``chat.completion`` (the same content, usage and ``finish_reason``),
        400 when ``response_format`` breaks strict mode, 500 when ``answer()`` fails. Answers a
        batch's lines; the request log, attempts and ``status_for_all`` are the chat endpoint's own.
        """
        violation = check_response_format(
            body.get("response_format"), unsupported_keywords=self.config.strict_unsupported_keywords
        )
        if violation is not None:
            return 400, _error_body(violation.message, "invalid_request_error", violation.rule, violation.param)
        try:
            content = _answer_content(self.answer, body)
        except _AnswerFailed as exc:
            return 500, _error_body(str(exc), "server_error", None)
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        return 200, _completion_body(body, content, f"chatcmpl-{digest[:24]}-batch")

    def _make_request(self, message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> web.BaseRequest:
        # aiohttp's default request factory, with our body limit (a larger one for file uploads).
        limit = _MAX_FILE_BYTES if message.path.startswith(("/v1/files", "/files")) else _MAX_BODY_BYTES
        return web.BaseRequest(message, payload, protocol, writer, task, self._loop, client_max_size=limit)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and start listening; sets :attr:`port` to the bound port."""
        if self._server is not None:
            raise RuntimeError("server already started")
        self._loop = loop = asyncio.get_running_loop()
        # handler_cancellation: a client that hangs up (or half-closes: aiohttp
        # does not keep half-open connections) cancels its handler, which logs
        # "aborted" instead of claiming a response reached a dead client.
        self._web = web_server = web.Server(
            self._route, request_factory=self._make_request, handler_cancellation=True, access_log=None
        )

        def accept() -> web.RequestHandler:
            self.connections_accepted += 1
            return web_server()

        if self.config.log_path:
            # Kept open for the server's lifetime; a local append-open is instant.
            self._log_file = open(self.config.log_path, "a", encoding="utf-8")  # noqa: ASYNC230, SIM115
        try:
            self._server = await loop.create_server(accept, self.host, self.port, backlog=1024, reuse_address=True)
        except BaseException:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
            raise
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening, drop open connections (in-flight requests log ``aborted``)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = list(self._chat_tasks)
        connections = self._web.connections if self._web is not None else []
        for handler in connections:
            if handler.transport is not None:
                handler.transport.abort()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
        # Let abort()'s connection_lost callbacks run before closing the log.
        await asyncio.sleep(0)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def start_in_thread(self, timeout: float = 10.0) -> None:
        """Start the server on its own event loop in a daemon thread (for sync tests)."""
        if self._thread is not None:
            raise RuntimeError("server thread already running")
        started = threading.Event()
        error: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._thread_loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # noqa: BLE001 -- re-raised in the caller's thread below
                error.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name=f"openai-stub-{id(self):x}", daemon=True)
        self._thread.start()
        if not started.wait(timeout):
            raise RuntimeError("stub server did not start in time")
        if error:
            self._thread.join()
            self._thread = None
            raise error[0]

    def stop_thread(self, timeout: float = 10.0) -> None:
        """Stop a server started with :meth:`start_in_thread` and join its thread."""
        thread, loop = self._thread, self._thread_loop
        if thread is None or loop is None:
            return
        future = asyncio.run_coroutine_threadsafe(self.stop(), loop)
        try:
            future.result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            self._thread = None
            self._thread_loop = None

    def __enter__(self) -> Self:
        self.start_in_thread()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_thread()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m workbench.testing.openai_stub",
        description="OpenAI-compatible stub server with deterministic fault injection.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--delay", type=float, default=0.0, help="answer delay in seconds")
    parser.add_argument("--faults", default="", help=f"comma-separated subset of: {','.join(FAULTS)}")
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--retry-after", type=float, default=1.0, help="Retry-After seconds on 429")
    parser.add_argument("--retry-after-date", action="store_true", help="send Retry-After as an HTTP date")
    parser.add_argument("--status-for-all", type=int, default=None, help="answer every chat request with this status")
    parser.add_argument("--slow", type=float, default=30.0, help="extra delay of the 'slow' fault")
    parser.add_argument("--hang-after-ok", type=int, default=None)
    parser.add_argument("--log", default=None, help="JSON-lines request log path")
    parser.add_argument("--port-file", default=None, help="write the bound port here once listening")
    return parser.parse_args(argv)


def _write_port_file(path: str, port: int) -> None:
    # Write-then-rename so a poller never reads a half-written port.
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(f"{port}\n")
    os.replace(tmp, path)


async def _serve(args: argparse.Namespace) -> None:
    config = StubConfig(
        delay_s=args.delay,
        faults=tuple(f.strip() for f in args.faults.split(",") if f.strip()),
        fault_rate=args.fault_rate,
        retry_after_s=args.retry_after,
        retry_after_http_date=args.retry_after_date,
        slow_s=args.slow,
        hang_after_ok=args.hang_after_ok,
        status_for_all=args.status_for_all,
        log_path=args.log,
    )
    server = StubServer(config, host=args.host, port=args.port)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.port_file:
        _write_port_file(args.port_file, server.port)
    print(f"listening on {server.base_url}", flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; serves until SIGTERM/SIGINT. Returns the exit status."""
    args = _parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except ValueError as exc:  # bad --faults / --fault-rate
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
