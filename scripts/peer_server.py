"""FunASR's own Python 2pass WebSocket server (`runtime/python/websocket/funasr_wss_server.py`), run unchanged as
the benchmark's peer, on the same model directories as ours.

The file is a copy kept in `../shared/ext/funasr/` (checked against its recorded sha256) and run as is, TLS off
(`--certfile ""`), on the CPU. It names two models by hub id that it does not take as arguments: its offline ASR
(`paraformer-zh`, which funasr maps to `iic/speech_seaco_paraformer_large_asr_nat-zh-cn-16k-common-vocab8404-pytorch`)
and a CAM++ speaker model (`iic/speech_campplus_sv_zh-cn_16k-common`). funasr takes a name that exists as a path
before it tries the hub, so the peer runs in a folder where those two names are links: to our generated offline
model, and to a CAM++ directory generated here with the real model class and random weights (the peer runs it on
every offline segment; ours has no speaker step).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from scripts.bench_server import free_port  # noqa: E402

EXT = REPO.parent / "shared" / "ext" / "funasr"
SERVER = "runtime/python/websocket/funasr_wss_server.py"
OFFLINE_HUB_ID = "iic/speech_seaco_paraformer_large_asr_nat-zh-cn-16k-common-vocab8404-pytorch"
SPEAKER_HUB_ID = "iic/speech_campplus_sv_zh-cn_16k-common"


def server_source() -> Path:
    """The unmodified server file, refused if it is not the one `SOURCE` records."""
    source = EXT / SERVER
    recorded = {line.split()[1]: line.split()[0] for line in (EXT / "SOURCE").read_text().splitlines()
                if line.strip().endswith(".py") and len(line.split()) == 2}
    if hashlib.sha256(source.read_bytes()).hexdigest() != recorded[SERVER]:
        raise RuntimeError(f"{source} differs from the copy SOURCE records: the peer must run unchanged")
    return source


def write_campplus(out: Path) -> Path:
    """A CAM++ model directory (funasr's `CAMPPlus` with its default shapes, random weights), written once."""
    if (out / "model.pt").exists():
        return out
    import torch
    import yaml

    from model_procs.make_models import build_module

    staging = Path(tempfile.mkdtemp(prefix=".campplus-", dir=out.parent))
    torch.manual_seed(0)
    config = {"model": "CAMPPlus", "model_conf": {"feat_dim": 80, "embedding_size": 192}}
    (staging / "config.yaml").write_text(yaml.safe_dump(config))
    torch.save(build_module(config).state_dict(), staging / "model.pt")
    staging.rename(out)
    return out


class PeerServer:
    """FunASR's server in a folder of its own, its log beside the cache; alone on the box while measured."""

    def __init__(self, cache_dir: Path, dirs: dict[str, Path], ncpu: int) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="funasr-peer-"))
        speaker = cache_dir / "generated" / "speaker-campplus"
        if not (speaker / "model.pt").exists():
            subprocess.run([sys.executable, "-m", "scripts.peer_server", "--write-campplus", str(speaker)],
                           cwd=REPO, check=True)
        for hub_id, target in ((OFFLINE_HUB_ID, dirs["asr"]), (SPEAKER_HUB_ID, speaker)):
            (self.workdir / hub_id).parent.mkdir(parents=True, exist_ok=True)
            (self.workdir / hub_id).symlink_to(Path(target).resolve())
        shutil.copy(server_source(), self.workdir / "funasr_wss_server.py")
        self.port = free_port()
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.log = open(cache_dir / "bench-peer-server.log", "ab")
        self.vad_dir = dirs["vad"]
        self.proc = subprocess.Popen(
            [sys.executable, "funasr_wss_server.py", "--host", "127.0.0.1", "--port", str(self.port),
             "--asr_model_online", str(dirs["streaming_asr"]), "--vad_model", str(dirs["vad"]),
             "--punc_model", str(dirs["punctuation"]), "--device", "cpu", "--ngpu", "0", "--ncpu", str(ncpu),
             "--certfile", ""],
            cwd=self.workdir, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def segments(self, pcm: bytes, frame: int) -> list[dict]:
        """Its VAD's segments on this audio, replayed in a process of its own before the server is measured."""
        pcm_file = self.workdir / "audio.pcm"
        pcm_file.write_bytes(pcm)
        done = subprocess.run([sys.executable, "-m", "scripts.peer_server", "--vad-segments", str(self.vad_dir),
                               str(pcm_file), str(frame)], cwd=REPO, check=True, capture_output=True, text=True)
        return json.loads(done.stdout.strip().splitlines()[-1])

    def __enter__(self) -> "PeerServer":
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"FunASR's server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("FunASR's server did not listen within 600 s")

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:  # its thread pool may hold the interpreter
            self.proc.kill()
            self.proc.wait(30)
        self.log.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def vad_segments(vad_dir: Path, pcm: bytes, frame: int) -> list[dict]:
    """The segments the peer's VAD closes on `pcm` sent in frames of `frame` bytes, with the frames the peer
    hands its offline model for each: funasr called as the peer calls it (per frame, its cache, `chunk_size`
    60 ms, funasr's default end-of-speech schedule) and the peer's own bookkeeping (from the frame that reports
    the start, as many earlier frames as reach back to it; through the frame that reports the end). Segments the
    end of input closes are not among them."""
    from funasr import AutoModel

    model = AutoModel(model=str(vad_dir), device="cpu", disable_pbar=True, disable_log=True, disable_update=True)
    status: dict = {"cache": {}, "is_final": False, "chunk_size": 60}
    frame_ms = frame // 32
    segments, first = [], None
    for i in range(len(pcm) // frame + (len(pcm) % frame > 0)):
        value = model.generate(input=pcm[i * frame:(i + 1) * frame], **status)[0].get("value", [])
        if len(value) != 1:  # the peer reads a call's answer only when it holds one segment
            continue
        start, end = value[0]
        if start != -1:
            reach = ((i + 1) * frame_ms - start) // frame_ms
            first = i - reach + 1 if reach > 0 else i + 1
        if end != -1 and first is not None:
            segments.append({"end_ms": int(end), "frames": [first, i]})
            first = None
    return segments


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the peer's CAM++ model directory, or its VAD's segments")
    parser.add_argument("--write-campplus", type=Path)
    parser.add_argument("--vad-segments", nargs=3, metavar=("VAD_DIR", "PCM_FILE", "FRAME_BYTES"))
    args = parser.parse_args()
    if args.write_campplus:
        print(write_campplus(args.write_campplus))
    if args.vad_segments:
        vad_dir, pcm_file, frame = args.vad_segments
        print(json.dumps(vad_segments(Path(vad_dir), Path(pcm_file).read_bytes(), int(frame))))
