"""What can go wrong between the workbench and Argilla (pure; no argilla)."""

from __future__ import annotations

from workbench.core.errors import WorkbenchError


class AnnotationError(WorkbenchError, RuntimeError):
    """Something about the Argilla dataset is wrong; the message says what and how to fix it."""


class ArgillaUnavailableError(AnnotationError):
    """No Argilla server is configured, or none could be reached or logged in to."""


class PushError(AnnotationError):
    """A push stopped part-way. `pushed` of `total` records (`batches_done` of `batches_total`
    batches) reached the server; running the same push again completes it."""

    def __init__(self, message: str, *, dataset: str, pushed: int, total: int, batches_done: int, batches_total: int):
        super().__init__(message)
        self.dataset, self.pushed, self.total = dataset, pushed, total
        self.batches_done, self.batches_total = batches_done, batches_total
