"""A fake model for fast tests of the workbench's own code (never a stand-in for the real thing)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from workbench.models.base import ChatRequest, Completion

Answer = str | BaseException
AnswerFunction = Callable[[ChatRequest], Answer]


class FakeModel:
    """Answers from a function of the request, or from a queue of answers in call order.

    An answer that is an exception is raised instead of returned. Every request is recorded in
    `calls`, so tests can count what was sent.
    """

    def __init__(
        self,
        answer: AnswerFunction | list[Answer] | str = '{"label": "unknown"}',
        *,
        name: str = "fake",
        max_concurrency: int = 4,
        delay_s: float = 0.0,
    ):
        self.name = name
        self.max_concurrency = max_concurrency
        self.delay_s = delay_s
        self.calls: list[ChatRequest] = []
        self._queue = list(answer) if isinstance(answer, list) else None
        self._function = answer if callable(answer) else None
        self._fixed = answer if isinstance(answer, str) else None

    @property
    def identity(self) -> dict[str, Any]:
        return {"kind": "fake", "model": self.name}

    async def complete(self, request: ChatRequest) -> Completion:
        self.calls.append(request)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self._queue is not None:
            if not self._queue:
                raise AssertionError("FakeModel ran out of queued answers")
            answer = self._queue.pop(0)
        elif self._function is not None:
            answer = self._function(request)
        else:
            answer = self._fixed or ""
        if isinstance(answer, BaseException):
            raise answer
        words_in = sum(len(message["content"].split()) for message in request.messages)
        return Completion(
            text=answer, tokens_in=words_in, tokens_out=len(answer.split()), finish_reason="stop", latency_s=0.001
        )
