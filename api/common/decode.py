"""Any audio file to what the models take: 16 kHz mono 16-bit little-endian PCM.

WAV of any rate, channel count and sample format (extensible and streamed headers too), FLAC, MP3, OGG/Opus,
WebM/Opus, M4A/AAC and MP4 audio are decoded and resampled by FFmpeg, through PyAV, whose wheel bundles it (no
system FFmpeg, no subprocess; chosen over soundfile + soxr because one library covers every container a browser
or a phone writes). A 16 kHz mono 16-bit WAV skips the decoder. Decoding happens once, in the request's thread
of the API process, never on the supervisor's loop; the decoded length is capped as it grows, so a small file
that decodes to hours is refused before it fills memory.
"""

from __future__ import annotations

import io
import threading
import wave

from wire.errors import ErrorCode, SupervisorError
from wire.audio import BYTES_PER_SECOND, SAMPLE_RATE


def decode_slots(count: int) -> threading.BoundedSemaphore:
    """The API process's decodes that may run at once (`[server] max_decodes`), one set per setting."""
    with _SLOTS_LOCK:
        return _SLOTS.setdefault(count, threading.BoundedSemaphore(count))


_SLOTS: dict[int, threading.BoundedSemaphore] = {}
_SLOTS_LOCK = threading.Lock()


def decode_audio(data: bytes, max_audio_s: float, max_decodes: int = 2, wait_s: float = 60.0) -> bytes:
    """The file's first audio stream as 16 kHz mono PCM; 400 naming the format when it cannot be decoded, 413
    past `max_audio_s`. At most `max_decodes` files decode at once (others wait up to `wait_s`, then 503), so the
    decoded audio the process holds stays under max_decodes x max_audio_s x 64 kB/s (the PCM as it grows,
    and its final copy), however many small files that decode to hours arrive together."""
    if not data:
        raise SupervisorError(ErrorCode.INVALID_REQUEST, "Empty audio", "the request body holds no audio")
    pcm = plain_wav(data)
    if pcm is None:
        slots = decode_slots(max_decodes)
        if not slots.acquire(timeout=wait_s):
            raise SupervisorError(ErrorCode.OVERLOADED, "Too many files decoding",
                                  f"max_decodes={max_decodes} files are decoding and none finished within {wait_s:g} s "
                                  "([server] in the config)", retry_after_s=5)
        try:
            pcm = decoded(data, max_audio_s)
        finally:
            slots.release()
    if len(pcm) > max_audio_s * BYTES_PER_SECOND:
        raise too_long(max_audio_s)
    if not pcm:
        raise SupervisorError(ErrorCode.INVALID_REQUEST, "No audio samples", "the file decodes to no audio at all")
    return pcm


def plain_wav(data: bytes) -> bytes | None:
    """The frames of a 16 kHz mono 16-bit PCM WAV, or None for anything else (the decoder takes it)."""
    if not data.startswith(b"RIFF") or data[8:12] != b"WAVE":
        return None
    try:
        with wave.open(io.BytesIO(data)) as wav:
            if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (SAMPLE_RATE, 1, 2):
                return None
            frames = wav.readframes(wav.getnframes())
            return frames[:len(frames) // 2 * 2]  # a file cut inside a sample: its whole samples
    except (wave.Error, EOFError, RuntimeError):  # extensible or streamed headers, or chunk sizes that run past
        return None                                   # the end (RuntimeError from the chunk reader): FFmpeg judges


def decoded(data: bytes, max_audio_s: float) -> bytes:
    import av  # the API process's only native decoder; imported on the first file that needs it

    limit = int(max_audio_s * BYTES_PER_SECOND)
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.error.FFmpegError, ValueError) as exc:
        riff = data.startswith((b"RIFF", b"RF64")) and data[8:12] == b"WAVE"
        raise undecodable("a WAV file whose chunks are damaged" if riff else "an unrecognised format", exc) from None
    with container:
        found = container.format.name
        stream = next(iter(container.streams.audio), None)
        if stream is None:
            raise SupervisorError(ErrorCode.INVALID_REQUEST, "No audio in the file",
                                  f"the {found} file has no audio stream")
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        out = bytearray()
        try:
            for frame in container.decode(stream):
                for piece in resampler.resample(frame):
                    out += bytes(piece.planes[0])[:piece.samples * 2]
                if len(out) > limit:
                    raise too_long(max_audio_s)
            for piece in resampler.resample(None):
                out += bytes(piece.planes[0])[:piece.samples * 2]
        except (av.error.FFmpegError, ValueError) as exc:
            codec = stream.codec_context.name if stream.codec_context else "no codec FFmpeg knows"
            raise undecodable(f"{found} ({codec})", exc) from None
    return bytes(out)


def undecodable(found: str, exc: Exception) -> SupervisorError:
    return SupervisorError(ErrorCode.INVALID_REQUEST, "Undecodable audio",
                           f"found {found}, which could not be decoded: {exc}; send WAV, FLAC, MP3, OGG/Opus, "
                           "WebM, M4A/AAC or MP4 audio")


def too_long(max_audio_s: float) -> SupervisorError:
    return SupervisorError(ErrorCode.PAYLOAD_TOO_LARGE, "Audio too long",
                           f"the audio decodes to more than max_audio_s={max_audio_s:g} s ([server] in the config)")


class LiveAudio:
    """Live audio of a WebSocket session to 16 kHz mono PCM, piece by piece: PCM16 at any rate (OpenAI's Realtime
    sends 24 kHz, FunASR's clients a file's own rate) or G.711 µ-law/A-law at 8 kHz. FFmpeg's resampler keeps
    its filter state between pieces, so a stream resampled in pieces equals the whole resampled at once."""

    CODECS = {"pcm16": "", "g711_ulaw": "pcm_mulaw", "g711_alaw": "pcm_alaw"}

    def __init__(self, encoding: str = "pcm16", rate: int = SAMPLE_RATE) -> None:
        import av

        self._av = av
        self.passthrough = encoding == "pcm16" and rate == SAMPLE_RATE
        self.codec: av.AudioCodecContext | None = None
        if self.CODECS[encoding]:
            codec = av.CodecContext.create(self.CODECS[encoding], "r")
            if not isinstance(codec, av.AudioCodecContext):
                raise TypeError(f"{self.CODECS[encoding]} is not an audio codec")
            codec.sample_rate, codec.layout = rate, "mono"
            self.codec = codec
        self.rate = rate
        self.resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        self.odd = b""  # a PCM16 piece may end mid-sample

    def convert(self, data: bytes) -> bytes:
        if self.codec is not None:
            return self._resampled(self.codec.decode(self._av.Packet(data)))
        data = self.odd + data
        whole = len(data) - len(data) % 2
        data, self.odd = data[:whole], data[whole:]
        if self.passthrough or not data:
            return data
        import numpy as np

        frame = self._av.AudioFrame.from_ndarray(np.frombuffer(data, "<i2").reshape(1, -1), format="s16",
                                                 layout="mono")
        frame.sample_rate = self.rate
        return self._resampled([frame])

    def flush(self) -> bytes:
        """What the resampler still holds (a few ms): at the end of input."""
        return b"" if self.passthrough else self._resampled([None])

    def _resampled(self, frames) -> bytes:
        out = bytearray()
        for frame in frames:
            for piece in self.resampler.resample(frame):
                out += bytes(piece.planes[0])[:piece.samples * 2]
        return bytes(out)
