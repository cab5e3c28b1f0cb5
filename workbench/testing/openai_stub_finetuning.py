"""The stub server's files and fine-tuning jobs endpoints, as OpenAI documents them.

``POST /v1/files`` (multipart: ``purpose`` ``fine-tune`` or ``batch``, ``file``) stores a file,
``GET /v1/files/{id}`` describes it, ``GET /v1/files/{id}/content`` answers its bytes and
``DELETE /v1/files/{id}`` forgets it; the batches endpoints (`workbench.testing.openai_stub_batches`)
keep their input, output and error files here too (`add_file`). ``POST /v1/fine_tuning/jobs``
creates a job on a stored training file (and an optional validation file), and
``GET /v1/fine_tuning/jobs/{id}`` reports it. A job moves one
state per retrieval, ``validating_files`` -> ``running`` -> ``succeeded`` with a
``fine_tuned_model`` name (``ft:<model>:workbench[:<suffix>]:<id>``), or -> ``failed`` with the
error OpenAI gives when the training file breaks the chat format (checked with the workbench's own
format rules). The chat endpoint then answers that model name like any other. Setting
``fail_with`` to a message fails every job at validation with it, as a provider fails a job for
reasons of its own (a quota, a model it does not tune).
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from aiohttp import web

from workbench.trainingdata.openai_jsonl import ChatFormatError, check_chat_example, estimate_tokens

PREFIXES = ("/v1/files", "/files", "/v1/fine_tuning/jobs", "/fine_tuning/jobs")
_STATES = ("validating_files", "running", "succeeded")
_UPLOAD_PURPOSES = ("batch", "fine-tune")


class FineTuningEndpoints:
    """Files and jobs kept in memory; `handle` answers a request under one of `PREFIXES`."""

    def __init__(self) -> None:
        self.files: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, bytes] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.fail_with: str | None = None

    async def handle(self, request: web.BaseRequest) -> web.Response:
        path = request.path.removeprefix("/v1")
        parts = [part for part in path.split("/") if part]
        if parts == ["files"] and request.method == "POST":
            return await self._upload(request)
        if len(parts) == 2 and parts[0] == "files" and request.method == "GET":
            return self._found(self.files.get(parts[1]), "file", parts[1])
        if len(parts) == 3 and parts[0] == "files" and parts[2] == "content" and request.method == "GET":
            if parts[1] not in self.contents:
                return _error(404, f"no file {parts[1]!r}")
            return web.Response(status=200, body=self.contents[parts[1]], content_type="application/octet-stream")
        if len(parts) == 2 and parts[0] == "files" and request.method == "DELETE":
            if self.files.pop(parts[1], None) is None:
                return _error(404, f"no file {parts[1]!r}")
            del self.contents[parts[1]]
            return _json(200, {"id": parts[1], "object": "file", "deleted": True})
        if parts == ["fine_tuning", "jobs"] and request.method == "POST":
            return await self._create(request)
        if len(parts) == 3 and parts[:2] == ["fine_tuning", "jobs"] and request.method == "GET":
            job = self.jobs.get(parts[2])
            if job is not None:
                self._advance(job)
            return self._found(job, "fine-tuning job", parts[2])
        return _error(404, f"no route for {request.method} {request.path}")

    async def _upload(self, request: web.BaseRequest) -> web.Response:
        form = await request.post()
        purpose, upload = form.get("purpose"), form.get("file")
        if purpose not in _UPLOAD_PURPOSES:
            return _error(400, f"purpose must be one of {list(_UPLOAD_PURPOSES)} here, got {purpose!r}", "purpose")
        if upload is None or not hasattr(upload, "file"):
            return _error(400, "a file is required", "file")
        return _json(200, self.add_file(upload.file.read(), upload.filename, str(purpose)))

    def add_file(self, content: bytes, filename: str, purpose: str) -> dict[str, Any]:
        """Store `content` as a new file (as an upload does); returns its File object."""
        file_id = f"file-{secrets.token_hex(12)}"
        self.contents[file_id] = content
        self.files[file_id] = {"id": file_id, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                               "filename": filename, "purpose": purpose, "status": "processed"}
        return self.files[file_id]

    async def _create(self, request: web.BaseRequest) -> web.Response:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _error(400, "request body must be JSON")
        if not isinstance(body.get("model"), str) or not body["model"]:
            return _error(400, "model is required", "model")
        for key in ("training_file", "validation_file"):
            if body.get(key) is not None and body[key] not in self.files:
                return _error(400, f"invalid {key}: no file {body[key]!r}", key)
        if body.get("training_file") is None:
            return _error(400, "training_file is required", "training_file")
        job_id = f"ftjob-{secrets.token_hex(12)}"
        self.jobs[job_id] = {
            "id": job_id, "object": "fine_tuning.job", "model": body["model"], "created_at": int(time.time()),
            "status": "validating_files", "training_file": body["training_file"],
            "validation_file": body.get("validation_file"), "fine_tuned_model": None, "finished_at": None,
            "hyperparameters": body.get("hyperparameters") or {"n_epochs": "auto"}, "trained_tokens": None,
            "error": None, "organization_id": "org-stub", "result_files": [], "seed": body.get("seed") or 0,
            "suffix": body.get("suffix"),
        }
        return _json(200, self.jobs[job_id])

    def _advance(self, job: dict[str, Any]) -> None:
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return
        if job["status"] == "validating_files":
            problem = self.fail_with or self._problem(job["training_file"])
            if problem is not None:
                job.update(status="failed", finished_at=int(time.time()),
                           error={"code": "invalid_training_file", "message": problem, "param": "training_file"})
                return
        job["status"] = _STATES[_STATES.index(job["status"]) + 1]
        if job["status"] == "succeeded":
            suffix = f":{job['suffix']}" if job.get("suffix") else ""
            job.update(fine_tuned_model=f"ft:{job['model']}:workbench{suffix}:{job['id'][-8:]}",
                       finished_at=int(time.time()), trained_tokens=self._tokens(job["training_file"]))

    def _problem(self, file_id: str) -> str | None:
        lines = [line for line in self.contents[file_id].decode("utf-8", "replace").splitlines() if line.strip()]
        if len(lines) < 10:
            return f"The training file has {len(lines)} example(s); at least 10 are required."
        for number, line in enumerate(lines, 1):
            try:
                check_chat_example(json.loads(line).get("messages"), f"line {number}")
            except (ValueError, AttributeError, ChatFormatError) as error:
                return f"The training file is not in the chat format: {error}"
        return None

    def _tokens(self, file_id: str) -> int:
        lines = self.contents[file_id].decode("utf-8").splitlines()
        return sum(estimate_tokens(json.loads(line)["messages"]) for line in lines if line.strip())

    def _found(self, value: dict[str, Any] | None, what: str, name: str) -> web.Response:
        return _json(200, value) if value is not None else _error(404, f"no {what} {name!r}")


def _json(status: int, value: dict[str, Any]) -> web.Response:
    return web.Response(status=status, body=json.dumps(value).encode(), content_type="application/json")


def _error(status: int, message: str, param: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}}
    return _json(status, body)
