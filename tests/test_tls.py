"""TLS on the WebSocket port (`[server] tls_cert`/`tls_key`, `--tls-cert`/`--tls-key`): FunASR's official
Python client with its defaults (`--ssl 1`) and without TLS against a plain port; clear start-up errors for
unusable files; a connection that is not a WebSocket handshake is one INFO line."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import logging
import os
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from api.common.tls import TlsUnusable, server_context
from scripts.recordings import example
from tests.helpers import DEMO_TABLES, configured_server, unload_everything
from tests.test_funasr_ws import FC_STREAM, FUNASR_CLIENT, client_path

pytestmark = pytest.mark.long_running

OFFICIAL_CLIENT = (Path(__file__).resolve().parents[2]
                   / "shared/ext/funasr/runtime/python/websocket/funasr_wss_client.py")


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for localhost and its key, as an operator's own CA or Let's Encrypt would give them."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    (folder / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "server.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    return folder / "server.crt", folder / "server.key"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def secure(cache_dir, tmp_path_factory, supervisor, tls_files):
    cert, key = tls_files
    config = DEMO_TABLES + f'[server]\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
    yield from configured_server(cache_dir, tmp_path_factory.mktemp("secure"), config)


@pytest.fixture(scope="module")
def plain(cache_dir, tmp_path_factory, supervisor, secure):
    """The same models without TLS."""
    yield from configured_server(cache_dir, tmp_path_factory.mktemp("plain"), DEMO_TABLES)


@pytest.fixture(autouse=True)
def unloaded_after(secure, plain):
    """Every test leaves no model process behind."""
    yield
    unload_everything(secure)
    unload_everything(plain)


def official_client(srv, wav: Path, folder: Path, mode: str, use_ssl: int) -> list[dict]:
    """FunASR's own client, a copy of the unmodified file run as its README says; its answers from its log."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "funasr_wss_client.py"
    shutil.copy(OFFICIAL_CLIENT, script)
    port = srv.ws_url.rsplit(":", 1)[1]
    run = subprocess.run([sys.executable, str(script), "--host", "127.0.0.1", "--port", port, "--mode", mode,
                          "--audio_in", str(wav), "--ssl", str(use_ssl), "--send_without_sleep",
                          "--result_timeout", "120", "--log_dir", str(folder / "logs")],
                         cwd=folder, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    events = [json.loads(line) for log in (folder / "logs").glob("*/events.jsonl")
              for line in log.read_text().splitlines()]
    return events


@pytest.mark.parametrize("mode", ["2pass", "online", "offline"])
def test_funasrs_official_client_in_every_mode_over_tls_and_plain(secure, plain, cache_dir, tmp_path, mode):
    """Its defaults (`--ssl 1`) against the TLS port; `--ssl 0` against a plain one. The same final text."""
    wav = example("asr_example.wav", cache_dir)
    assert secure.ws_url.startswith("wss://") and plain.ws_url.startswith("ws://")
    answers = {}
    for srv, use_ssl in ((secure, 1), (plain, 0)):
        events = official_client(srv, wav, tmp_path / f"ssl{use_ssl}", mode, use_ssl=use_ssl)
        answers[use_ssl] = [(e["mode"], e["text"]) for e in events if e.get("text")]
        assert answers[use_ssl], events[-5:]
        assert {m for m, _ in answers[use_ssl]} <= {"2pass": {"2pass-online", "2pass-offline"},
                                                     "online": {"online"}, "offline": {"offline"}}[mode]
        offline = [e for e in events if e["mode"] in ("2pass-offline", "offline")]
        # the streaming model answers the offline pass here: no token times, so no `timestamp` (FunASR's HTML5
        # page throws on an empty list, and FunASR's servers leave it out)
        assert all(e["server_timestamp"] is None for e in offline), offline
    # partials depend on timing (a step catches a slow model up in one call, so a burst sent without pacing is
    # cut differently from run to run); each segment's final text does not
    finals = {ssl: [text for mode, text in said if mode in ("2pass-offline", "offline")]
              for ssl, said in answers.items()}
    assert finals[1] == finals[0]


def test_funasr_client_verifies_the_certificate_and_gets_text_over_tls(secure, cache_dir, tls_files):
    """`funasr-client` (its async API, as its `--async` CLI runs it) checks the server's certificate: trusted
    here through SSL_CERT_FILE, as an operator's CA would be."""
    cert, _ = tls_files
    wav = example("asr_example.wav", cache_dir)
    env = {**os.environ, "PYTHONPATH": client_path(cache_dir, FUNASR_CLIENT), "SSL_CERT_FILE": str(cert)}
    run = subprocess.run([sys.executable, "-c", FC_STREAM, str(wav), secure.ws_url, "2pass"], env=env,
                         capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr[-3000:]
    answers = json.loads(run.stdout.strip().splitlines()[-1])
    assert answers[-1]["is_final"] and any(a["text"] for a in answers), answers


def test_openais_realtime_client_over_wss(secure, cache_dir, tls_files, monkeypatch):
    """The `openai` SDK's Realtime transcription client, its `websocket_base_url` a `wss://` one."""
    import base64

    import openai

    from scripts.recordings import pcm_of

    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files[0]))   # trusted as an operator's CA would be
    pcm = pcm_of(example("asr_example.wav", cache_dir))

    async def transcribe() -> list:
        client = openai.AsyncOpenAI(base_url=secure.url + "/v1", websocket_base_url=f"{secure.ws_url}/v1",
                                    api_key="unused")
        events = []
        async with client.realtime.connect(model="streaming_asr", extra_query={"intent": "transcription"}) as conn:
            await conn.send({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
                "format": {"type": "audio/pcm", "rate": 16000}, "transcription": {"model": "streaming_asr"},
                "turn_detection": None}}}})
            for i in range(0, len(pcm), 3200):
                piece = base64.b64encode(pcm[i:i + 3200]).decode()
                await conn.send({"type": "input_audio_buffer.append", "audio": piece})
            await conn.send({"type": "input_audio_buffer.commit"})
            async for event in conn:
                events.append(event)
                if event.type.endswith(("transcription.completed", "transcription.failed")) or event.type == "error":
                    return events
        return events
    events = asyncio.run(asyncio.wait_for(transcribe(), 120))
    assert events[-1].type.endswith("transcription.completed") and events[-1].transcript, events[-3:]


def test_a_plain_client_on_the_tls_port_and_a_tcp_probe_log_no_error(secure, caplog):
    """On the TLS port the TLS handshake fails before any WebSocket code runs: nothing above DEBUG is logged
    (asyncio keeps a failed handshake for its debug mode), and no traceback. On a plain port each is one INFO
    line (tests/test_funasr_ws.py)."""
    async def plain_and_probe() -> None:
        with pytest.raises(Exception):
            async with connect(secure.ws_url.replace("wss://", "ws://"), open_timeout=10):
                pass
        reader, writer = await asyncio.open_connection("127.0.0.1", int(secure.ws_url.rsplit(":", 1)[1]))
        writer.close()   # a TCP probe: connect, send nothing, leave
        await writer.wait_closed()
        await asyncio.sleep(0.5)
    with caplog.at_level(logging.DEBUG):
        asyncio.run(plain_and_probe())
    failed = [r for r in caplog.records
              if r.name.startswith(("websockets", "asyncio")) and r.levelno >= logging.WARNING]
    assert not failed, [r.getMessage() for r in failed]
    assert not [r for r in caplog.records if r.name.startswith("websockets") and r.exc_info]


def test_unusable_tls_files_are_one_clear_error(tmp_path, tls_files):
    cert, key = tls_files
    assert isinstance(server_context(str(cert), str(key)), ssl.SSLContext)
    assert server_context("", "") is None
    with pytest.raises(TlsUnusable, match="both a certificate and its key"):
        server_context(str(cert), "")
    with pytest.raises(TlsUnusable, match=f"cannot read the TLS key {tmp_path}/missing.key: No such file"):
        server_context(str(cert), str(tmp_path / "missing.key"))
    other_cert, _ = self_signed(tmp_path)
    with pytest.raises(TlsUnusable, match="cannot use the TLS certificate"):
        server_context(str(other_cert), str(key))
