"""Log set-up: one line per event, as text or as JSON lines for log shippers (`--log-format json`)."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone

import msgspec

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"
# where an API key travels: a query parameter, an Authorization header, the browser's key subprotocol
SECRETS = [(re.compile(r"([?&](?:token|api_key|key)=)[^&\s\"']+", re.I), r"\1<redacted>"),
           (re.compile(r"((?:Authorization|Proxy-Authorization):\s*(?:Bearer|Basic|Token)?\s*)[^\s\"',]+", re.I),
            r"\1<redacted>"),
           (re.compile(r"(Bearer\s+)[^\s\"',]+", re.I), r"\1<redacted>"),
           (re.compile(r"(openai-insecure-api-key\.)[^\s\"',]+"), r"\1<redacted>")]


class RedactSecrets(logging.Filter):
    """No key reaches a log, at any level and from any library (the WebSocket library logs handshakes in clear
    at DEBUG): each record's message is rewritten with the key replaced."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = message
        for pattern, replacement in SECRETS:
            redacted = pattern.sub(replacement, redacted)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                 "level": record.levelname, "logger": record.name, "message": record.getMessage(),
                 "pid": record.process}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return msgspec.json.encode(entry).decode()


def configure(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RedactSecrets())
    logging.basicConfig(level=level, handlers=[handler], force=True)
