"""Run an ONNX model once in a child process before a model process trusts it.

A pre-packed model (weights re-arranged by ONNX Runtime for this CPU's kernels, `onnx_engine.save_prepacked`)
is read back by the same runtime; on some CPUs ONNX Runtime 1.30 crashes the process that runs one (seen here:
FSMN-VAD's pre-packed graph on an AMD EPYC without AVX2 ends in SIGSEGV in `session.run`, where the graph as
exported runs). A crash cannot be caught in the process it happens in, so the check runs the model on the
export's probe inputs in a child that imports only numpy and onnxruntime (about a second).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

RUN_ONCE = """
import sys
import numpy as np
import onnxruntime
options = onnxruntime.SessionOptions()
options.intra_op_num_threads = 1
options.log_severity_level = 3
session = onnxruntime.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
inputs = np.load(sys.argv[2])
session.run(None, {name: inputs[name] for name in inputs.files})
"""
CHECK_TIMEOUT_S = 300


def runs_in_a_child(model: Path, inputs: dict[str, np.ndarray]) -> str | None:
    """None when a child process ran `model` on `inputs`; else what went wrong, in a few words."""
    probe = model.with_name(model.name + ".probe.npz")
    np.savez(probe, **inputs)  # type: ignore[arg-type]  # numpy's stub reads **kwds as its allow_pickle flag
    try:
        done = subprocess.run([sys.executable, "-c", RUN_ONCE, str(model), str(probe)], capture_output=True,
                              text=True, timeout=CHECK_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"it did not answer within {CHECK_TIMEOUT_S} s"
    finally:
        probe.unlink(missing_ok=True)
    if done.returncode < 0:
        return f"ONNX Runtime crashed running it (signal {-done.returncode})"
    if done.returncode:
        lines = done.stderr.strip().splitlines()
        return f"ONNX Runtime could not run it ({lines[-1] if lines else 'exit ' + str(done.returncode)})"
    return None
