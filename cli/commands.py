"""`funasr-supervisor info | load | unload | ready` against a running server: tables for people, --json for scripts."""

from __future__ import annotations

import argparse
import sys
import time

import msgspec

from api.seed.client import ApiError, ModelManagerClient
from wire.views import JobView
from wire.errors import ErrorCode


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def emit_json(value) -> None:
    sys.stdout.write(msgspec.json.encode(value).decode() + "\n")


def info(client: ModelManagerClient, args: argparse.Namespace) -> int:
    result = client.info(detailed=args.json)
    if args.json:
        emit_json(result)
        return 0
    rows = [["MODEL", "STATUS", "PID", "REPLICAS", "MEMORY MB", "LOAD MS", "REQUESTS", "SUCCESS", "LAST ERROR"]]
    for model_id, m in result.available_models.items():
        rows.append([model_id, m.status, str(m.pid or "-"), str(len(m.replicas)), f"{m.memory_usage_mb:.1f}",
                     f"{m.load_time_ms:.0f}" if m.load_time_ms is not None else "-", str(m.total_requests),
                     f"{m.success_rate:.3f}", (m.last_error or "")[:60]])
    system = result.system_info
    print(table(rows))
    print(f"\nmemory available {system.available_memory_gb} of {system.total_memory_gb} GB; "
          f"cache {result.model_cache.cache_directory} ({result.model_cache.cache_size_mb} MB)")
    return 0


def show_progress(job: JobView) -> None:
    sys.stderr.write(f"\r{job.model_type}: {job.status} ({job.phase}) {job.elapsed_ms / 1000:6.1f} s   ")
    sys.stderr.flush()


def load(client: ModelManagerClient, args: argparse.Namespace) -> int:
    began = time.monotonic()
    result = client.load(args.model, sync=args.sync, force=args.force, timeout_s=args.timeout)
    if not args.sync:
        job = client.wait_for_load(result.load_id, on_progress=None if args.json else show_progress)
        if not args.json:
            sys.stderr.write("\n")
        if job.status != "completed":
            raise ApiError(500, {"error_code": job.error_code, "error": job.error, "details": job.details})
    models = client.info().available_models
    loaded = [m for m in models.values() if args.model in (m.model_id, "all")]
    if args.json:
        emit_json({"load_id": result.load_id, "models": loaded})
        return 0
    for m in loaded:
        print(f"{m.model_id}: {m.status}, pid {m.pid}, load {m.load_time_ms:.0f} ms, "
              f"memory {m.memory_usage_mb:.1f} MB (RSS)")
    print(f"done in {time.monotonic() - began:.1f} s")
    return 0


def unload(client: ModelManagerClient, args: argparse.Namespace) -> int:
    result = client.unload(args.model)
    if args.json:
        emit_json(result)
    else:
        print(f"{result.model_type}: {result.message}; freed {result.memory_freed_mb} MB in "
              f"{result.unload_time_ms} ms; still loaded: {', '.join(result.models_remaining) or 'none'}")
    return 0


def ready(client: ModelManagerClient, args: argparse.Namespace) -> int:
    try:
        result = client.ready(args.model)
    except ApiError as exc:
        if exc.code != ErrorCode.MODEL_NOT_READY:
            raise
        emit_json(exc.body) if args.json else print(f"not ready: {exc.body.get('details')}")
        return 1
    emit_json(result) if args.json else print("ready")
    return 0


COMMANDS = {"info": info, "load": load, "unload": unload, "ready": ready}


SHARED_DEFAULTS = {"url": "http://127.0.0.1:8000", "api_key": None, "json": False}


def shared_options() -> argparse.ArgumentParser:
    """--url, --api-key and --json, accepted before or after the subcommand (as people type them)."""
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument("--url", default=argparse.SUPPRESS, help=f"server (default {SHARED_DEFAULTS['url']})")
    shared.add_argument("--api-key", default=argparse.SUPPRESS, help="the server's API key")
    shared.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    return shared


def with_shared_defaults(args: argparse.Namespace) -> argparse.Namespace:
    for name, value in SHARED_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, value)
    return args


def add_parsers(commands, shared: argparse.ArgumentParser) -> None:
    for name, help_text in (("info", "show every model"), ("load", "load a model, with live progress"),
                            ("unload", "unload a model"), ("ready", "exit 0 when ready (all required, or MODEL)")):
        sub = commands.add_parser(name, help=help_text, parents=[shared])
        if name in ("load", "unload"):
            sub.add_argument("model", help="streaming_asr, punctuation, vad or all")
        if name == "ready":
            sub.add_argument("model", nargs="?")
        if name == "load":
            sub.add_argument("--sync", action="store_true", help="one blocking call instead of polling the job")
            sub.add_argument("--force", action="store_true", help="force_reload: a fresh process")
            sub.add_argument("--timeout", type=float, default=300.0)


def run(args: argparse.Namespace) -> int:
    client = ModelManagerClient(args.url, args.api_key or None)
    try:
        return COMMANDS[args.command](client, args)
    except ApiError as exc:
        emit_json({"success": False, **exc.body}) if args.json else print(f"error: {exc}", file=sys.stderr)
        return 1
