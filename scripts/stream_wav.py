"""Stream a WAV file to a running server in chunks, as a live source would, and print the text as it comes.

    python scripts/stream_wav.py recording.wav --url http://127.0.0.1:8000 --chunk-ms 200

The file must be 16 kHz, mono, 16-bit (convert with `sox in.wav -r 16000 -c 1 -b 16 out.wav`).
Uses only the standard library and `requests`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import wave

import requests


def stream_wav(path: str, url: str, chunk_ms: int = 200, punctuate: bool = True, realtime: bool = False) -> dict:
    """Returns the server's final answer ({"text", "punctuated_text", ...})."""
    with wave.open(path) as wav:
        if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (16000, 1, 2):
            raise SystemExit(f"{path}: need 16 kHz mono 16-bit PCM")
        opened = requests.post(f"{url}/asr/streams", json={"punctuate": punctuate}, timeout=300)
        opened.raise_for_status()
        stream_id = opened.json()["stream_id"]
        frames = 16 * chunk_ms
        while chunk := wav.readframes(frames):
            sent = requests.post(f"{url}/asr/streams/{stream_id}/audio", data=chunk, timeout=60,
                                 headers={"Content-Type": "audio/L16; rate=16000"})
            sent.raise_for_status()
            if sent.json()["text"]:
                print(sent.json()["text"], end="", flush=True, file=sys.stderr)
            if realtime:
                time.sleep(chunk_ms / 1000)
    final = requests.post(f"{url}/asr/streams/{stream_id}/finish", timeout=60)
    final.raise_for_status()
    print(file=sys.stderr)
    return final.json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wav")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--chunk-ms", type=int, default=200)
    parser.add_argument("--no-punctuate", action="store_true")
    parser.add_argument("--realtime", action="store_true", help="send chunks at the pace of the audio")
    args = parser.parse_args()
    result = stream_wav(args.wav, args.url, args.chunk_ms, not args.no_punctuate, args.realtime)
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
