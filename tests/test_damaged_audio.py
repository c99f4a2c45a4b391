"""Damaged, truncated and lying audio files of every container are refused with a 4xx naming the problem, never
a 500: the decoder is fuzzed directly (fast, thousands of files), and the routes that take files are checked on
a WAV whose chunk sizes run past the end of the file."""

from __future__ import annotations

import io
import random
import struct
import wave

import pytest

from api.common.decode import decode_audio
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


def test_decompression_bombs_at_once_hold_no_more_than_max_decodes_of_audio(monkeypatch):
    """Four small FLAC files of ten minutes of silence each, sent together, against a 60 s cap: each is refused
    (413) once 60 s are decoded, and with `max_decodes` 1 the process's peak of traced memory is that of one
    decode, where letting all four decode at once costs about four times as much (so the bound is what holds
    it). In the second burst the four decodes are made to start together (a barrier), so a busy machine that
    runs the threads one after another cannot hide the difference."""
    import threading
    import tracemalloc

    from api.common import decode

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

    one_at_a_time = burst(1)
    together, decoded = threading.Barrier(4), decode.decoded
    monkeypatch.setattr(decode, "decoded", lambda data, cap_s: (together.wait(30), decoded(data, cap_s))[1])
    all_at_once = burst(4)
    cap_bytes = 60 * 32000
    assert one_at_a_time < 2.5 * cap_bytes, one_at_a_time
    assert all_at_once > 1.5 * one_at_a_time, (all_at_once, one_at_a_time)


def wav_of(pcm: bytes) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1), wav.setsampwidth(2), wav.setframerate(16000)
        wav.writeframes(pcm)
    return out.getvalue()


@pytest.mark.long_running
@pytest.mark.parametrize("max_decodes", [1, 4])
def test_four_bombs_at_once_against_a_real_server_peak_at_max_decodes_of_audio(cache_dir, tmp_path, max_decodes):
    """The API process's own peak resident memory (VmHWM) while four FLAC files of an hour of silence each, a few
    kB apiece, are posted together against a 30-minute cap: every one is a 413, and the peak grows by about
    max_decodes decodes (57.6 MB of PCM each, plus its final copy), not by four."""
    import concurrent.futures

    import requests

    from tests.helpers import ServerProcess

    cap_s = 1800
    config = tmp_path / "models.toml"
    config.write_text(f"[server]\nmax_audio_s = {cap_s}\nmax_decodes = {max_decodes}\nmax_audio_mb = 1\n")
    bomb = reencoded(wav_of(b"\0\0" * 16000 * 3600), "flac", "flac", 16000, "mono")
    server = ServerProcess(cache_dir, models=str(config), log_path=tmp_path / "server.log")
    try:
        warm = requests.post(f"{server.url}/vad", data=reencoded(tone_wav(), "flac", "flac", 16000, "mono"),
                             headers={"Content-Type": "audio/flac"}, timeout=120)
        assert warm.status_code in (200, 404, 503), warm.text   # FFmpeg's libraries are loaded now
        before = peak_rss_mb(server.proc.pid)

        def post(_) -> int:
            return requests.post(f"{server.url}/vad", data=bomb, headers={"Content-Type": "audio/flac"},
                                 timeout=300).status_code
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            assert list(pool.map(post, range(4))) == [413] * 4
        grown = peak_rss_mb(server.proc.pid) - before
        assert server.stop() == 0
    finally:
        server.kill_everything()
    one_decode_mb = cap_s * 32000 / 1e6
    print(f"max_decodes={max_decodes}: peak grew {grown:.0f} MB ({grown / one_decode_mb:.2f} decodes)")
    if max_decodes == 1:
        assert grown < 3 * one_decode_mb, grown
    else:
        assert grown > 2 * one_decode_mb, grown   # the bound, not the cap alone, is what holds the peak down


def peak_rss_mb(pid: int) -> float:
    status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status").read().splitlines() if ":" in line)
    return int(status["VmHWM"].split()[0]) / 1024
