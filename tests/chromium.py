"""Open an HTML file in headless Chromium and report what the page did, over the DevTools protocol.

Chromium is started with ``--remote-debugging-pipe``: it reads protocol commands from file
descriptor 3 and writes replies and events to descriptor 4, NUL-separated JSON, so no port, no
websocket library and no network are involved. :func:`inspect_page` loads the file, waits for the
load event, then asks the page (from DevTools, which a page's Content-Security-Policy does not
restrict) whether every image decodes, and collects every sign of script running in the page:
console calls, uncaught exceptions and JavaScript dialogs (``alert``).
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--remote-debugging-pipe")

IMAGES = ("Promise.all(Array.from(document.images).map(image => image.decode()"
          ".then(() => ({decoded: true, width: image.naturalWidth, height: image.naturalHeight}),"
          " error => ({decoded: false, error: String(error)}))))")
PAGE = ("({scripts: document.scripts.length, text: document.body.innerText,"
        " handlers: Array.from(document.querySelectorAll('*')).filter(element =>"
        " Array.from(element.attributes).some(attribute => attribute.name.startsWith('on'))).length})")


def find_chromium() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class _Pipe:
    def __init__(self, process: subprocess.Popen, write_fd: int, read_fd: int, deadline: float):
        self.process, self.write_fd, self.read_fd, self.deadline = process, write_fd, read_fd, deadline
        self.buffer = b""
        self.events: list[dict] = []
        self.next_id = 0

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self.next_id += 1
        own_id = self.next_id
        message = {"id": own_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == own_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self._record(reply)

    def wait_for(self, method: str) -> dict:
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read()
            self._record(event)
            if event.get("method") == method:
                return event

    def _record(self, event: dict) -> None:
        self.events.append(event)
        if event.get("method") == "Page.javascriptDialogOpening":  # an alert would block the page: dismiss it
            self.next_id += 1
            dismiss = {"id": self.next_id, "method": "Page.handleJavaScriptDialog", "params": {"accept": True},
                       "sessionId": event.get("sessionId")}
            os.write(self.write_fd, json.dumps(dismiss).encode() + b"\0")

    def _read(self) -> dict:
        while b"\0" not in self.buffer:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.read_fd], [], [], remaining)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium exited (status {self.process.poll()})")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)


def inspect_page(browser: str, path: Path, timeout: float = 60.0) -> dict:
    """Load ``path`` and return ``images`` (decode result per image), ``scripts`` and ``handlers``
    (script elements and ``on*`` attributes in the DOM), ``text`` (the page's visible text) and
    ``script_events`` (console calls, exceptions and dialogs: signs that script ran)."""
    command_read, command_write = os.pipe()
    reply_read, reply_write = os.pipe()

    def child_fds():  # runs in the child before subprocess closes every fd not in pass_fds
        high_read, high_write = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (command_read, reply_write))
        os.dup2(high_read, 3)
        os.dup2(high_write, 4)

    with tempfile.TemporaryDirectory(prefix="rnnbench-chromium-") as profile:
        process = subprocess.Popen([browser, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                   pass_fds=(3, 4), preexec_fn=child_fds,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(command_read)
        os.close(reply_write)
        pipe = _Pipe(process, command_write, reply_read, time.monotonic() + timeout)
        try:
            target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime"):
                pipe.call(f"{domain}.enable", session=session)
            pipe.call("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
            pipe.wait_for("Page.loadEventFired")
            images = pipe.call("Runtime.evaluate", {"expression": IMAGES, "awaitPromise": True, "returnByValue": True},
                               session=session)["result"]["value"]
            page = pipe.call("Runtime.evaluate", {"expression": PAGE, "returnByValue": True}, session=session)["result"]["value"]
            script_events = [event["method"] for event in pipe.events if event.get("method") in
                             ("Runtime.consoleAPICalled", "Runtime.exceptionThrown", "Page.javascriptDialogOpening")]
            pipe.call("Browser.close")
        finally:
            os.close(command_write)
            os.close(reply_read)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return {"images": images, **page, "script_events": script_events}
