"""A server's parts, started and stopped in order: the supervisor, HTTP (waitress) and FunASR's WebSocket protocol.

`serve` runs one until a signal. The tests run one in their own process, whose forkserver the session keeps booted:
a server process of its own would boot another, importing torch and funasr anew (~15 s of CPU)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from waitress import create_server

from api.app import create_app
from api.common.auth import server_keys
from api.common.tls import TlsUnusable, server_context
from api.ws.server import WebSocketServer
from supervisor.config import Config, ServerSettings
from supervisor.core import Supervisor

if TYPE_CHECKING:
    from supervisor.fleet.gateway import FleetSupervisor


class CannotListen(Exception):
    """A port or address that cannot be had; the message says which and what to change."""


def waitress_options(settings: ServerSettings) -> dict:
    """Sized for a model server: thousands of connections (poll, not select, past 1024 descriptors), idle and
    stalled connections closed after channel_timeout_s, and no body larger than a route accepts (waitress
    reads a body before the app, and before the API key, sees it)."""
    largest_body_mb = max(settings.max_audio_mb, settings.max_text_kb / 1024) + 1
    return {"threads": settings.http_threads, "connection_limit": settings.connection_limit,
            "channel_timeout": settings.channel_timeout_s,
            "cleanup_interval": max(1, int(settings.channel_timeout_s / 2)),
            "max_request_body_size": int(largest_body_mb * 1024 * 1024), "asyncore_use_poll": True}


class Serving:
    """Binds both ports when made (CannotListen, with nothing left behind, when one cannot be had); `start` starts
    the supervisor and answers requests; `close` ends WebSocket sessions, unloads every model, stops listening."""

    def __init__(self, config: Config, cache_dir: Path, host: str, port: int, ws_port: int,
                 api_key: str | None = None, log_format: str = "text", fleet_address: str | None = None) -> None:
        """`ws_port` 0: no WebSocket listener; `port` 0: any free port (`http.effective_port` says which);
        `fleet_address`: serve a Ray cluster's nodes (`supervisor.fleet`) instead of this machine."""
        try:
            tls = server_context(config.server.tls_cert, config.server.tls_key)
        except TlsUnusable as exc:
            raise CannotListen(str(exc)) from None
        self.supervisor: Supervisor | FleetSupervisor
        if fleet_address is not None:
            from supervisor.fleet.gateway import FleetSupervisor

            self.supervisor = FleetSupervisor(config, cache_dir, fleet_address)
        else:
            self.supervisor = Supervisor(config, cache_dir, log_format=log_format)
        try:
            self.http = create_server(create_app(self.supervisor, api_key), host=host, port=port,
                                      **waitress_options(config.server))
        except (OSError, ValueError) as exc:  # port in use, address not on this host, a host that does not resolve
            self.supervisor.close()  # never started: this only removes its socket directory
            raise CannotListen(f"cannot listen on {host}:{port}: {getattr(exc, 'strerror', None) or exc}; "
                               "choose another --host or --port") from None
        self.websockets = WebSocketServer(self.supervisor, server_keys(config.server.api_keys, api_key), host,
                                          ws_port, tls)
        try:
            if ws_port:
                self.websockets.start()
        except OSError as exc:
            self.http.close()
            self.supervisor.close()
            raise CannotListen(f"cannot listen for WebSockets on {host}:{ws_port}: {exc.strerror or exc}; choose "
                               "another --ws-port (0: off)") from None

    def start(self) -> None:
        self.supervisor.start()
        threading.Thread(target=self.http.run, name="waitress", daemon=True).start()

    def close(self) -> None:
        self.websockets.close()
        self.supervisor.close()
        self.http.close()
