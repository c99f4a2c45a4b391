"""A real headless Chromium driven over the DevTools protocol (websockets, no driver library): for FunASR's HTML5
page, which only a browser runs as its users run it. Chromium's fake capture device plays a WAV file as the
microphone, and grants the page its use without a prompt."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from websockets.sync.client import connect


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


class Browser:
    """One page; `evaluate` runs JavaScript in it; exceptions the page throws are kept in `errors`."""

    def __init__(self, microphone_wav: Path) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="chromium-"))
        self.proc = subprocess.Popen(
            [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
             f"--user-data-dir={self.profile}", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
             f"--use-file-for-fake-audio-capture={microphone_wav}", "--autoplay-policy=no-user-gesture-required",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            start_new_session=True)   # its own process group: close() ends the renderers and helpers with it
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("Chromium did not start")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        page = next(p for p in pages if p["type"] == "page")
        self.ws = connect(page["webSocketDebuggerUrl"], max_size=None)
        self.ids = itertools.count(1)
        self.errors: list[str] = []
        self.console: list[str] = []
        self.choosers: list[dict] = []
        self.call("Runtime.enable")
        self.call("Page.enable")

    def call(self, method: str, **params) -> dict:
        """A DevTools command, answered; events that come meanwhile are noted."""
        request_id = next(self.ids)
        self.ws.send(json.dumps({"id": request_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == request_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.note(message)

    def note(self, event: dict) -> None:
        if event.get("method") == "Runtime.exceptionThrown":
            details = event["params"]["exceptionDetails"]
            self.errors.append(details.get("exception", {}).get("description") or details.get("text", ""))
        elif event.get("method") == "Runtime.consoleAPICalled":
            self.console.append(" ".join(str(a.get("value", "")) for a in event["params"]["args"]))
        elif event.get("method") == "Page.fileChooserOpened":
            self.choosers.append(event["params"])
        elif event.get("method") == "Page.javascriptDialogOpening":  # the page alerts on a failed connection
            self.errors.append(f"dialog: {event['params']['message']}")
            self.ws.send(json.dumps({"id": next(self.ids), "method": "Page.handleJavaScriptDialog",
                                     "params": {"accept": True}}))

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete' && document.getElementById('btnConnect') !== null")

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 60) -> object:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.2)
        raise TimeoutError(f"waited {timeout_s:g} s for {expression}; page errors: {self.errors}")

    def choose_file(self, selector: str, path: Path) -> None:
        """Click a file input, as a user would, and pick `path` in the file chooser it opens."""
        self.call("Page.setInterceptFileChooserDialog", enabled=True)
        self.call("Runtime.evaluate", expression=f"document.querySelector('{selector}').click()", userGesture=True)
        deadline = time.monotonic() + 30
        while not self.choosers:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no file chooser opened for {selector}")
            self.note(json.loads(self.ws.recv(timeout=30)))
        chooser = self.choosers.pop(0)
        self.call("DOM.setFileInputFiles", files=[str(path)], backendNodeId=chooser["backendNodeId"])

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        for signum in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, signum)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(10)
                break
            except subprocess.TimeoutExpired:
                continue
        while True:  # the rest of the group (zygote, renderers) goes with the browser; wait until none is left
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        shutil.rmtree(self.profile, ignore_errors=True)
