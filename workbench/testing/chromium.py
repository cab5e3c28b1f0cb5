"""Headless Chromium for the tests of pages a person reads: the HTML reports and Argilla's web UI.

`Page` is one tab driven over Chromium's DevTools protocol with `websocket-client` (a test
dependency), started with no network, sync or first-run work in a fresh profile.
`chromium_missing` says why a machine cannot run these tests (for the tests' skip reason; CI
installs both, and `make test` fails on a skip).
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.request
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")


def chromium_missing() -> str | None:
    """Why these tests cannot run here, or None when Chromium and websocket-client are installed."""
    if not CHROMIUM.exists():
        return ("needs Debian's headless Chromium at /usr/bin/chromium: install it with `apt-get install -y chromium` "
                "(`make test` does this for CI)")
    try:
        import websocket  # noqa: F401  (websocket-client)
    except ImportError:
        return "needs websocket-client (pip install 'workbench[test]') to drive Chromium"
    return None


class Page:
    """One tab of a headless Chromium, driven over the DevTools protocol."""

    def __init__(self, profile: Path):
        import websocket

        self.process = subprocess.Popen(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--no-first-run", "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
             "--remote-debugging-port=0", "--remote-allow-origins=*", "--window-size=1400,1000", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        port_file = profile / "DevToolsActivePort"  # Chromium writes the port it chose here
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"Chromium did not start (exit code {self.process.poll()})")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=10) as response:
            target = next(t for t in json.load(response) if t["type"] == "page")
        self.socket = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        self.calls = 0
        self.command("Page.enable")
        self.command("Runtime.enable")

    def command(self, method: str, **params) -> dict:
        self.calls += 1
        self.socket.send(json.dumps({"id": self.calls, "method": method, "params": params}))
        while True:  # events arrive in between; skip them
            message = json.loads(self.socket.recv())
            if message.get("id") == self.calls:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def js(self, expression: str):
        result = self.command("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout_s: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.js(expression):
                return True
            time.sleep(0.25)
        return False

    def text(self) -> str:
        return self.js("document.body.innerText") or ""

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self.command("Page.captureScreenshot", format="png")["data"]))
        return path

    def close(self) -> None:
        self.socket.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
