"""msgspec as Falcon's JSON handler: encodes our Structs directly, and decodes typed bodies."""

from __future__ import annotations

from typing import Any, TypeVar

import falcon
import falcon.media
import msgspec

from api.common.audio import read_limited
from wire.errors import ErrorCode, SupervisorError

T = TypeVar("T")
MAX_JSON_BYTES = 64 * 1024

_encoder = msgspec.json.Encoder()


class MsgspecJSONHandler(falcon.media.BaseHandler):
    """Falcon media handler on msgspec: fast, and the same codec the API's Structs are written for."""

    def serialize(self, media: Any, content_type: str | None = None) -> bytes:
        return _encoder.encode(media)

    def deserialize(self, stream, content_type: str | None, content_length: int | None) -> Any:
        return msgspec.json.decode(stream.read())


def read_body(req: falcon.Request, body_type: type[T], optional: bool = False,
              limit: int = MAX_JSON_BYTES) -> T:
    """Decode the request body into `body_type`; every way it can be wrong is an INVALID_REQUEST (or 413).

    Any content type is read as JSON, since `curl -d` sends form-encoded by default.
    """
    raw = read_limited(req, limit, "JSON body")
    if not raw.strip():
        if optional:
            return body_type()
        raw = b"{}"
    try:
        return msgspec.json.decode(raw, type=body_type)
    except msgspec.ValidationError as exc:
        raise SupervisorError(ErrorCode.INVALID_REQUEST, "Invalid request body", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise SupervisorError(ErrorCode.INVALID_REQUEST, "Malformed JSON",
                              f"The body is not valid JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise SupervisorError(ErrorCode.INVALID_REQUEST, "Body is not UTF-8", f"JSON must be UTF-8: {exc}") from None
