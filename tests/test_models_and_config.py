"""Generated models load through funasr and transcribe; configs fail early and clearly; the API stays torch-free."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from supervisor.config import ConfigError, load_config
from tests.helpers import REPO

TRANSCRIBE_TINY = """
import json, sys, time
import funasr, numpy as np
from model_procs.engines import build_engine
from model_procs.make_models import ensure_model
root = sys.argv[1]
asr_dir = str(ensure_model(root, "streaming_asr", "tiny"))
began = time.monotonic()  # the load alone: imports are paid once by the forkserver in the product
asr, built, _ = build_engine("StreamingAsrEngine", asr_dir, "cpu", 1, root + "/cache", "mapped")
load_s = time.monotonic() - began
audio = (np.random.default_rng(1).standard_normal(16000 * 3) * 0.1).astype(np.float32)
text = "".join(asr.feed("s", audio[i:i + 7000], i + 7000 >= len(audio))[0] for i in range(0, len(audio), 7000))
whole = asr.transcribe(audio)
punc, _, _ = build_engine("PunctuationEngine", str(ensure_model(root, "punctuation", "tiny")), "cpu", 1, root, "mapped")
punctuated = punc.punctuate("今天天气很好我们去公园")
print(json.dumps({"load_s": load_s, "text": text, "whole": whole, "punctuated": punctuated}))
"""


def test_tiny_models_load_fast_and_produce_text(tmp_path):
    """Runs in a subprocess: this test process is an API process and must never import torch."""
    out = subprocess.run([sys.executable, "-c", TRANSCRIBE_TINY, str(tmp_path)], cwd=REPO, check=True,
                         capture_output=True, text=True, timeout=300)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["load_s"] < 1.0
    assert len(result["text"]) >= 3
    assert result["whole"] == result["text"]  # uneven pieces, same 600 ms chunks inside: same text
    assert result["punctuated"].startswith("今天") and len(result["punctuated"]) >= len("今天天气很好我们去公园")
    for model_id in ("streaming_asr", "punctuation"):
        files = {p.name for p in (tmp_path / f"{model_id}-tiny").iterdir()}
        assert {"config.yaml", "model.pt", "tokens.json"} <= files


def test_api_and_supervisor_never_import_torch_or_funasr():
    code = ("import sys, api.app, cli.main, supervisor.core; "
            "bad = [m for m in ('torch', 'funasr') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True).returncode == 0


def test_supervisor_process_itself_holds_no_torch_after_loads(client):
    assert client.simulate_post("/model/load", json={"model_type": "all", "async_load": False}).status_code == 200
    assert "torch" not in sys.modules and "funasr" not in sys.modules


def test_config_rejects_unknown_keys_and_models(tmp_path):
    typo = tmp_path / "typo.toml"
    typo.write_text('[models.punctuation]\nsource = "/m"\nthreds = 2\n')
    with pytest.raises(ConfigError, match="threds"):
        load_config(str(typo))
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('[models.whisper]\nsource = "/m"\n')
    with pytest.raises(ConfigError, match="whisper"):
        load_config(str(unknown))
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path / "missing.toml"))


def test_config_fills_defaults_from_the_catalog(tmp_path):
    path = tmp_path / "models.toml"
    path.write_text('[models.streaming_asr]\nsource = "/models/asr"\nthreads = 2\n')
    models = load_config(str(path)).models
    assert models["streaming_asr"].source == "/models/asr" and models["streaming_asr"].threads == 2
    assert models["punctuation"].source == "ct-punc" and models["punctuation"].threads == 1
    assert models["punctuation"].keep_alive_s == 300 and models["punctuation"].autoload is True
    assert load_config("demo").models["punctuation"].source == "generated:tiny"


def test_serve_refuses_a_bad_config_at_start_up(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nport = 1\n")  # port is a flag, not a config key
    run = subprocess.run([sys.executable, "-m", "cli.main", "serve", "--models", str(bad)], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "port" in run.stderr and "invalid config" in run.stderr


def serve_fails(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", "serve", "--models", "demo", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60, env={**os.environ, **env})


def test_start_up_errors_exit_with_one_line_and_leave_nothing_behind(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    # a temporary directory of this test's own (short: the ipc socket's path has a 107-byte limit), so what
    # other tests' servers put in the machine's one cannot pass or fail this test
    own_tmp = Path(tempfile.mkdtemp(prefix="t-"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cases = [
            (["--port", str(taken.getsockname()[1]), "--cache-dir", str(tmp_path / "c")], {}, "cannot listen"),
            (["--port", "0", "--ws-port", str(taken.getsockname()[1]), "--cache-dir", str(tmp_path / "c")], {},
             "cannot listen for WebSockets"),
            (["--host", "no-such-host.invalid", "--allow-unauthenticated", "--cache-dir", str(tmp_path / "c")], {},
             "cannot listen"),
            (["--cache-dir", str(a_file / "cache")], {}, "cannot use the cache directory"),
            ([], {"FUNASR_SUPERVISOR_PORT": "eighty"}, "FUNASR_SUPERVISOR_PORT"),
            (["--port", "70000"], {}, "not a port number"),
            (["--port", "0", "--ws-port", "0", "--tls-cert", str(a_file), "--tls-key", str(tmp_path / "no.key"),
              "--cache-dir", str(tmp_path / "c")], {}, f"cannot read the TLS key {tmp_path / 'no.key'}"),
            (["--port", "0", "--tls-cert", str(a_file), "--cache-dir", str(tmp_path / "c")], {},
             "TLS needs both a certificate and its key"),
        ]
        for args, env, says in cases:
            run = serve_fails(args, env | {"TMPDIR": str(own_tmp)})
            assert run.returncode == 2, (args, run.stderr)
            assert says in run.stderr and "Traceback" not in run.stderr, (args, run.stderr)
    assert not list(own_tmp.iterdir())  # no ipc directory (nor anything else) left in the temporary directory
    own_tmp.rmdir()


def test_client_options_go_before_or_after_the_subcommand():
    for argv in (["--url", "http://127.0.0.1:9", "--json", "info"], ["info", "--url", "http://127.0.0.1:9", "--json"]):
        run = subprocess.run([sys.executable, "-m", "cli.main", *argv], cwd=REPO, capture_output=True,
                             text=True, timeout=60)
        assert run.returncode == 1, run.stderr  # parsed, then the (absent) server is unreachable
        assert json.loads(run.stdout)["success"] is False


def test_a_bad_value_in_a_model_table_names_the_model_and_the_key(tmp_path):
    path = tmp_path / "models.toml"
    for table, says in (('threads = -1', "$.models.second.threads"), ('device = "gpu"', "$.models.second.device"),
                        ('max_batch = 999', "$.models.second.max_batch")):
        path.write_text(f'[models.first]\nkind = "vad"\n[models.second]\nkind = "vad"\n{table}\n')
        with pytest.raises(ConfigError) as refused:
            load_config(str(path))
        assert says in str(refused.value) and "\n" not in str(refused.value)
