"""The benchmark's view of the server under test (a real `funasr-supervisor serve`) and of system memory."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from supervisor.kinds import VAD_WHEEL

REPO = Path(__file__).resolve().parent.parent
CGROUP_V2_STAT = Path("/sys/fs/cgroup/memory.stat")


class SystemMemory:
    """Memory in use on the machine, in MB: anonymous memory plus the page cache (`AnonPages + Cached` from
    /proc/meminfo, or the cgroup's `anon + file` where there is one), as the kernel counts them.

    Not MemAvailable: mapped weights are page cache, which it counts as available. Not `MemTotal - MemFree`:
    on this VM it drifts by ~12 MB/s for tens of seconds after processes exit (memory the host reclaims
    lazily), which swamped the figures. Anonymous memory alone would leave the mapped weights out.
    """

    FIELDS = {"cgroup": ("anon", "file"), "meminfo": ("AnonPages", "Cached")}

    def __init__(self) -> None:
        self.source = ("cgroup v2 memory.stat anon + file" if CGROUP_V2_STAT.exists()
                       else "/proc/meminfo AnonPages + Cached (whole machine: other processes add noise)")

    def used_mb(self, settle_s: float = 0.3, steady_mb: float = 2.0, within_s: float = 10.0) -> float:
        """Once two reads `settle_s` apart agree within `steady_mb` (the kernel may still be freeing a process
        that just exited, or a previous server's), or after `within_s`."""
        deadline = time.monotonic() + within_s
        last = self._read_mb()
        while True:
            time.sleep(settle_s)
            now = self._read_mb()
            if abs(now - last) <= steady_mb or time.monotonic() > deadline:
                return now
            last = now

    @classmethod
    def _read_mb(cls) -> float:
        if CGROUP_V2_STAT.exists():
            stat = dict(line.split() for line in CGROUP_V2_STAT.read_text().splitlines())
            return sum(int(stat[name]) for name in cls.FIELDS["cgroup"]) / (1024 * 1024)
        meminfo = {line.split(":")[0]: int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()}
        return sum(meminfo[name] for name in cls.FIELDS["meminfo"]) / 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class BenchServer:
    """`funasr-supervisor serve` on loopback with generated models of one size, 1 thread each, never idle-unloaded."""

    def __init__(self, cache_dir: Path, size: str, models: list[str], replicas: int = 1,
                 keep_warm: bool = False, server: dict[str, int] | None = None, threads: int = 1,
                 settings: dict[str, str] | None = None, replicas_of: dict[str, int] | None = None,
                 warm: frozenset[str] = frozenset()) -> None:
        """`settings`: more TOML lines for some models' tables, by model name; `replicas_of` and `warm`: the
        replica count and keep_warm of some models, by name (the others: `replicas` and `keep_warm`)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{free_port()}"
        self.config = Path(tempfile.mkstemp(suffix=".toml")[1])
        self.config.write_text("".join(self.model_table(m, size, (replicas_of or {}).get(m, replicas),
                                                        keep_warm or m in warm, threads)
                                       + (settings or {}).get(m, "") for m in models)
                               + "[server]\nseed_models = false\n"
                               + "".join(f"{k} = {v}\n" for k, v in (server or {}).items()))
        self.log = open(cache_dir / f"bench-server-{replicas}-replicas.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--models", str(self.config),
                                      "--port", str(self.port), "--ws-port", self.ws_url.rsplit(":", 1)[1],
                                      "--cache-dir", str(cache_dir)],
                                     cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.session = requests.Session()

    @staticmethod
    def model_table(name: str, size: str, replicas: int, keep_warm: bool, threads: int = 1) -> str:
        """`[models.<name>]`: a kind's name is its model's, and `<kind>-<anything>` is a second model of it."""
        kind = name.split("-")[0]
        return (f'[models.{name}]\nkind = "{kind}"\nsource = "{VAD_WHEEL if kind == "vad" else "generated:" + size}"\n'
                f"threads = {threads}\nkeep_alive_s = -1\nautoload = false\n"
                f"min_replicas = {replicas}\nmax_replicas = {replicas}\nkeep_warm = {str(keep_warm).lower()}\n")

    def __enter__(self) -> "BenchServer":
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                self.session.get(self.url + "/model/info", timeout=1).raise_for_status()
                return self
            except requests.RequestException:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log.name}") from None
                time.sleep(0.1)
        raise RuntimeError("server did not answer within 120 s")

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(60)
        self.log.close()
        self.config.unlink()

    def load(self, model_id: str) -> dict:
        resp = self.session.post(self.url + "/model/load", json={"model_type": model_id, "async_load": False,
                                                                   "timeout": 600}, timeout=700)
        resp.raise_for_status()
        return resp.json()

    def unload(self, model_id: str) -> dict:
        resp = self.session.delete(f"{self.url}/model/unload/{model_id}", timeout=60)
        resp.raise_for_status()
        return resp.json()

    def wait_for_replicas(self, model_id: str, count: int, timeout_s: float = 600) -> None:
        """Until `count` processes of the model are idle (min_replicas starts the rest after the first)."""
        deadline = time.monotonic() + timeout_s
        while [r["state"] for r in self.info(model_id).get("replicas", [])] != ["idle"] * count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{model_id}: {count} replicas not ready within {timeout_s} s")
            time.sleep(0.2)

    def info(self, model_id: str) -> dict:
        resp = self.session.post(self.url + "/model/info", json={"detailed": True}, timeout=30)
        return resp.json()["available_models"][model_id]
