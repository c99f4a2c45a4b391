"""Protocol overhead: the same punctuation request through Triton's own client on the Open Inference Protocol
(`tritonclient.http`, binary tensors as it sends them by default) and on our `POST /punctuation`."""

from __future__ import annotations

import json

import numpy as np
import tritonclient.http as triton

from scripts.bench_requests import BENCH_TEXT, KeepAliveClient, timed

BLOCKS = 4  # alternate the two clients in blocks, so drift on a shared machine hits both alike


def protocol_latencies(url: str, n: int) -> dict:
    """Client-side ms per request for each protocol; the punctuation model must be loaded."""
    oip = triton.InferenceServerClient(url.removeprefix("http://"), network_timeout=120)
    text = triton.InferInput("text", [1], "BYTES").set_data_from_numpy(np.array([BENCH_TEXT], dtype=object))
    rest, body = KeepAliveClient(url), json.dumps({"text": BENCH_TEXT}).encode()
    answer = oip.infer("punctuation", [text]).as_numpy("text")[0].decode()
    if answer != rest.post("/punctuation", body, "application/json")["text"]:
        raise RuntimeError("the two protocols answered differently; the comparison would mean nothing")
    samples: dict[str, list[float]] = {"oip_ms": [], "rest_ms": []}
    for _ in range(BLOCKS):
        samples["oip_ms"] += timed(lambda: oip.infer("punctuation", [text]), n // BLOCKS)
        samples["rest_ms"] += timed(lambda: rest.post("/punctuation", body, "application/json"), n // BLOCKS)
    oip.close()
    return samples
