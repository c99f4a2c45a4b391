"""API keys with roles: every route but the health probes needs `Authorization: Bearer <key>`.

`admin` keys may change which models exist and run (load, unload, register, forget: Triton's restricted
`model-repository` API); `user` keys use them (inference, info, metrics, probes). The probes stay open because a
kubelet's httpGet probe cannot send a secret header; they say only whether the server runs and whether its
required models are loaded.
"""

from __future__ import annotations

import hmac
import re
from typing import Mapping

import falcon

from wire.errors import ErrorCode, SupervisorError

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"})
ADMIN, USER = "admin", "user"
# (method, path) of the lifecycle and registry routes: admin only
ADMIN_ROUTES = (("POST", re.compile(r"/model/load")), ("DELETE", re.compile(r"/model/unload/[^/]+")),
                ("PUT", re.compile(r"/model/registry/[^/]+")), ("DELETE", re.compile(r"/model/registry/[^/]+")),
                ("POST", re.compile(r"/v2/repository/models/[^/]+/(load|unload)")))


def server_keys(api_keys: Mapping[str, str], api_key: str | None) -> dict[str, str]:
    """[server] api_keys, plus the CLI's --api-key as an admin key; empty: no key is asked for."""
    return {**api_keys, **({api_key: ADMIN} if api_key else {})}


def needs_admin(method: str, path: str) -> bool:
    return any(method == m and pattern.fullmatch(path) for m, pattern in ADMIN_ROUTES)


class ApiKeyMiddleware:
    def __init__(self, keys: dict[str, str]) -> None:
        self._keys = [(key.encode(), role) for key, role in keys.items()]

    def role_of(self, token: str) -> str | None:
        """compare_digest against every key: the time taken tells neither which key nor how much of it matched."""
        given, found = token.strip().encode(), None
        for key, role in self._keys:
            if hmac.compare_digest(given, key):
                found = role
        return found

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.path in OPEN_PATHS:
            return
        scheme, _, token = (req.get_header("Authorization") or "").partition(" ")
        role = self.role_of(token) if scheme.lower() == "bearer" else None
        if role is None:
            resp.set_header("WWW-Authenticate", "Bearer")
            raise SupervisorError(ErrorCode.UNAUTHORIZED, "Missing or wrong API key",
                                  "send the header `Authorization: Bearer <key>` with one of the server's API keys")
        if role != ADMIN and needs_admin(req.method, req.path):
            raise SupervisorError(ErrorCode.FORBIDDEN, "This key may not change models",
                                  f"{req.method} {req.path} needs an admin key; this key's role is {role}")
