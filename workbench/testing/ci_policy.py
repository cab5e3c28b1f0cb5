"""A pytest plugin: in CI nothing skips silently.

With ``CI`` set to ``true`` (or ``1``/``yes``), a test that would be skipped fails instead, with
the skip's reason: CI installs every component (Argilla's environment, Chromium, llama.cpp's
server, the embedded model), so a skip there means the set-up is broken, not that the test may
be left out. Every run prints how many tests were skipped; CI expects 0. Enabled for the suite
in ``tests/conftest.py`` (``pytest_plugins``), or with ``-p workbench.testing.ci_policy``.
"""

from __future__ import annotations

import os
from typing import Any

import pytest


def in_ci() -> bool:
    """Whether this run is CI's (``CI=true``, as most CI systems and ``.ci/run`` set it)."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and in_ci() and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        report.outcome = "failed"
        report.longrepr = (
            f"skipped in CI: {reason}\nCI runs with every component installed, so nothing may skip: "
            "install what is missing (the README's `make test` does) instead."
        )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    skipped = len(terminalreporter.stats.get("skipped", []))
    expectation = " (CI expects 0)" if in_ci() else ""
    terminalreporter.write_line(f"skipped tests: {skipped}{expectation}")
