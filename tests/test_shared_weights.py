"""Real model processes map one copy of the weights; an unload gives back the private part and the weights;
GPU memory is reported and returned where there is a GPU, and not reported where there is none."""

from __future__ import annotations

from flows.service import Flows

import os

import falcon.testing
import pytest

from api.app import create_app
from supervisor import gpu, page_cache
from supervisor.config import load_config, with_models
from wire.model_config import ModelConfig
from tests.helpers import wait_for

MB = 1024 * 1024
NO_GPU = "no NVIDIA GPU with NVML on this machine"


def test_replicas_of_a_full_size_model_share_one_mapped_copy(cache_dir, full_punctuation_dir, start_supervisor):
    checkpoint = full_punctuation_dir / "model.pt"
    config = with_models(load_config("demo"), punctuation=ModelConfig(
        source=str(full_punctuation_dir), min_replicas=2, max_replicas=2))
    sup = start_supervisor(config, cache_dir)
    sup.await_load(sup.request_load("punctuation", timeout_s=120))
    wait_for(lambda: [r.state for r in sup.view("punctuation").replicas] == ["idle", "idle"], timeout=60)
    assert Flows(sup).punctuate("今天天气很好我们一起去公园散步吧").text
    wait_for(lambda: all(r.memory_unique_mb > 0 for r in sup.view("punctuation").replicas), timeout=5)
    view = sup.view("punctuation")
    assert view.details.loader == "mapped" and view.details.weights_file == str(checkpoint)
    assert 0 < view.memory_shared_weights_mb <= os.path.getsize(checkpoint) / MB + 0.1
    weights_mb = os.path.getsize(checkpoint) / MB  # 280 MB: copied by AutoModel, each replica would hold it all
    assert all(r.memory_unique_mb < weights_mb / 2 for r in view.replicas), view.replicas
    private = sum(r.memory_unique_mb for r in view.replicas)
    freed = sup.unload("punctuation").memory_freed_mb
    assert page_cache.resident_mb(str(checkpoint)) == 0  # dropped: keep_warm is off
    assert freed >= private + view.memory_shared_weights_mb * 0.9


def test_replicas_of_an_onnx_model_share_its_pre_packed_weights(cache_dir, full_punctuation_dir, start_supervisor,
                                                                 tmp_path):
    """ONNX Runtime pre-packs weights into private memory; ours are pre-packed once into a file the sessions map.
    The process that exports keeps ~230 MB of the export's heap until it stops (docs/models.md): the replicas compared
    here load the export from the cache, as every load after the first does."""
    exporting = with_models(load_config("demo"), punctuation=ModelConfig(source=str(full_punctuation_dir),
                                                                         engine="onnx"))
    sup = start_supervisor(exporting, tmp_path)
    sup.await_load(sup.request_load("punctuation", timeout_s=300))
    assert sup.view("punctuation").details.load_phases_ms.onnx_export_ms > 0
    sup.close()
    config = with_models(load_config("demo"), punctuation=ModelConfig(
        source=str(full_punctuation_dir), engine="onnx", min_replicas=2, max_replicas=2))
    sup = start_supervisor(config, tmp_path)
    sup.await_load(sup.request_load("punctuation", timeout_s=300))
    assert sup.view("punctuation").details.load_phases_ms.onnx_export_ms == 0
    wait_for(lambda: [r.state for r in sup.view("punctuation").replicas] == ["idle", "idle"], timeout=120)
    assert Flows(sup).punctuate("今天天气很好我们一起去公园散步吧").text
    wait_for(lambda: all(r.memory_unique_mb > 0 for r in sup.view("punctuation").replicas), timeout=5)
    view = sup.view("punctuation")
    packed = [f for f in view.details.weights_files if f.endswith(".packed.onnx.data")]
    assert view.engine == "onnx" and len(packed) == 1
    weights_mb = os.path.getsize(packed[0]) / MB  # ~280 MB of weights (and their pre-packed form)
    assert all(r.memory_unique_mb < weights_mb / 3 for r in view.replicas), view.replicas
    assert view.memory_shared_weights_mb > 0
    private = sum(r.memory_unique_mb for r in view.replicas)
    freed = sup.unload("punctuation").memory_freed_mb
    assert page_cache.resident_mb(*view.details.weights_files) == 0  # dropped: keep_warm is off
    assert freed >= private + view.memory_shared_weights_mb * 0.9


@pytest.mark.skipif(gpu.available(), reason="this machine has a GPU")
def test_without_a_gpu_no_gpu_figure_is_reported(client):
    assert client.simulate_post("/model/load", json={"model_type": "punctuation", "async_load": False}).status_code \
        == 200
    info = client.simulate_post("/model/info", json={"detailed": True}).json["available_models"]["punctuation"]
    assert info["status"] == "loaded" and "gpu_memory_mb" not in info
    assert all("gpu_memory_mb" not in replica for replica in info["replicas"])


@pytest.mark.skipif(not gpu.available(), reason=NO_GPU)
def test_an_unload_returns_the_gpu_memory_its_load_took(cache_dir, start_supervisor):
    """NVML's used memory before the load and after the unload agree within 1 MiB."""
    config = with_models(load_config("demo"), streaming_asr=ModelConfig(source="generated:tiny", device="cuda"))
    sup = start_supervisor(config, cache_dir)
    client = falcon.testing.TestClient(create_app(sup))
    before = gpu.device_used_mb()
    assert client.simulate_post("/model/load", json={"model_type": "streaming_asr", "async_load": False}) \
        .status_code == 200
    info = wait_for(lambda: (lambda i: i if i.get("gpu_memory_mb") else None)(
        client.simulate_get("/model/info").json["available_models"]["streaming_asr"]), timeout=10)
    assert info["gpu_memory_mb"] > 0 and info["replicas"][0]["gpu_memory_mb"] > 0
    sup.unload("streaming_asr")
    wait_for(lambda: abs(gpu.device_used_mb() - before) <= 1.0, timeout=10)
