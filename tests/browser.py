"""A real headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe).

The pipe needs no websocket and no driver binary: Chromium reads NUL-terminated JSON commands on
fd 3 and writes replies and events on fd 4. A page records its console errors (CSP violations
included) and every response it received, so a test can check what the page really loaded.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

ERROR_EVENTS = ("Runtime.exceptionThrown", "Log.entryAdded", "Runtime.consoleAPICalled")


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    def __init__(self, profile: Path, width: int = 1280, height: int = 800):
        executable = chromium()
        if executable is None:
            raise RuntimeError("chromium is not installed (apt-get install chromium)")
        self.width, self.height = width, height
        args = [executable, "--headless=new", "--remote-debugging-pipe", f"--user-data-dir={profile}",
                "--no-first-run", "--no-default-browser-check", "--disable-gpu", "--disable-extensions",
                "--disable-background-networking", "--disable-sync", "--mute-audio", "--hide-scrollbars",
                "--password-store=basic", f"--window-size={width},{height}", "about:blank"]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run its sandbox as root
        self.log_path = Path(profile) / "chromium.log"
        Path(profile).mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "w") as log:  # fd 3 <- our stdin pipe, fd 4 -> our stdout pipe
            self.process = subprocess.Popen(["sh", "-c", 'exec "$@" 3<&0 4>&1 </dev/null >/dev/null', "sh", *args],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        self.events: list[dict] = []
        self._replies: dict[int, dict] = {}
        self._next = 0
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="chromium-pipe", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buffer = b""
        while True:
            chunk = self.process.stdout.read1(65536)
            if not chunk:
                break
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            with self._cond:
                for raw in messages:
                    message = json.loads(raw)
                    if "id" in message:
                        self._replies[message["id"]] = message
                    elif len(self.events) < 20000:
                        self.events.append(message)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30) -> dict:
        with self._cond:
            self._next += 1
            number = self._next
        message = {"id": number, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.process.stdin.write(json.dumps(message).encode() + b"\0")
        self.process.stdin.flush()
        with self._cond:
            if not self._cond.wait_for(lambda: number in self._replies or self.process.poll() is not None, timeout):
                raise TimeoutError(f"chromium did not answer {method} in {timeout} s")
            reply = self._replies.pop(number, None)
        if reply is None:
            raise RuntimeError(f"chromium exited (see {self.log_path})")
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def open(self, url: str) -> "Page":
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        for domain in ("Page", "Runtime", "Log", "Network"):
            page.send(f"{domain}.enable")
        page.send("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False})
        page.send("Page.navigate", {"url": url})
        return page

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class Page:
    def __init__(self, browser: Browser, session: str):
        self.browser, self.session = browser, session

    def send(self, method: str, params: dict | None = None, timeout: float = 30) -> dict:
        return self.browser.send(method, params, self.session, timeout)

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20) -> Any:
        """Poll a JavaScript expression until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        guarded = f"(() => {{ try {{ return ({expression}); }} catch (error) {{ return null; }} }})()"
        while True:
            value = self.evaluate(guarded)  # while the page loads, its elements may not exist yet
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{expression} still falsy after {timeout} s; console: {self.errors()}")
            time.sleep(0.1)

    def _events(self, *methods: str) -> list[dict]:
        with self.browser._cond:
            return [e for e in self.browser.events if e.get("sessionId") == self.session and e["method"] in methods]

    def errors(self) -> list[str]:
        """Uncaught exceptions, console.error calls and error log entries (CSP violations are logged there)."""
        found = []
        for event in self._events(*ERROR_EVENTS):
            params = event["params"]
            if event["method"] == "Runtime.exceptionThrown":
                found.append(params["exceptionDetails"].get("exception", {}).get("description")
                             or params["exceptionDetails"].get("text"))
            elif event["method"] == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(f"{params['entry'].get('url', '')}: {params['entry']['text']}")
            elif event["method"] == "Runtime.consoleAPICalled" and params["type"] == "error":
                found.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
        return found

    def responses(self) -> list[dict]:
        """Every response the page received: url, status, mimeType, headers, resource type."""
        return [dict(e["params"]["response"], type=e["params"].get("type"))
                for e in self._events("Network.responseReceived")]

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        if full_page:
            height = int(self.evaluate("document.documentElement.scrollHeight"))
            self.send("Emulation.setDeviceMetricsOverride",
                      {"width": self.browser.width, "height": max(height, self.browser.height),
                       "deviceScaleFactor": 1, "mobile": False})
            time.sleep(0.3)
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        temporary = Path(path).with_suffix(".tmp")
        temporary.write_bytes(base64.b64decode(data))
        os.replace(temporary, path)
        return Path(path)
