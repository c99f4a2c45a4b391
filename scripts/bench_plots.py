"""Charts of one benchmark run, drawn from its JSON: load time, memory, latency under load, head-of-line.

matplotlib is the `[bench]` extra, imported only here, never by the server. Every chart is written as PNG and
SVG, with its axes' units and, in a caption, the machine and versions the figures came from. Axis limits are
matplotlib's own, so no point is ever cut off.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")   # files only: no display on a server or in CI
matplotlib.rcParams["svg.fonttype"] = "none"   # SVG text stays text: smaller, and searchable
import matplotlib.pyplot as plt  # noqa: E402

REAL_TIME_MS = 600.0
PHASES = (("process_start_ms", "process start"), ("weights_ms", "weights"), ("trim_ms", "trim"),
          ("warmup_ms", "warm-up"))
COLOURS = {"server": "#1f77b4", "in-process": "#ff7f0e", "naive": "#7f7f7f", "machine": "#2ca02c"}
PHASE_SHADES = ("#0b3c5d", "#1f77b4", "#6baed6", "#c6dbef")


def caption(result: dict) -> str:
    machine = result["machine"]
    versions = machine["versions"]
    return (f"{result['size']} models, median of {result['repeats']}; {machine['cpu_cores']} cores "
            f"({machine['cpu_model']}), {machine['memory_gb']} GB, Python {machine['python']}, "
            f"torch {versions['torch']}, funasr {versions['funasr']}")


def figure(result: dict, title: str):
    fig, ax = plt.subplots(figsize=(9, 5), layout="constrained")
    ax.set_title(title)
    fig.text(0.01, 0.005, caption(result), fontsize=7, color="#555555")
    fig.get_layout_engine().set(h_pad=0.25)
    return fig, ax


def load_time(result: dict, ax) -> None:
    """Per model: the server's load as its phases stacked, beside in-process AutoModel and a naive cold start,
    each with its repeats as points."""
    models = result["raw"]["models"]
    width = 0.27
    for i, (model_id, entry) in enumerate(models.items()):
        x = i - width
        bottom = 0.0
        for (key, label), shade in zip(PHASES, PHASE_SHADES):
            height = statistics.median(p[key] for p in entry["server"]["phases"])
            ax.bar(x, height, width, bottom=bottom, color=shade, label=f"server: {label}" if i == 0 else None)
            bottom += height
        ax.scatter([x] * len(entry["server"]["load_ms"]), entry["server"]["load_ms"], color="black", s=12,
                   zorder=3, label="each repeat" if i == 0 else None)
        for offset, name, values in ((0.0, "in-process", entry["baseline"]["inproc_load_ms"]),
                                     (width, "naive", entry["naive_ms"])):
            ax.bar(i + offset, statistics.median(values), width, color=COLOURS[name],
                   label=("in-process AutoModel" if name == "in-process" else "naive cold start") if i == 0 else None)
            ax.scatter([i + offset] * len(values), values, color="black", s=12, zorder=3)
    ax.set_xticks(range(len(models)), list(models))
    ax.set_ylabel("time until the model answers (ms)")
    ax.legend(fontsize=8)


def memory(result: dict, ax) -> None:
    """Per model: what a load holds and an unload gives back, for the server (as it reports it, and as the
    machine's memory moved) and in-process (RSS added by the load, and what `del` + `gc` gave back)."""
    models = result["raw"]["models"]
    bars = (("server: held after load (machine)", lambda e: e["server"]["sys_load_mb"], "#9ecae1"),
            ("server: memory_freed_mb (reported)", lambda e: e["server"]["freed_mb"], COLOURS["server"]),
            ("server: machine memory returned", lambda e: e["server"]["sys_returned_mb"], COLOURS["machine"]),
            ("in-process: RSS added by the load", lambda e: e["baseline"]["inproc_held_mb"], "#fdd0a2"),
            ("in-process: returned by del + gc", lambda e: [held - kept for held, kept in zip(
                e["baseline"]["inproc_held_mb"], e["baseline"]["inproc_kept_after_del_mb"])], COLOURS["in-process"]))
    width = 0.8 / len(bars)
    for i, entry in enumerate(models.values()):
        for j, (label, values_of, colour) in enumerate(bars):
            values = values_of(entry)
            x = i - 0.4 + width * (j + 0.5)
            ax.bar(x, statistics.median(values), width, color=colour, label=label if i == 0 else None)
            ax.scatter([x] * len(values), values, color="black", s=8, zorder=3)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks(range(len(models)), list(models))
    ax.set_ylabel("memory (MB)")
    ax.set_xlabel("held after load is what the load added: the weights were often in the page cache already\n"
                  "(the baselines read the same file just before), and the unload drops them too", fontsize=7)
    ax.legend(fontsize=8)


def latency_under_load(result: dict, ax) -> None:
    """Stream chunk latency against concurrent real-time streams, one line per max_replicas."""
    for replicas, entry in sorted(result["raw"]["capacity"].items()):
        streams = [s["streams"] for s in entry["steps"]]
        line = ax.plot(streams, [s["p95_ms"] for s in entry["steps"]], marker="o",
                       label=f"p95, {replicas} replica{'s' if replicas != '1' else ''}")[0]
        ax.plot(streams, [s["p50_ms"] for s in entry["steps"]], marker=".", linestyle="--", color=line.get_color(),
                label=f"p50, {replicas} replica{'s' if replicas != '1' else ''}")
    ax.axhline(REAL_TIME_MS, color="red", linewidth=1, label="real time: a chunk every 600 ms")
    ax.set_xlabel("concurrent real-time streams")
    ax.set_ylabel("stream chunk latency (ms)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8)


def head_of_line(result: dict, ax) -> None:
    """One stream's chunk latency over time beside a long transcription on the same replica: with fair sharing
    (the transcription fed in pieces), and without it when that was measured too."""
    runs = [("fair sharing", result["raw"]["head_of_line"])]
    if "head_of_line_unshared" in result["raw"]:
        runs.append(("turns as long as allowed", result["raw"]["head_of_line_unshared"]))
    for label, run in runs:
        times = run.get("busy_at_s") or list(range(len(run["busy_ms"])))
        pieces = f", {run['piece_ms'] / 1000:g} s pieces" if "piece_ms" in run else ""
        ax.plot(times, run["busy_ms"], marker=".", linewidth=0.8,
                label=f"{label}{pieces}: beside a {run['audio_s']:g} s transcription")
    idle = sorted(runs[0][1]["idle_ms"])
    ax.axhline(idle[min(len(idle) - 1, int(0.95 * len(idle)))], color="grey", linestyle="--",
               label="p95 with the replica idle")
    ax.axhline(REAL_TIME_MS, color="red", linewidth=1, label="real time: a chunk every 600 ms")
    timed = "busy_at_s" in runs[0][1]
    ax.set_xlabel("time since the transcription started (s)" if timed else "chunk number")
    values = [v for _, run in runs for v in run["busy_ms"] + run["idle_ms"]]
    wide = max(values) / max(min(values), 1e-3) > 20   # one run's waits in seconds, another's in ms: log scale
    if wide:
        ax.set_yscale("log")
    ax.set_ylabel("stream chunk latency (ms" + (", log scale)" if wide else ")"))
    ax.legend(fontsize=8)


CHARTS = (("load-time", "Time to a usable model: server vs in-process AutoModel vs naive cold start", load_time),
          ("memory", "Memory held by a load and given back by its unload", memory),
          ("latency-under-load", "Live stream latency as concurrent streams grow", latency_under_load),
          ("head-of-line", "A live stream beside a long transcription on the same replica", head_of_line))


def plot_all(result: dict, out_dir: Path) -> list[Path]:
    """Every chart the run has data for, as PNG and SVG; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, title, draw in CHARTS:
        if draw in (latency_under_load, head_of_line) and "capacity" not in result["raw"]:
            continue   # a run without the streaming model has no load or head-of-line figures
        fig, ax = figure(result, title)
        draw(result, ax)
        for suffix in ("png", "svg"):
            path = out_dir / f"{name}.{suffix}"
            fig.savefig(path, dpi=100)
            written.append(path)
        plt.close(fig)
    return written
