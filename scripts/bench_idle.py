"""What an idle server costs the box: the CPU of its whole process tree with every model loaded and no request."""

from __future__ import annotations

import time

from scripts.bench_server import BenchServer
from scripts.process_tree import cpu_s


def idle_cores(server: BenchServer, models: list[str], settle_s: float = 5.0, seconds: float = 20.0) -> dict:
    """CPU the server's processes (the API and supervisor, the forkserver, every model process) use with every
    model loaded and no request, as cores: what an idle server costs the box."""
    for model_id in models:
        server.load(model_id)
    time.sleep(settle_s)  # the loads' own reads and the first idle tick pass
    began_cpu, began = cpu_s(server.proc.pid), time.monotonic()
    time.sleep(seconds)
    cores = (cpu_s(server.proc.pid) - began_cpu) / (time.monotonic() - began)
    for model_id in models:
        server.unload(model_id)
    return {"models": models, "seconds": seconds, "cores": round(cores, 4)}
