"""Read audio and text request bodies: content type, size and format are checked before any model sees them."""

from __future__ import annotations

import io
import wave

import falcon

from supervisor.errors import SupervisorError

PCM_TYPES = {"audio/l16", "application/octet-stream"}
WAV_TYPES = {"audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave"}
SAMPLE_RATE = 16000


def read_limited(req: falcon.Request, limit: int, what: str) -> bytes:
    """The body, refusing one over `limit` bytes before reading it all when Content-Length says so."""
    too_large = SupervisorError("PAYLOAD_TOO_LARGE", f"{what} too large",
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
    return SupervisorError("UNSUPPORTED_MEDIA", f"Unsupported content type '{mime or 'none'}'",
                           f"send one of: {', '.join(sorted(accepted))} (16-bit little-endian mono 16 kHz)")


def read_pcm(req: falcon.Request, limit: int, allow_wav: bool = False) -> bytes:
    """Raw L16 PCM (`audio/L16; rate=16000` or octet-stream), or a 16 kHz mono 16-bit WAV when allowed."""
    mime, params = media_type(req)
    accepted = PCM_TYPES | (WAV_TYPES if allow_wav else set())
    if mime not in accepted:
        raise unsupported(mime, accepted)
    if mime == "audio/l16" and (params.get("rate", "16000") != "16000" or params.get("channels", "1") != "1"):
        raise SupervisorError("UNSUPPORTED_MEDIA", "Unsupported audio format",
                              f"audio/L16 must be rate=16000 and channels=1, got {req.content_type}")
    body = read_limited(req, limit, "Audio")
    if not body:
        raise SupervisorError("INVALID_REQUEST", "Empty audio", "the request body holds no audio")
    return wav_to_pcm(body) if mime in WAV_TYPES else body


def wav_to_pcm(body: bytes) -> bytes:
    try:
        with wave.open(io.BytesIO(body)) as wav:
            rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise SupervisorError("INVALID_REQUEST", "Not a readable WAV file", f"{exc}") from None
    if (rate, channels, width) != (SAMPLE_RATE, 1, 2):
        raise SupervisorError("UNSUPPORTED_MEDIA", "Unsupported WAV format",
                              f"got {rate} Hz, {channels} channel(s), {8 * width}-bit; send 16000 Hz mono 16-bit "
                              "PCM (e.g. `sox in.wav -r 16000 -c 1 -b 16 out.wav`)")
    return frames
