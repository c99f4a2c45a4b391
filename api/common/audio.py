"""Read audio and text request bodies: content type, size and format are checked before any model sees them."""

from __future__ import annotations

import falcon

from api.common.decode import decode_audio
from wire.errors import ErrorCode, SupervisorError

PCM_TYPES = {"audio/l16", "application/octet-stream"}
FILE_TYPES = ("audio/", "video/")  # WAV, FLAC, MP3, OGG, WebM, M4A, MP4: whatever FFmpeg reads


def read_limited(req: falcon.Request, limit: int, what: str) -> bytes:
    """The body, refusing one over `limit` bytes before reading it all when Content-Length says so."""
    too_large = SupervisorError(ErrorCode.PAYLOAD_TOO_LARGE, f"{what} too large",
                                f"{what} is limited to {limit} bytes by [server] in the config")
    if req.content_length is not None and req.content_length > limit:
        raise too_large
    body = req.bounded_stream.read(limit + 1)
    if len(body) > limit:
        raise too_large
    return body


def media_type(req: falcon.Request) -> tuple[str, dict[str, str]]:
    mime, params = falcon.parse_header(req.content_type or "")
    return mime.lower(), {k.lower(): v for k, v in params.items()}


def unsupported(mime: str, accepted: set[str]) -> SupervisorError:
    return SupervisorError(ErrorCode.UNSUPPORTED_MEDIA, f"Unsupported content type '{mime or 'none'}'",
                           f"send one of: {', '.join(sorted(accepted))} (raw PCM: 16-bit little-endian mono 16 kHz)")


def read_pcm(req: falcon.Request, limit: int, allow_wav: bool = False, max_audio_s: float = 0,
             max_decodes: int = 2) -> bytes:
    """Raw L16 PCM (`audio/L16; rate=16000` or octet-stream); with `allow_wav` (whole recordings) any audio
    file as well (`audio/*`, `video/*` containers: decoded and resampled, `api.common.decode`), cut at `max_audio_s`."""
    mime, params = media_type(req)
    is_file = allow_wav and mime not in PCM_TYPES and mime.startswith(FILE_TYPES)
    if mime not in PCM_TYPES and not is_file:
        raise unsupported(mime, PCM_TYPES | ({"audio/*", "video/*"} if allow_wav else set()))
    if mime == "audio/l16" and (params.get("rate", "16000") != "16000" or params.get("channels", "1") != "1"):
        raise SupervisorError(ErrorCode.UNSUPPORTED_MEDIA, "Unsupported audio format",
                              f"audio/L16 must be rate=16000 and channels=1, got {req.content_type}")
    body = read_limited(req, limit, "Audio")
    if not body:
        raise SupervisorError(ErrorCode.INVALID_REQUEST, "Empty audio", "the request body holds no audio")
    return decode_audio(body, max_audio_s, max_decodes) if is_file else body
