"""Any audio in: FunASR's example recording re-encoded as WAV of other rates, channels and sample formats,
FLAC, MP3, OGG/Opus, WebM/Opus and M4A/AAC gives the VAD's published segments through `/vad` (within 40 ms:
resampling and lossy codecs move a boundary by a frame or two); bad or endless files are refused clearly."""

from __future__ import annotations

import falcon.testing
import pytest

from api.app import create_app
from scripts.recordings import VAD_EXAMPLE_SEGMENTS, example, reencoded as encode

# (container, codec, sample rate, layout, content type)
FORMATS = [("wav", "pcm_s16le", 44100, "stereo", "audio/wav"), ("wav", "pcm_s24le", 16000, "mono", "audio/wav"),
           ("wav", "pcm_f32le", 48000, "mono", "audio/x-wav"), ("flac", "flac", 16000, "mono", "audio/flac"),
           ("mp3", "libmp3lame", 44100, "stereo", "audio/mpeg"), ("ogg", "libopus", 48000, "mono", "audio/ogg"),
           ("webm", "libopus", 48000, "mono", "audio/webm"), ("ipod", "aac", 44100, "stereo", "audio/mp4")]


@pytest.fixture(scope="module")
def original(cache_dir) -> bytes:
    return example("vad_example.wav", cache_dir).read_bytes()


@pytest.mark.parametrize("container, codec, rate, layout, content_type", FORMATS,
                         ids=[f"{f[0]}-{f[1]}-{f[2]}-{f[3]}" for f in FORMATS])
def test_every_format_gives_the_vads_segments(client, original, container, codec, rate, layout, content_type):
    data = encode(original, container, codec, rate, layout)
    resp = client.simulate_post("/vad", body=data, headers={"Content-Type": content_type})
    assert resp.status_code == 200, resp.json
    found = resp.json["segments"]
    assert len(found) == len(VAD_EXAMPLE_SEGMENTS), found
    assert all(abs(a - b) <= 40 for got, want in zip(found, VAD_EXAMPLE_SEGMENTS) for a, b in zip(got, want)), found
    assert resp.json["audio_ms"] == pytest.approx(70470.6, abs=30)


def test_a_stream_takes_chunks_that_name_their_format(client, cache_dir):
    """Each chunk a file of its own (here 10 s of 44.1 kHz stereo WAV), decoded and resampled as it comes."""
    from scripts.recordings import pcm_of
    from tests.helpers import wav_bytes

    pcm = pcm_of(example("vad_example.wav", cache_dir))
    stream_id = client.simulate_post("/vad/streams").json["stream_id"]
    segments = []
    for offset in range(0, len(pcm), 320000):
        chunk = encode(wav_bytes(pcm[offset:offset + 320000]), "wav", "pcm_s16le", 44100, "stereo")
        resp = client.simulate_post(f"/vad/streams/{stream_id}/audio", body=chunk,
                                    headers={"Content-Type": "audio/wav"})
        assert resp.status_code == 200, resp.json
        segments += resp.json["segments"]
    segments += client.simulate_post(f"/vad/streams/{stream_id}/finish").json["segments"]
    assert len(segments) == len(VAD_EXAMPLE_SEGMENTS)
    far = [(got, want) for got, want in zip(segments, VAD_EXAMPLE_SEGMENTS)
           if max(abs(a - b) for a, b in zip(got, want)) > 40]
    assert not far, far


def test_undecodable_and_endless_files_are_refused_clearly(client, make_supervisor, original):
    junk = client.simulate_post("/vad", body=b"\x01\x02" * 500, headers={"Content-Type": "audio/mpeg"})
    assert junk.status_code == 400 and junk.json["error"] == "Undecodable audio"
    assert "found" in junk.json["details"]
    video = client.simulate_post("/vad", body=b"", headers={"Content-Type": "audio/flac"})
    assert video.status_code == 400 and video.json["error_code"] == "INVALID_REQUEST"
    short = make_supervisor(server={"max_audio_s": 5})
    capped = falcon.testing.TestClient(create_app(short)).simulate_post(
        "/asr/transcribe", body=encode(original, "flac", "flac", 16000, "mono"), headers={"Content-Type": "audio/flac"})
    assert capped.status_code == 413 and "max_audio_s=5" in capped.json["details"]
    assert short.view("streaming_asr").status == "unloaded"  # refused before any model was asked
