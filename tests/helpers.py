"""Test helpers: polling instead of sleeping, process bookkeeping, a real server in a subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import psutil
import requests

from supervisor.kinds import VAD_WHEEL

REPO = Path(__file__).resolve().parent.parent

# the demo's models as a config file's tables (tiny generated models, the real FSMN-VAD): tests add to it
DEMO_TABLES = f"""
[models.streaming_asr]
source = "generated:tiny"
[models.punctuation]
source = "generated:tiny"
[models.vad]
source = "{VAD_WHEEL}"
"""


def demo_config(server: dict | None = None, **models: dict):
    """The demo config with some server settings and some models' settings changed."""
    import msgspec

    from supervisor.config import load_config, with_models

    base = load_config("demo")
    config = with_models(base, **{m: msgspec.structs.replace(base.models[m], **changes)
                                  for m, changes in models.items()})
    return msgspec.structs.replace(config, server=msgspec.structs.replace(config.server, **(server or {})))


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.05) -> object:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {predicate}")
        time.sleep(interval)


def settled_unique_mb(client, name: str, pid: int, timeout: float = 15) -> float:
    """What `/model/info` says a model's process holds (Private_Dirty), once it agrees with the process's own smaps
    within 1 MB: the figure is refreshed every second off the request path, so right after a request it can lag the
    process by MBs (the VAD grew 5.1 MB serving one, in a clean clone under load)."""
    from supervisor.memory import private_dirty_mb

    def caught_up() -> float | None:
        said = client.simulate_post("/model/info", json={"detailed": True}).json["available_models"][name]
        unique = said["details"]["memory_unique_mb"]
        return unique if unique is not None and abs(unique - private_dirty_mb(pid)) <= 1 else None

    return wait_for(caught_up, timeout)


def descendants(pid: int | None = None) -> set[int]:
    try:
        return {child.pid for child in psutil.Process(pid or os.getpid()).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`funasr-supervisor serve` in a subprocess on a loopback port, exactly as the README starts it."""

    def __init__(self, cache_dir: Path, models: str = "demo", log_path: Path | None = None,
                 extra_args: list[str] | None = None, preexec: Callable[[], object] | None = None) -> None:
        """`preexec` runs in the child before the server starts (to put it in a cgroup, say)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_port = free_port()
        self.ws_url = f"ws://127.0.0.1:{self.ws_port}"
        self.log_path = log_path or cache_dir / f"server-{self.port}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "--models", models, "--port", str(self.port),
             "--ws-port", str(self.ws_port), "--cache-dir", str(cache_dir), *(extra_args or [])],
            cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=preexec,
        )
        try:
            wait_for(self._answers, timeout=60)
        except BaseException:  # a server that never answered is not left running behind the failed test
            self.kill_everything()
            raise

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited with {self.proc.returncode}: {self.log_tail()}")
        try:
            return requests.get(self.url + "/healthz", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def log_tail(self) -> str:
        return self.log_path.read_text()[-2000:]

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill_everything(self) -> None:
        """Last-resort cleanup so a failing test cannot leave processes behind."""
        for pid in descendants(self.proc.pid) | {self.proc.pid}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)
        self._log.close()


class InProcessServer:
    """A server built as `serve` builds it, in the test's own process, on loopback ports: its models fork from this
    process's forkserver, which the session keeps booted (a ServerProcess boots one of its own, importing torch and
    funasr anew: ~15 s of CPU). For tests of what clients see; tests of the process itself (signals, flags, logs,
    cgroups) use ServerProcess."""

    def __init__(self, cache_dir: Path, models: str = "demo") -> None:
        """`models` as `serve --models` takes it: `demo` or a TOML path."""
        from cli.serving import Serving
        from supervisor.config import load_config

        self.ws_port = free_port()
        self.serving = Serving(load_config(models), cache_dir, "127.0.0.1", 0, self.ws_port)
        self.serving.start()
        self.port = self.serving.http.effective_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"{self.serving.websockets.scheme}://127.0.0.1:{self.ws_port}"

    def stop(self) -> int:
        """Unload everything and stop listening, as `serve` does on SIGTERM (its exit code, for `serving`)."""
        self.serving.close()
        return 0

    def log_tail(self) -> str:
        return "(its log is the test's)"

    def __enter__(self) -> "InProcessServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def kill_everything(self) -> None:
        """Nothing to kill: stop() unloaded every model process, and the forkserver is the session's."""


def serving(srv: ServerProcess | InProcessServer):
    """A started server for a module's tests (a generator, for a fixture to `yield from`); afterwards it must
    stop with exit code 0, and nothing of it is left running."""
    yield srv
    assert srv.stop() == 0, srv.log_tail()
    srv.kill_everything()


def configured_server(cache_dir: Path, folder: Path, config: str):
    """A module's server, in the test's process, on a config of its own (a generator, for a fixture to
    `yield from`; the fixture must depend on `supervisor`, whose forkserver it shares)."""
    path = folder / "models.toml"
    path.write_text(config)
    yield from serving(InProcessServer(cache_dir, str(path)))


def unload_everything(srv: ServerProcess | InProcessServer, admin_key: str | None = None) -> None:
    """Between tests on a shared server: no model process outlives the test that started it."""
    headers = {"Authorization": f"Bearer {admin_key}"} if admin_key else {}
    requests.delete(f"{srv.url}/model/unload/all", headers=headers, timeout=60).raise_for_status()


def speechlike_pcm(seconds: float, seed: int = 0) -> bytes:
    """A tone with noise, as 16-bit LE mono 16 kHz PCM (no real speech exists offline; the models are random)."""
    import numpy as np

    t = np.arange(int(16000 * seconds)) / 16000
    rng = np.random.default_rng(seed)
    signal_ = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * rng.standard_normal(len(t))
    return (signal_ * 32767).clip(-32768, 32767).astype("<i2").tobytes()


def wav_bytes(pcm: bytes, rate: int = 16000, channels: int = 1) -> bytes:
    import io
    import wave

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)
    return buffer.getvalue()
