"""The embedded Argilla: the real argilla-server 2.8 with its web UI, on 127.0.0.1, no Docker.

It runs in its own virtual environment (.argilla-venv, made by scripts/setup_argilla.sh) because
its pins clash with ours; this package's `manage` module starts and stops it from our side.
`search_engine.py` and `launch.py` are imported only inside that environment.

Kept to the standard library on purpose: launch.py loads this folder as a package inside the
server's environment, where `workbench`'s own dependencies are not installed.
"""

from .manage import (
    ArgillaServerError,
    ServerInfo,
    ServerStatus,
    main,
    resolve_server,
    server_status,
    start_server,
    stop_server,
)

__all__ = [
    "ArgillaServerError",
    "ServerInfo",
    "ServerStatus",
    "main",
    "resolve_server",
    "server_status",
    "start_server",
    "stop_server",
]
