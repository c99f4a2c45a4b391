"""TLS for the WebSocket port: FunASR's official client and servers default to `wss://`, and a browser page served
over https may only open `wss://`. The certificate and key are read once, at start-up; a file that is missing,
unreadable or does not match is a one-line start-up error naming it."""

from __future__ import annotations

import ssl
from pathlib import Path


class TlsUnusable(Exception):
    """The certificate or key cannot be used; the message says which file and why."""


def server_context(cert: str, key: str) -> ssl.SSLContext | None:
    """None when neither is set (plain ws://)."""
    if not cert and not key:
        return None
    if not cert or not key:
        raise TlsUnusable(f"TLS needs both a certificate and its key: set --tls-cert and --tls-key (or [server] "
                          f"tls_cert and tls_key); only {'tls_cert' if cert else 'tls_key'} is set")
    for what, path in (("certificate", cert), ("key", key)):
        try:
            Path(path).read_bytes()
        except OSError as exc:
            raise TlsUnusable(f"cannot read the TLS {what} {path}: {exc.strerror or exc}") from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise TlsUnusable(f"cannot use the TLS certificate {cert} with the key {key}: {exc.reason or exc} (a PEM "
                          "certificate chain and its unencrypted PEM key)") from None
    return context
