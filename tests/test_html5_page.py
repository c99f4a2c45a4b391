"""FunASR's HTML5 page (`runtime/html5/static/`, run unchanged from a copy) in a real headless Chromium: its file
upload and its microphone path (Chromium's fake capture device plays FunASR's example recording), against the
demo models (no token times) and against a config with an offline `asr` model (token times), each in 2pass."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from pathlib import Path

import pytest

from scripts.recordings import example
from tests.browser import Browser, chromium
from tests.helpers import DEMO_TABLES, configured_server, unload_everything

pytestmark = [pytest.mark.long_running,
              pytest.mark.skipif(chromium() is None, reason="Chromium is not installed (apt-get install chromium)")]

PAGE = Path(__file__).resolve().parents[2] / "shared/ext/funasr/runtime/html5/static"
WITH_ASR = DEMO_TABLES + '[models.offline]\nkind = "asr"\nsource = "generated:tiny"\n'


@pytest.fixture(scope="module")
def page_url(tmp_path_factory):
    """The page's files, copied, on a loopback HTTP server (a page on localhost may use the microphone)."""
    folder = tmp_path_factory.mktemp("html5")
    shutil.copytree(PAGE, folder, dirs_exist_ok=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module", params=["demo", "with-asr"])
def srv(request, cache_dir, tmp_path_factory, supervisor):
    yield from configured_server(cache_dir, tmp_path_factory.mktemp(request.param),
                                 DEMO_TABLES if request.param == "demo" else WITH_ASR)


@pytest.fixture
def browser(cache_dir, srv):
    opened = Browser(example("asr_example.wav", cache_dir))
    yield opened
    opened.close()
    unload_everything(srv)


def connect_page(browser: Browser, page_url: str, srv) -> None:
    browser.open(page_url)
    browser.evaluate(f"document.getElementById('wssip').value = '{srv.ws_url}/'")


def test_the_pages_file_upload_shows_the_text(browser, page_url, srv, cache_dir):
    connect_page(browser, page_url, srv)
    browser.evaluate("document.querySelector('input[name=recoder_mode][value=file]').click()")
    browser.choose_file("#upfile", example("asr_example.wav", cache_dir))
    browser.wait_for("document.getElementById('info_div').innerHTML === '请点击连接进行识别'")
    browser.evaluate("document.getElementById('btnConnect').click()")
    # the final answer ends the page's session: it closes the socket and asks for a new connection
    browser.wait_for("document.getElementById('info_div').innerHTML === '请点击连接'", timeout_s=120)
    assert browser.evaluate("document.getElementById('varArea').value").strip(), browser.console[-5:]
    assert browser.errors == []


def test_the_pages_microphone_shows_the_text(browser, page_url, srv):
    connect_page(browser, page_url, srv)
    browser.evaluate("document.getElementById('btnConnect').click()")
    browser.wait_for("!document.getElementById('btnStart').disabled")
    browser.evaluate("document.getElementById('btnStart').click()")
    browser.wait_for("parseFloat(document.getElementById('info_div').innerHTML) >= 5", timeout_s=30)
    browser.evaluate("document.getElementById('btnStop').click()")
    text = browser.wait_for("document.getElementById('varArea').value.trim()", timeout_s=60)
    assert text, browser.console[-5:]
    assert browser.errors == []
