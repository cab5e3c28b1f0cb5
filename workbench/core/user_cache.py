"""The workbench's per-user cache folder: fetched tools, dequantized base models and sentence
vectors, each in its own sub-folder. Everything in it can be deleted; it is made again on use."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$WORKBENCH_CACHE when set, else ``$XDG_CACHE_HOME/workbench``, else ``~/.cache/workbench``."""
    if os.environ.get("WORKBENCH_CACHE"):
        return Path(os.environ["WORKBENCH_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "workbench"
