"""Damaged, truncated and lying audio files of every container are refused with a 4xx naming the problem, never
a 500: the decoder is fuzzed directly (fast, thousands of files), and the routes that take files are checked on
a WAV whose chunk sizes run past the end of the file."""

from __future__ import annotations

import io
import random
import struct
import wave

import pytest

from api.decode import decode_audio
from scripts.recordings import reencoded
from wire.errors import SupervisorError

CONTAINERS = [("wav", "pcm_s16le", 16000), ("wav", "pcm_s24le", 44100), ("flac", "flac", 16000),
              ("mp3", "libmp3lame", 44100), ("ogg", "libopus", 48000), ("webm", "libopus", 48000),
              ("ipod", "aac", 44100)]


def tone_wav(seconds: float = 1.0) -> bytes:
    samples = [int(8000 * ((i // 40) % 2 * 2 - 1)) for i in range(int(16000 * seconds))]  # a 200 Hz square wave
    return wav_of(struct.pack(f"<{len(samples)}h", *samples))


def lying_wavs(good: bytes) -> dict[str, bytes]:
    """A WAV's chunk sizes made to run past the end of the file, or to nothing."""
    def with_size(offset: int, size: int) -> bytes:
        return good[:offset] + struct.pack("<I", size) + good[offset + 4:]
    return {"fmt past the end": with_size(16, 10 ** 8), "fmt empty": with_size(16, 0),
            "data past the end": with_size(40, 10 ** 8), "riff past the end": with_size(4, 2 ** 32 - 1),
            "extra chunk past the end": good[:36] + b"LIST" + struct.pack("<I", 10 ** 6) + good[36:],
            "header only": good[:44]}


def damaged(data: bytes, rng: random.Random) -> list[bytes]:
    """Truncations at every tenth of the file, and copies with a few random bytes overwritten."""
    cuts = [data[:len(data) * k // 10] for k in range(1, 10)]
    flips = []
    for _ in range(12):
        copy = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            copy[rng.randrange(min(len(copy), 512))] = rng.randrange(256)  # headers live at the start
        flips.append(bytes(copy))
    return cuts + flips


def decodes_or_refuses(data: bytes) -> None:
    try:
        pcm = decode_audio(data, max_audio_s=30)
    except SupervisorError as exc:
        assert exc.code in ("INVALID_REQUEST", "PAYLOAD_TOO_LARGE"), exc.code
        assert exc.message and exc.details
        return
    assert isinstance(pcm, bytes) and 0 < len(pcm) <= 30 * 32000 and len(pcm) % 2 == 0


@pytest.mark.parametrize("container, codec, rate", CONTAINERS, ids=[f"{c}-{k}" for c, k, _ in CONTAINERS])
def test_every_container_damaged_decodes_or_is_refused(container, codec, rate):
    data = reencoded(tone_wav(), container, codec, rate, "mono")
    for variant in damaged(data, random.Random(f"{container}-{codec}")):
        decodes_or_refuses(variant)


def test_lying_wav_headers_decode_or_are_refused():
    for name, data in lying_wavs(tone_wav()).items():
        try:
            decodes_or_refuses(data)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None


@pytest.mark.parametrize("route", ["/vad", "/asr/transcribe", "/v1/audio/transcriptions"])
def test_a_wav_whose_chunks_run_past_its_end_is_a_400_on_every_route(client, route):
    data = lying_wavs(tone_wav())["extra chunk past the end"]
    if route.startswith("/v1"):
        body, content_type = multipart(data)
    else:
        body, content_type = data, "audio/wav"
    resp = client.simulate_post(route, body=body, headers={"Content-Type": content_type})
    assert resp.status_code == 400, resp.json
    said = resp.json["error"]["message"] if route.startswith("/v1") else f"{resp.json['error']}: {resp.json['details']}"
    assert said.startswith("Undecodable audio: found a WAV file whose chunks are damaged"), said


def multipart(data: bytes) -> tuple[bytes, str]:
    boundary = "fuzzboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
            f"Content-Type: audio/wav\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_decompression_bombs_at_once_hold_no_more_than_max_decodes_of_audio():
    """Four small FLAC files of ten minutes of silence each, sent together, against a 60 s cap: each is refused
    (413) once 60 s are decoded, and with `max_decodes` 1 the process's peak of traced memory is that of one
    decode, where letting all four decode at once costs about four times as much (so the bound is what holds
    it)."""
    import threading
    import tracemalloc

    silence = b"\0\0" * 16000 * 600
    bomb = reencoded(wav_of(silence), "flac", "flac", 16000, "mono")
    assert len(bomb) < len(silence) / 100

    def burst(max_decodes: int) -> int:
        refused: list[str] = []

        def send() -> None:
            try:
                decode_audio(bomb, max_audio_s=60, max_decodes=max_decodes)
            except SupervisorError as exc:
                refused.append(exc.code)
        tracemalloc.start()
        threads = [threading.Thread(target=send) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert refused == ["PAYLOAD_TOO_LARGE"] * 4
        return peak

    one_at_a_time, all_at_once = burst(1), burst(4)
    cap_bytes = 60 * 32000
    assert one_at_a_time < 2.5 * cap_bytes, one_at_a_time
    assert all_at_once > 1.5 * one_at_a_time, (all_at_once, one_at_a_time)


def wav_of(pcm: bytes) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1), wav.setsampwidth(2), wav.setframerate(16000)
        wav.writeframes(pcm)
    return out.getvalue()
