"""HTTPS on the HTTP port the supported way: nginx with `deploy/nginx/funasr-supervisor.conf` in front of the
server (waitress does not terminate TLS). The seed's routes, a file upload and the error envelope come through
unchanged, with the certificate checked."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.helpers import InProcessServer, REPO, free_port, serving, unload_everything
from tests.test_tls import self_signed

pytestmark = [pytest.mark.long_running,
              pytest.mark.skipif(shutil.which("nginx") is None,
                                 reason="nginx is not installed (apt-get install nginx-light)")]


@pytest.fixture(scope="module")
def live(cache_dir, supervisor):
    yield from serving(InProcessServer(cache_dir))


@pytest.fixture(scope="module")
def https(live, tmp_path_factory):
    """nginx, as an operator would run it, in a folder of its own (its own pid file, logs and temp paths)."""
    folder = tmp_path_factory.mktemp("nginx")
    cert, key = self_signed(folder)
    port = free_port()
    block = (REPO / "deploy/nginx/funasr-supervisor.conf").read_text()
    for name, value in (("HTTPS_PORT", f"127.0.0.1:{port}"), ("TLS_CERT", cert), ("TLS_KEY", key),
                        ("SERVER_HTTP", live.url.removeprefix("http://"))):
        block = block.replace(f"${{{name}}}", str(value))
    (folder / "nginx.conf").write_text(
        f"daemon off;\npid {folder}/nginx.pid;\nerror_log {folder}/error.log;\nevents {{}}\n"
        f"http {{\naccess_log {folder}/access.log;\nclient_body_temp_path {folder}/body;\n"
        f"proxy_temp_path {folder}/proxy;\n{block}\n}}\n")
    proc = subprocess.Popen(["nginx", "-p", str(folder), "-c", str(folder / "nginx.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    url = f"https://localhost:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(f"{url}/healthz", verify=str(cert), timeout=2)
            break
        except requests.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"nginx did not start: {proc.stderr.read().decode()[-2000:]}") from None
            time.sleep(0.2)
    yield url, cert
    proc.terminate()
    proc.wait(15)


@pytest.fixture(autouse=True)
def unloaded_after(live):
    yield
    unload_everything(live)


def test_the_api_through_nginx_over_https(https, cache_dir):
    from scripts.recordings import example

    url, cert = https
    info = requests.get(f"{url}/model/info", verify=str(cert), timeout=30)
    assert info.status_code == 200 and "streaming_asr" in info.json()["available_models"]
    loaded = requests.post(f"{url}/model/load", json={"model_type": "vad", "async_load": False}, verify=str(cert),
                           timeout=120)
    assert loaded.status_code == 200 and loaded.json()["status"] == "loaded"
    wav = Path(example("asr_example.wav", cache_dir)).read_bytes()
    segments = requests.post(f"{url}/vad", data=wav, headers={"Content-Type": "audio/wav"}, verify=str(cert),
                             timeout=120)
    assert segments.status_code == 200 and segments.json()["segments"]
    missing = requests.delete(f"{url}/model/unload/whisper", verify=str(cert), timeout=30)
    assert missing.status_code == 404 and missing.json()["success"] is False and missing.json()["error_code"]
    with pytest.raises(requests.exceptions.SSLError):  # the certificate is checked: not one the client trusts
        requests.get(f"{url}/healthz", timeout=10)
