"""Entry points run INSIDE the argilla-server virtual environment (.argilla-venv), by file path:

    .argilla-venv/bin/python workbench/argilla_server/launch.py server --host 127.0.0.1 --port 6900
    .argilla-venv/bin/python workbench/argilla_server/launch.py worker
    .argilla-venv/bin/python workbench/argilla_server/launch.py init

Each first registers the database search engine (search_engine.py), because argilla-server looks
engines up by name in a registry that only holds what was imported into the process:
- `server` migrates the database (what `python -m argilla_server database migrate` runs), creates
  the users of the credentials file if they are missing (or resets their secrets), then serves `argilla_server:app`
  with uvicorn. Doing all three in one process saves a second import of the server (about 5 s).
- `worker` runs `python -m argilla_server worker`; its rq processes are forked from this one, so
  background jobs that touch the search engine find it.
- `init` does the migration and the users only.

The settings come from the environment (ARGILLA_HOME_PATH, ARGILLA_DATABASE_URL,
ARGILLA_SEARCH_ENGINE, ARGILLA_REDIS_URL, ...), set by manage.py. The credentials file's path
comes in WORKBENCH_ARGILLA_CREDENTIALS, so that passwords and API keys never appear on a command
line (where `ps` shows them) or in a log.

`workbench` itself is not installed in that environment (its package imports pandas, openai and
more), so this folder is loaded as a stand-alone package of its own name.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLUGIN_PACKAGE = "workbench_argilla_server"
CREDENTIALS_ENV = "WORKBENCH_ARGILLA_CREDENTIALS"


def load_plugin():
    """Import search_engine.py (which registers the engine) and return the module."""
    if PLUGIN_PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            PLUGIN_PACKAGE, HERE / "__init__.py", submodule_search_locations=[str(HERE)]
        )
        package = importlib.util.module_from_spec(spec)
        sys.modules[PLUGIN_PACKAGE] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"{PLUGIN_PACKAGE}.search_engine")


def migrate() -> None:
    """Bring the database to the server's newest revision (idempotent)."""
    from argilla_server.cli.database.migrate import migrate_db

    migrate_db(revision="head")


async def _ensure_users(users: list[dict]) -> list[str]:
    """Create the users that are missing; reset the password and API key of those whose secrets
    differ from the file (the file is the truth for the users the workbench manages)."""
    from argilla_server.cli.database.users.utils import get_or_new_workspace
    from argilla_server.contexts import accounts
    from argilla_server.database import AsyncSessionLocal
    from argilla_server.models import User, UserRole

    changed = []
    async with AsyncSessionLocal() as session:
        for user in users:
            existing = await accounts.get_user_by_username(session, user["username"])
            if existing is None:
                workspaces = [await get_or_new_workspace(session, name) for name in user.get("workspaces", [])]
                await User.create(
                    session,
                    first_name=user.get("first_name") or user["username"],
                    username=user["username"],
                    role=UserRole(user["role"]),
                    password_hash=accounts.hash_password(user["password"]),
                    api_key=user["api_key"],
                    workspaces=workspaces,
                )
                changed.append(f"created {user['username']}")
            elif existing.api_key != user["api_key"] or not accounts.verify_password(
                user["password"], existing.password_hash
            ):
                existing.api_key = user["api_key"]
                existing.password_hash = accounts.hash_password(user["password"])
                await existing.save(session)
                changed.append(f"reset the password and API key of {user['username']}")
    return changed


def ensure_users() -> None:
    """Make the database's users match the credentials file (never prints secrets)."""
    path = os.environ.get(CREDENTIALS_ENV)
    if not path:
        return
    credentials = json.loads(Path(path).read_text())
    for change in asyncio.run(_ensure_users(credentials.get("users", []))):
        print(f"Argilla users: {change}", flush=True)


def serve(host: str, port: int) -> None:
    import uvicorn

    uvicorn.run("argilla_server:app", host=host, port=port, access_log=False, log_level="warning")


def worker(num_workers: int) -> None:
    from argilla_server.cli import app

    app(args=["worker", "--num-workers", str(num_workers)], prog_name="argilla_server")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="launch.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    server_parser = commands.add_parser("server", help="migrate, create missing users, serve")
    server_parser.add_argument("--host", default="127.0.0.1")
    server_parser.add_argument("--port", type=int, default=6900)
    worker_parser = commands.add_parser("worker", help="the rq worker that runs background jobs")
    worker_parser.add_argument("--num-workers", type=int, default=1)
    init_parser = commands.add_parser("init", help="migrate and create missing users, then exit")
    for sub in (server_parser, worker_parser, init_parser):
        # Shown by `ps`, and checked by manage.py before it signals a process from a pid file.
        sub.add_argument("--home", help="the Argilla home folder; must match ARGILLA_HOME_PATH")
    args = parser.parse_args(argv)
    if args.home and Path(args.home).resolve() != Path(os.environ.get("ARGILLA_HOME_PATH", "")).resolve():
        parser.error(f"--home {args.home} differs from ARGILLA_HOME_PATH={os.environ.get('ARGILLA_HOME_PATH')!r}")

    # Run as a script, this folder is sys.path[0]; take it off so that its module names
    # (manage, search_engine, ...) cannot shadow anything the server imports.
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != HERE]
    load_plugin()
    if args.command in ("server", "init"):
        migrate()
        ensure_users()
    if args.command == "server":
        serve(args.host, args.port)
    elif args.command == "worker":
        worker(args.num_workers)


if __name__ == "__main__":
    main()
