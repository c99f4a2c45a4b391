"""`funasr-supervisor serve`: start the supervisor and the HTTP API; SIGTERM, SIGINT or SIGHUP unload everything
and exit 0."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import sys
import threading
from pathlib import Path

import msgspec

from cli.commands import add_parsers, run, shared_options, with_shared_defaults
from supervisor.config import DEFAULT_CACHE_DIR, ConfigError, load_config
from wire.logs import configure

log = logging.getLogger("funasr_supervisor")


def port_number(text: str) -> int:
    """argparse type for --port (and $FUNASR_SUPERVISOR_PORT, since argparse applies it to string defaults)."""
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535; set --port or "
                                         "$FUNASR_SUPERVISOR_PORT)")
    return int(text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    shared = shared_options()
    parser = argparse.ArgumentParser(prog="funasr-supervisor", description="Process-per-model FunASR server",
                                     parents=[shared])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP API and the model supervisor")
    add_serving_options(serve)
    fleet = commands.add_parser("fleet", help="run the HTTP API over a Ray cluster: one supervisor per node")
    add_serving_options(fleet)
    fleet.add_argument("--ray-address", default=os.environ.get("FUNASR_SUPERVISOR_RAY_ADDRESS"), required=not
                       os.environ.get("FUNASR_SUPERVISOR_RAY_ADDRESS"),
                       help="the Ray cluster's head, host:port ($FUNASR_SUPERVISOR_RAY_ADDRESS)")
    add_parsers(commands, shared)
    return with_shared_defaults(parser.parse_args(argv))


def add_serving_options(serve: argparse.ArgumentParser) -> None:
    env = os.environ.get
    serve.add_argument("--host", default=env("FUNASR_SUPERVISOR_HOST", "127.0.0.1"),
                       help="address to bind (default: $FUNASR_SUPERVISOR_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=port_number, default=env("FUNASR_SUPERVISOR_PORT", "8000"),
                       help="port to bind (default: $FUNASR_SUPERVISOR_PORT or 8000)")
    serve.add_argument("--ws-port", type=port_number, default=env("FUNASR_SUPERVISOR_WS_PORT"),
                       help="WebSocket port: OpenAI Realtime, FunASR's runtime protocol (default: "
                            "$FUNASR_SUPERVISOR_WS_PORT, else [server] ws_port, 10095; 0: off)")
    serve.add_argument("--models", default=env("FUNASR_SUPERVISOR_MODELS"),
                       help="'demo' (small generated models) or a TOML config path (default: "
                            "$FUNASR_SUPERVISOR_MODELS, else the real FunASR models by hub alias)")
    serve.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR,
                       help=f"model cache: generated and downloaded models (default: {DEFAULT_CACHE_DIR})")
    serve.add_argument("--tls-cert", default=env("FUNASR_SUPERVISOR_TLS_CERT"),
                       help="PEM certificate (chain): the WebSocket port speaks wss:// ($FUNASR_SUPERVISOR_TLS_CERT, "
                            "else [server] tls_cert)")
    serve.add_argument("--tls-key", default=env("FUNASR_SUPERVISOR_TLS_KEY"),
                       help="its PEM key ($FUNASR_SUPERVISOR_TLS_KEY, else [server] tls_key)")
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    serve.add_argument("--log-format", default=env("FUNASR_SUPERVISOR_LOG_FORMAT", "text"),
                       choices=["text", "json"], help="json: one JSON object per line")
    serve.add_argument("--api-key", default=env("FUNASR_SUPERVISOR_API_KEY"),
                       help="require `Authorization: Bearer <key>` on every route but /healthz "
                            "(default: $FUNASR_SUPERVISOR_API_KEY)")
    serve.add_argument("--allow-unauthenticated", action="store_true",
                       default=env("FUNASR_SUPERVISOR_ALLOW_UNAUTHENTICATED", "") == "1",
                       help="allow binding a non-loopback address without an API key")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def unusable_cache_dir(path: Path) -> str | None:
    """What is wrong with the cache directory, in one line; None when it can be used."""
    hint = "set --cache-dir or $FUNASR_SUPERVISOR_CACHE"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot use the cache directory {path}: {exc.strerror}; {hint}"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"the cache directory {path} is not writable by this user; {hint}"
    return None


def serve(args: argparse.Namespace) -> int:
    from cli.serving import CannotListen, Serving

    try:
        config = load_config(args.models)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    if args.tls_cert is not None or args.tls_key is not None:
        tls = {"tls_cert": args.tls_cert or config.server.tls_cert, "tls_key": args.tls_key or config.server.tls_key}
        config = msgspec.structs.replace(config, server=msgspec.structs.replace(config.server, **tls))
    keyed = bool(args.api_key or config.server.api_keys)
    if not is_loopback(args.host) and not keyed and not args.allow_unauthenticated:
        log.error("refusing to serve on %s without an API key: anyone who can reach it could load and unload "
                  "models. Set --api-key (or FUNASR_SUPERVISOR_API_KEY) or [server] api_keys, or pass "
                  "--allow-unauthenticated.", args.host)
        return 2
    problem = unusable_cache_dir(args.cache_dir)
    if problem:
        log.error("%s", problem)
        return 2
    ws_port = config.server.ws_port if args.ws_port is None else args.ws_port
    try:
        serving = Serving(config, args.cache_dir, args.host, args.port, ws_port, args.api_key, args.log_format,
                          fleet_address=args.ray_address if args.command == "fleet" else None)
    except CannotListen as exc:
        log.error("%s", exc)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # SIGHUP: a closed terminal, or an operator
        signal.signal(signum, lambda *_: stop.set())  # the handler only records; the main thread acts
    serving.start()
    websockets = f" and {serving.websockets.scheme}://{args.host}:{serving.websockets.port}" if ws_port else ""
    log.info("serving on http://%s:%s%s (models: %s, cache: %s, API key: %s)", args.host, serving.http.effective_port,
             websockets, args.models or "hub aliases", args.cache_dir, "required" if keyed else "off")
    stop.wait()
    log.info("shutting down: closing WebSocket sessions, unloading every model")
    serving.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command not in ("serve", "fleet"):
        return run(args)
    configure(args.log_level, args.log_format)
    return serve(args)


if __name__ == "__main__":
    sys.exit(main())
