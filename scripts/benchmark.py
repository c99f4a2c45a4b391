"""Benchmark the server against FunASR without it: load time (cold and warm), memory returned on unload,
memory shared by replicas, request overhead, streaming capacity with 1 and 2 replicas, and head-of-line blocking.

    python scripts/benchmark.py --size full --repeats 3 --json bench.json --markdown bench.md

One run measures, side by side: the server (a real `funasr-supervisor serve` on loopback, driven over HTTP)
and its baselines (AutoModel in a process that already imported torch and funasr; a fresh `python` that
imports and loads; direct engine calls). Every figure is a median over repeats and a ratio to its baseline
from the same run; the JSON keeps every raw sample and the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from scripts.bench_capacity import head_of_line, streaming_capacity  # noqa: E402
from scripts.bench_idle import idle_cores  # noqa: E402
from scripts.bench_report import machine_info, render_markdown, render_table, summarize  # noqa: E402
from scripts.bench_protocol import protocol_latencies  # noqa: E402
from scripts.bench_requests import KeepAliveClient, http_latencies  # noqa: E402
from scripts.bench_server import BenchServer, SystemMemory  # noqa: E402
from model_procs.make_models import DONE_MARKER, model_dir  # noqa: E402
from model_procs.wheels import fetch_folder  # noqa: E402
from scripts.recordings import example  # noqa: E402
from scripts.bench_requests import Recording  # noqa: E402
from supervisor import page_cache  # noqa: E402
from supervisor.kinds import VAD_WHEEL  # noqa: E402
from supervisor.config import ServerSettings  # noqa: E402

MB = 1024 * 1024

MODEL_IDS = ("streaming_asr", "asr", "punctuation", "vad")
GENERATED = ("streaming_asr", "asr", "punctuation")  # random weights of the real shapes; the VAD's are real
FIVE = ("streaming_asr", "asr", "punctuation", "punctuation-b", "vad")  # two models of one kind among them
REPLICA_MODELS = {1: "streaming_asr-1", 2: "streaming_asr-2"}  # the streaming model, by replica count
COARSE_PIECE_MS = 60000   # the largest transcribe_piece_ms: a transcription's turns as long as they may be


def prepare_models(cache_dir: Path, size: str, models: list[str]) -> dict[str, Path]:
    """Generated or fetched before anything is timed, so no figure includes writing weights. Models a previous run
    generated into the cache are kept (the generator is a process that imports torch and funasr: ~15 s of CPU)."""
    generated = [m for m in models if m in GENERATED]
    dirs = {m: model_dir(cache_dir / "generated", m, size) for m in generated}
    missing = [m for m in generated if not (dirs[m] / DONE_MARKER).exists()]
    if missing:
        subprocess.run([sys.executable, "-m", "model_procs.make_models", "--size", size, "--models", *missing,
                        "--out", str(cache_dir / "generated")], cwd=REPO, check=True, capture_output=True)
    if "vad" in models:
        dirs["vad"] = fetch_folder(VAD_WHEEL, cache_dir)[0]
    return dirs


def load_cycles(server: BenchServer, memory: SystemMemory, model_id: str, model_dir: Path, repeats: int,
                recording: Recording) -> tuple[dict, Baseline]:
    """Each repeat: the server loads and unloads, then a fresh process imports and loads (the naive cold start
    and, inside it, the in-process load), back to back, so the machine's drift (it is shared) falls on both
    alike. A first untimed server cycle warms the page cache for everyone. The last repeat's process is left
    running, for the direct requests."""
    server.load(model_id)
    server.unload(model_id)
    samples: dict[str, list] = {k: [] for k in ("load_ms", "load_wall_ms", "phases", "rss_mb", "unique_mb",
                                                  "freed_mb", "unload_ms", "unload_wall_ms", "sys_load_mb",
                                                  "sys_returned_mb")}
    baseline: dict[str, list] = {"inproc_load_ms": [], "inproc_held_mb": [], "inproc_kept_after_del_mb": []}
    naive: list[float] = []
    for repeat in range(repeats):
        server_cycle(server, memory, model_id, samples)
        process = Baseline(model_id, model_dir, recording)
        naive.append(process.naive_ms)
        for key, value in process.figures.items():
            baseline[key].append(value)
        if repeat < repeats - 1:
            process.close()
    return {"server": samples, "baseline": baseline, "naive_ms": naive}, process


def server_cycle(server: BenchServer, memory: SystemMemory, model_id: str, samples: dict[str, list]) -> None:
    """One timed load and unload through the API, with the system memory around each."""
    before = memory.used_mb()
    began = time.monotonic()
    loaded = server.load(model_id)
    samples["load_wall_ms"].append((time.monotonic() - began) * 1000)
    after_load = memory.used_mb()
    info = server.info(model_id)
    samples["load_ms"].append(loaded["load_time_ms"])
    samples["phases"].append(info["details"]["load_phases_ms"])
    samples["rss_mb"].append(info["memory_usage_mb"])
    samples["unique_mb"].append(info["details"]["memory_unique_mb"])
    began = time.monotonic()
    unloaded = server.unload(model_id)
    samples["unload_wall_ms"].append((time.monotonic() - began) * 1000)
    samples["unload_ms"].append(unloaded["unload_time_ms"])
    samples["freed_mb"].append(unloaded["memory_freed_mb"])
    after_unload = memory.used_mb()
    samples["sys_load_mb"].append(after_load - before)
    samples["sys_returned_mb"].append(after_load - after_unload)


class Baseline:
    """`scripts.bench_baseline` in a fresh interpreter: the naive cold start (spawn -> model ready, in ms, timed
    from here), what it measured inside, then direct requests on demand. Fresh each time, because a second load
    in one process reuses the first one's freed heap and so would flatter the baseline (measured: 1.0 s instead
    of 3.7 s for the full streaming model)."""

    def __init__(self, model_id: str, model_dir: Path, recording: Recording) -> None:
        began = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "scripts.bench_baseline", "--model-id", model_id,
                                      "--model-dir", str(model_dir), "--recording", str(recording.path)],
                                     cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.naive_ms = (self._answer()["ready_at"] - began) * 1000
        self.figures = self._answer()

    def direct(self, n: int) -> list[float]:
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        return self._answer()["direct_ms"]

    def _answer(self) -> dict:
        """The next JSON line (funasr prints notices of its own to stdout)."""
        for line in self.proc.stdout:
            if line.startswith("{"):
                return json.loads(line)
        self.close()
        raise RuntimeError(f"scripts.bench_baseline failed (exit {self.proc.returncode})")

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.stdout.close()
        self.proc.wait(60)


def request_latencies(server: BenchServer, model_id: str, n: int, recording: Recording,
                      baseline: Baseline) -> dict:
    """HTTP, then direct, then HTTP again, back to back, so drift on a shared machine hits both sides alike."""
    server.load(model_id)
    first, first_model = http_latencies(server.url, model_id, n // 2, recording)
    direct = baseline.direct(n)
    second, second_model = http_latencies(server.url, model_id, n - n // 2, recording)
    server.unload(model_id)
    baseline.close()
    return {"http_ms": first + second, "http_model_ms": first_model + second_model, "direct_ms": direct}


def control_plane_during_load(server: BenchServer, model_id: str, clients: int = 16) -> list[float]:
    """`/model/info` latency from `clients` threads, sampled only while `model_id` is loading. Each client is a
    lean stdlib keep-alive connection: the clients share the machine's 2 cores with the server and the load."""
    loading = threading.Event()
    done = threading.Event()
    samples: list[float] = []

    def poll() -> None:
        client = KeepAliveClient(server.url)
        while not done.is_set():
            began = time.perf_counter()
            client.get("/model/info")
            if loading.is_set():
                samples.append((time.perf_counter() - began) * 1000)
    threads = [threading.Thread(target=poll) for _ in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    loading.set()
    server.load(model_id)
    loading.clear()
    done.set()
    for thread in threads:
        thread.join()
    server.unload(model_id)
    return samples


def five_models(server: BenchServer, memory: SystemMemory) -> dict:
    """Every model of FIVE loaded on one server, then unloaded one by one: the machine's memory returned by each
    unload beside the memory_freed_mb it reported (the others keep running, so each figure is that model's own)."""
    out: dict = {}
    for name in FIVE:
        server.load(name)
    time.sleep(1.5)  # memory figures are refreshed every second
    for name in FIVE:
        before = memory.used_mb()
        freed = server.unload(name)["memory_freed_mb"]
        out[name] = {"freed_mb": freed, "returned_mb": before - memory.used_mb()}
    return out


def replica_workloads(server: BenchServer, cache_dir: Path, size: str, args: argparse.Namespace,
                      memory: SystemMemory, recording: Recording) -> dict:
    """Per replica count, a model of its own on the same server (REPLICA_MODELS): the machine memory one and two
    replicas hold, streaming capacity; on the one-replica model (keep_warm on) also warm reloads and head-of-line
    blocking. Two replicas first: the warm model's weights stay cached after it is unloaded."""
    out: dict = {"capacity": {}, "replica_memory": {}}
    weights = model_dir(cache_dir / "generated", "streaming_asr", size) / "model.pt"
    for replicas, name in sorted(REPLICA_MODELS.items(), reverse=True):
        print(f"[bench] {replicas} replica(s): machine memory, streaming capacity", file=sys.stderr, flush=True)
        server.load(name)  # untimed, as when each count had a server of its own: the figure then starts from an
        # unload of this model, not from the unload of another one whose 1.3 GB the kernel may still be taking back
        out["replica_memory"][str(replicas)] = replica_memory(server, memory, weights, name, replicas, args.repeats)
        if replicas == 1:
            print("[bench] warm reloads (keep_warm)", file=sys.stderr, flush=True)
            out["warm_reload"] = warm_reloads(server, name, args.repeats)
        out["capacity"][str(replicas)] = streaming_capacity(server.url, args.max_streams, args.capacity_chunks,
                                                            recording, name)
        if replicas == 1:
            print(f"[bench] head-of-line: a stream beside a {args.hol_audio_s:g} s transcription",
                  file=sys.stderr, flush=True)
            out["head_of_line"] = head_of_line(server.url, args.hol_audio_s, args.capacity_chunks, recording,
                                               name) | {"piece_ms": ServerSettings().transcribe_piece_ms}
        server.unload(name)
    if args.hol_unshared:
        print("[bench] head-of-line again, with 60 s transcription pieces (fair sharing off)", file=sys.stderr,
              flush=True)
        coarse = {"transcribe_piece_ms": COARSE_PIECE_MS}
        with BenchServer(cache_dir, size, ["streaming_asr"], server=coarse) as unshared:
            unshared.load("streaming_asr")
            out["head_of_line_unshared"] = head_of_line(unshared.url, args.hol_audio_s, args.capacity_chunks,
                                                        recording) | {"piece_ms": COARSE_PIECE_MS}
    return out


def replica_memory(server: BenchServer, memory: SystemMemory, weights: Path, name: str, replicas: int,
                   repeats: int) -> dict:
    """The machine memory a loaded model with `replicas` processes holds: from unloaded, weights dropped from
    the page cache, to every replica ready; each repeat once. Leaves the model loaded."""
    deltas = []
    for _ in range(repeats):
        server.unload(name)
        page_cache.drop(str(weights))  # every count starts with the weights on disk only
        before = memory.used_mb()
        server.load(name)
        server.wait_for_replicas(name, replicas)
        time.sleep(1.5)  # the replicas' memory figures are refreshed every second
        deltas.append(memory.used_mb() - before)
    info = server.info(name)
    return {"machine_mb": deltas, "weights_file_mb": weights.stat().st_size / MB,
            "shared_weights_mb": info.get("memory_shared_weights_mb"),
            "private_mb": [r["memory_unique_mb"] for r in info["replicas"]]}


def warm_reloads(server: BenchServer, name: str, repeats: int) -> list[dict]:
    """Unload with keep_warm (the weights stay in the page cache), then load again: the load's time to ready."""
    samples = []
    for _ in range(repeats):
        unloaded = server.unload(name)
        warm_mb = server.info(name).get("warm_mb")
        samples.append({"load_ms": server.load(name)["load_time_ms"], "warm_mb": warm_mb,
                        "freed_mb": unloaded["memory_freed_mb"]})
    server.wait_for_replicas(name, 1)
    return samples


def run(args: argparse.Namespace) -> dict:
    cache_dir = Path(args.cache_dir or tempfile.mkdtemp(prefix="funasr-bench-"))
    dirs = prepare_models(cache_dir, args.size, args.models)
    recording = Recording(example("vad_example.wav", cache_dir))
    memory = SystemMemory()
    raw: dict = {"models": {}}
    all_five = set(FIVE) - {"punctuation-b"} <= set(args.models)
    with_replicas = "streaming_asr" in args.models and not args.no_replicas
    served = (args.models + (["punctuation-b"] if all_five else [])  # every workload runs on this one server
              + (list(REPLICA_MODELS.values()) if with_replicas else []))
    with BenchServer(cache_dir, args.size, served, replicas_of={n: r for r, n in REPLICA_MODELS.items()},
                     warm=frozenset({REPLICA_MODELS[1]})) as server:
        for model_id in args.models:
            print(f"[bench] {model_id}: loads x{args.repeats} (server, in-process, naive)", file=sys.stderr,
                  flush=True)
            entry, baseline = load_cycles(server, memory, model_id, dirs[model_id], args.repeats, recording)
            requests = {"vad": max(4, args.requests // 10),  # 70 s of audio each
                        "asr": max(2, args.requests // 50)}.get(model_id, args.requests)
            print(f"[bench] {model_id}: {requests} requests, HTTP and direct", file=sys.stderr, flush=True)
            entry |= request_latencies(server, model_id, requests, recording, baseline)
            raw["models"][model_id] = entry
        if "punctuation" in args.models:
            print("[bench] protocol overhead: tritonclient vs POST /punctuation", file=sys.stderr, flush=True)
            server.load("punctuation")
            raw["protocol"] = protocol_latencies(server.url, args.requests)
            server.unload("punctuation")
        print("[bench] idle: every model loaded, no traffic", file=sys.stderr, flush=True)
        raw["idle"] = idle_cores(server, args.models, seconds=args.idle_s)
        print("[bench] control plane under load", file=sys.stderr, flush=True)
        raw["control_plane_ms"] = control_plane_during_load(server, args.models[0])
        if all_five:
            print("[bench] five models loaded, then unloaded one by one", file=sys.stderr, flush=True)
            raw["five_models"] = five_models(server, memory)
        if with_replicas:
            raw |= replica_workloads(server, cache_dir, args.size, args, memory, recording)
    return {"machine": machine_info(), "size": args.size, "repeats": args.repeats, "requests": args.requests,
            "memory_probe": memory.source, "raw": raw, "summary": summarize(raw)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200, help="requests per latency figure")
    parser.add_argument("--models", nargs="+", choices=MODEL_IDS, default=list(MODEL_IDS))
    parser.add_argument("--max-streams", type=int, default=16, help="capacity search stops here")
    parser.add_argument("--capacity-chunks", type=int, default=10, help="600 ms chunks per stream per step")
    parser.add_argument("--hol-audio-s", type=float, default=300.0, help="the long transcription's length")
    parser.add_argument("--hol-unshared", action="store_true",
                        help="measure head-of-line also with 60 s transcription pieces, for comparison")
    parser.add_argument("--no-replicas", action="store_true",
                        help="skip the replica workloads (memory, capacity, head-of-line, warm reloads)")
    parser.add_argument("--idle-s", type=float, default=20.0, help="how long the idle server's CPU is measured")
    parser.add_argument("--cache-dir", help="where generated models go (default: a fresh temporary directory)")
    parser.add_argument("--json", type=Path, help="write every raw sample and the summary here")
    parser.add_argument("--markdown", type=Path, help="write the summary table as Markdown here")
    parser.add_argument("--plot", type=Path, metavar="DIR", help="draw the run's charts here, PNG and SVG "
                        "(needs the [bench] extra: matplotlib)")
    parser.add_argument("--plot-only", type=Path, metavar="JSON", help="draw the charts of a saved run (its "
                        "--json) into --plot DIR, without running anything")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.plot_only:
        if not args.plot:
            parser.error("--plot-only needs --plot DIR: where to write the charts")
        return draw(json.loads(args.plot_only.read_text()), args.plot)
    result = run(args)
    print(render_table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    if args.markdown:
        args.markdown.write_text(render_markdown(result))
    return draw(result, args.plot) if args.plot else 0


def draw(result: dict, out_dir: Path) -> int:
    from scripts.bench_plots import plot_all  # matplotlib only when charts are asked for
    for path in plot_all(result, out_dir):
        print(f"[bench] chart: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
