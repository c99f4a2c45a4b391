"""FunASR's own example recordings (16 kHz mono WAV), fetched from the `fasr` wheel on the package index.

`vad_example.wav` (70.5 s of Mandarin speech) and `asr_example.wav` (4.2 s) are what FunASR documents its models
with; the tests and the benchmark feed them instead of synthetic noise. Never committed: fetched into the cache.
"""

from __future__ import annotations

import wave
from pathlib import Path

from model_procs.wheels import fetch_folder

EXAMPLES = ("wheel:fasr==0.5.8/fasr/asset/example"
            "#sha256=579e78571e757be366bf3866a25f55a18e1e247d195f18705a586419207eb78a")
# FunASR's published FSMN-VAD output for vad_example.wav (max_end_silence_time 800 ms), in ms
VAD_EXAMPLE_SEGMENTS = [[70, 2340], [2620, 6200], [6480, 23670], [23950, 26250], [26780, 28990], [29950, 31430],
                        [31750, 37600], [38210, 46900], [47310, 49630], [49910, 56460], [56740, 59540],
                        [59820, 70450]]


def example(name: str, cache_dir: str | Path) -> Path:
    """The path of one example recording, fetched on first use."""
    folder, _ = fetch_folder(EXAMPLES, cache_dir)
    return folder / name


def pcm_of(path: Path) -> bytes:
    """The 16-bit PCM frames of a 16 kHz mono WAV file."""
    with wave.open(str(path)) as recording:
        assert recording.getframerate() == 16000 and recording.getnchannels() == 1 and recording.getsampwidth() == 2
        return recording.readframes(recording.getnframes())


def reencoded(source: bytes, container: str, codec: str, rate: int, layout: str) -> bytes:
    """An audio file re-encoded by FFmpeg (through PyAV), as a user's tool would write it: the tests' and the
    benchmark's other formats of the example recording."""
    import io

    import av

    out_buffer = io.BytesIO()
    with av.open(io.BytesIO(source)) as src, av.open(out_buffer, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        resampler = av.AudioResampler(format=stream.format.name, layout=layout, rate=rate)
        for frame in [*src.decode(audio=0), None]:
            for piece in resampler.resample(frame):
                out.mux(stream.encode(piece))
        out.mux(stream.encode(None))
    return out_buffer.getvalue()
