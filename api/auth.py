"""Optional API key: every route but the health probes needs `Authorization: Bearer <key>`.

The probes stay open because a kubelet's httpGet probe cannot send a secret header; they say only whether the
server runs and whether its required models are loaded.
"""

from __future__ import annotations

import hmac

import falcon

from supervisor.errors import SupervisorError

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"})


class ApiKeyMiddleware:
    def __init__(self, api_key: str) -> None:
        self._key = api_key.encode()

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.path in OPEN_PATHS:
            return
        scheme, _, token = (req.get_header("Authorization") or "").partition(" ")
        # compare_digest: the time taken does not tell how much of a guessed key was right
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self._key):
            resp.set_header("WWW-Authenticate", "Bearer")
            raise SupervisorError("UNAUTHORIZED", "Missing or wrong API key",
                                  "send the header `Authorization: Bearer <key>` with the server's API key")
