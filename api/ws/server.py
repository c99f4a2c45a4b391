"""The WebSocket server: FunASR's runtime protocol (any path) and OpenAI's Realtime transcription (`/v1/realtime`)
beside the HTTP API.

waitress cannot upgrade a connection, so WebSockets get their own port (`[server] ws_port`, 10095 as FunASR's
servers use) served by the `websockets` library on its own thread and event loop in the API process. Every
blocking facade call runs on a thread pool sized for the sessions, never on the loop. Keys and roles are the HTTP
API's: `Authorization: Bearer <key>`, or `?token=<key>` (or a browser's `openai-insecure-api-key.<key>`
subprotocol) for clients that cannot set headers; a refused handshake is answered with the JSON error envelope.
Pings are sent, but a missing pong never closes a connection (upstream's ping timeouts closed healthy ones).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import msgspec
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from api.common.auth import ApiKeyMiddleware
from api.common.errors import HTTP_STATUS, envelope
from api.funasr.session import FunasrSession
from api.openai.realtime import RealtimeTranscription
from flows.ports import SupervisorAPI
from api.common.deps import Deps
from flows.transcription import TRANSCRIBERS
from wire.errors import ErrorCode

log = logging.getLogger(__name__)

REALTIME = "/v1/realtime"
SUBPROTOCOLS = ("binary", "realtime")   # FunASR's clients offer `binary`, OpenAI's browser examples `realtime`
KEY_SUBPROTOCOL = "openai-insecure-api-key."
PING_INTERVAL_S = 20.0


class QuietHandshakes(logging.Filter):
    """A connection that never sends a WebSocket handshake (a load balancer's TCP probe, TLS on the plain port) is
    one INFO line naming why, not an ERROR with a traceback. (On the TLS port, such a connection fails the TLS
    handshake inside asyncio, which logs it only in debug mode.)"""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if record.msg == "opening handshake failed" and exc is not None:
            peer = getattr(getattr(record, "websocket", None), "remote_address", None)
            record.levelno, record.levelname = logging.INFO, "INFO"
            why = f"{exc} ({exc.__cause__})" if exc.__cause__ else f"{exc}"
            record.msg = "not a WebSocket handshake from %s: %s"
            record.args = (f"{peer[0]}:{peer[1]}" if peer else "a client", why)
            record.exc_info = record.exc_text = None
        return True


logging.getLogger("websockets.server").addFilter(QuietHandshakes())


def refusal(code: str, message: str, details: str) -> Response:
    status = HTTPStatus(HTTP_STATUS[code])
    body = msgspec.json.encode(envelope(code, message, details))
    return Response(status.value, status.phrase, Headers([("Content-Type", "application/json"),
                                                          ("Content-Length", str(len(body)))]), body)


class WebSocketServer:
    def __init__(self, supervisor: SupervisorAPI, keys: dict[str, str], host: str, port: int,
                 tls: ssl.SSLContext | None = None) -> None:
        self.supervisor, self.settings = supervisor, supervisor.settings
        self.deps = Deps(supervisor)
        self.tls = tls
        self.scheme = "wss" if tls else "ws"
        self.keys = ApiKeyMiddleware(keys) if keys else None
        self.host, self.port = host, port
        self.active = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._failed: OSError | None = None

    # -- life ------------------------------------------------------------------------------------------------
    def start(self) -> int:
        """Listen (in its own thread); the bound port, or OSError when the port cannot be had."""
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="websocket", daemon=True)
        self._thread.start()
        ready.wait()
        if self._failed is not None:
            raise self._failed
        return self.port

    def _run(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        loop.set_default_executor(ThreadPoolExecutor(max_workers=2 * self.settings.ws_max_sessions + 4,
                                                     thread_name_prefix="ws-work"))
        try:
            server = self._server = loop.run_until_complete(self._listen())
            self.port = server.sockets[0].getsockname()[1]
        except OSError as exc:
            self._failed = exc
            loop.close()  # now, on its own thread: left to the garbage collector at exit, it printed a traceback
            return
        finally:
            ready.set()
        loop.run_forever()
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()

    async def _listen(self):
        limit = self.deps.limits.frame_bytes
        return await serve(self._handle, self.host, self.port, process_request=self._admit, ssl=self.tls,
                           select_subprotocol=self._subprotocol, ping_interval=PING_INTERVAL_S, ping_timeout=None,
                           compression=None, max_size=2 * limit + 65536)  # the handler answers past `limit` itself

    def close(self) -> None:
        """Close every connection (1001), wait for their sessions to free their streams, stop the loop."""
        loop, server, thread = self._loop, self._server, self._thread
        if loop is None or server is None or thread is None or self._failed is not None or not loop.is_running():
            return

        async def stop() -> None:
            server.close()
            await server.wait_closed()
            loop.stop()
        asyncio.run_coroutine_threadsafe(stop(), loop)
        thread.join(timeout=30)

    # -- the handshake -----------------------------------------------------------------------------------------
    def _admit(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        query = parse_qs(url.query)
        if self.keys is not None and self.keys.role_of(self._token(request, query)) is None:
            return refusal(ErrorCode.UNAUTHORIZED, "Missing or wrong API key",
                           "send `Authorization: Bearer <key>` (or ?token=<key>) with one of the server's API keys")
        intent = query.get("intent", ["transcription"])[0]
        if url.path.rstrip("/") == REALTIME and intent != "transcription":
            return refusal(ErrorCode.INVALID_REQUEST, f"Unsupported intent '{intent[:40]}'",
                           "this server transcribes: connect with ?intent=transcription")
        if self.active >= self.settings.ws_max_sessions:
            return refusal(ErrorCode.OVERLOADED, "Too many WebSocket sessions",
                           f"at most ws_max_sessions={self.settings.ws_max_sessions} ([server] in the config)")
        return None

    @staticmethod
    def _token(request: Request, query: dict[str, list[str]]) -> str:
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() == "bearer":
            return token
        offered = [p.strip() for p in (request.headers.get("Sec-WebSocket-Protocol") or "").split(",")]
        keyed = [p[len(KEY_SUBPROTOCOL):] for p in offered if p.startswith(KEY_SUBPROTOCOL)]
        return (query.get("token") or query.get("api_key") or keyed or [""])[0]

    @staticmethod
    def _subprotocol(connection: ServerConnection, offered) -> str | None:
        """`binary` or `realtime` when offered; none otherwise (FunASR's HTML5 page offers none)."""
        return next((p for p in SUBPROTOCOLS if p in offered), None)

    # -- a connection ----------------------------------------------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        self.active += 1
        path = ws.request.path if ws.request else "/"
        try:
            url = urlsplit(path)
            if url.path.rstrip("/") != REALTIME:  # any other path: FunASR's runtime protocol, as its servers do
                await FunasrSession(ws, self.deps).run()
                return
            model = parse_qs(url.query).get("model", [None])[0]
            models = self.supervisor.snapshot.models
            known = model if model in models and models[model].kind in TRANSCRIBERS else None
            await RealtimeTranscription(ws, self.deps, known).run()
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("websocket %s: session failed", path)
            await ws.close(1011, "internal error")
        finally:
            self.active -= 1
