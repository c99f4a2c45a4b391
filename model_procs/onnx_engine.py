"""The ONNX Runtime engine: export a loaded FunASR model's heavy parts once, then run them in ONNX Runtime.

A model is built by funasr as for the torch engine (so its frontend, tokenizer and `generate` are funasr's);
`install_onnx` then exports the parts its model class has a plan for into the cache, keyed by the checkpoint's
content hash and the graphs' version, and reuses them after. Each part is saved once more pre-packed for this
CPU (`save_prepacked`), so sessions map their weights from a file that every replica shares instead of copying
them. Each file is written to a staging name and renamed, and a lock makes a second replica wait for the
first one's export, so a crash mid-export or two replicas at once never leave a half file. The torch layers an
ONNX session replaces are dropped, so their weights leave the process. A model class without a plan, or a part
that fails to export, raises `OnnxUnavailable` with the reason; the caller keeps the torch engine and says why.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch

from model_procs.mapped_loader import content_hash
from model_procs.onnx_check import runs_in_a_child
from model_procs.onnx_graphs import traceable_pad_masks
from model_procs.onnx_plans import PLANS, Part, Plan

EXPORT_VERSION = 4   # bump when a graph or the file layout changes: exports of another version are not reused
OPSET = 17
BATCH_TOLERANCE = 1e-5   # a stacked row may differ from the row alone by this much (float noise); measured: 0

log = logging.getLogger(__name__)


class OnnxUnavailable(Exception):
    """This model cannot run in ONNX Runtime as proved here; the message says why."""


class Installed(NamedTuple):
    export_ms: float   # 0 when every file came from the cache
    session_ms: float
    files: tuple[str, ...]


def install_onnx(automodel, cache_dir: str, threads: int, quantize: str,
                 progress: Callable[[str], None]) -> Installed:
    """Put ONNX Runtime sessions in place of the model's heavy parts. Raises OnnxUnavailable."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise OnnxUnavailable(f"onnxruntime cannot be imported ({exc})") from exc
    model = automodel.model
    plan_class = PLANS.get(type(model).__name__)
    if plan_class is None:
        raise OnnxUnavailable(f"no ONNX export is proved for {type(model).__name__}")
    plan: Plan = plan_class(model, automodel.kwargs)
    folder = Path(cache_dir) / "onnx" / f"{model_key(automodel.kwargs, cache_dir)}-v{EXPORT_VERSION}"
    began = time.monotonic()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with exclusive(folder / ".lock"):  # a second replica waits for the first one's export, then reuses it
            files, exported_any = exported_files(plan, folder, threads, quantize, progress)
    except OSError as exc:
        raise OnnxUnavailable(f"cannot write the ONNX export into {folder}: {exc.strerror or exc}") from exc
    exported = time.monotonic()
    progress("starting ONNX Runtime sessions")
    plan.install({name: new_session(path, threads) for name, path in files.items()})
    mapped = tuple(mapped_data(path) for path in files.values() if mapped_data(path).exists())
    for path in mapped:
        forget_unmapped_pages(path)
    return Installed(export_ms=(exported - began) * 1000 if exported_any else 0.0,
                     session_ms=(time.monotonic() - exported) * 1000, files=tuple(map(str, mapped)))


def exported_files(plan: Plan, folder: Path, threads: int, quantize: str,
                   progress: Callable[[str], None]) -> tuple[dict[str, Path], bool]:
    """Each part's pre-packed file, exported (quantised, pre-packed) where the cache lacks it; and whether any
    step had to run."""
    files, exported_any = {}, False
    for name, part in plan.parts().items():
        source = folder / f"{name}.onnx"
        if not source.exists():
            progress(f"exporting {name} to ONNX")
            export_proved(part, source, threads)
            exported_any = True
        if quantize == "int8":
            fp32, source = source, folder / f"{name}.int8.onnx"
            if not source.exists():
                progress(f"quantising {name} to int8")
                quantize_int8(fp32, source)
                exported_any = True
        packed = source.with_name(f"{source.stem}.{machine_key()}.packed.onnx")
        if not packed.exists() and not refused(packed).exists():
            progress(f"pre-packing {source.stem} for this CPU")
            save_prepacked(source, packed, threads, dict(zip(part.graph.names()[0], (t.numpy() for t in part.probe))))
            exported_any = True
        files[name] = packed if packed.exists() else source   # refused: sessions copy the weights instead
    return files, exported_any


def refused(packed: Path) -> Path:
    """Written where a pre-packed file failed its check on this machine, with the reason: not tried again."""
    return packed.with_name(packed.name + ".refused")


def model_key(kwargs: dict, cache_dir: str) -> str:
    """The checkpoint's content hash and its configuration's: an export is reused only for the same model."""
    checkpoint = kwargs.get("init_param")
    if not checkpoint or not os.path.exists(checkpoint):
        raise OnnxUnavailable(f"no checkpoint file to export ({checkpoint!r})")
    config = Path(checkpoint).with_name("config.yaml")
    settings = hashlib.sha256(config.read_bytes() if config.exists() else b"").hexdigest()
    return f"{content_hash(checkpoint, cache_dir)[:32]}-{settings[:12]}"


def export_proved(part: Part, target: Path, threads: int) -> None:
    """Export with torch's TorchScript-based exporter (`dynamo=False`: the dynamo one wants onnxscript and
    cannot trace funasr's dict caches), check that ONNX Runtime answers the probe inputs as torch does, then
    rename into place."""
    graph = part.graph.eval()
    input_names, output_names = graph.names()
    target.parent.mkdir(parents=True, exist_ok=True)
    with staging_file(target) as staging, torch.no_grad(), traceable_pad_masks():
        try:
            torch.onnx.export(graph, part.dummy, staging, input_names=input_names, output_names=output_names,
                              dynamic_axes=graph.dynamic_axes(), opset_version=OPSET, dynamo=False,
                              do_constant_folding=True)
            expected = [tensor.numpy() for tensor in as_tuple(graph(*part.probe))]
            got = new_session(Path(staging), threads).run(None, dict(zip(input_names, [t.numpy() for t in part.probe])))
        except Exception as exc:
            raise OnnxUnavailable(f"exporting {target.stem} failed: {type(exc).__name__}: {exc}") from exc
        for name, want, have in zip(output_names, expected, got):
            if want.shape != have.shape or not np.allclose(want, have, rtol=1e-3, atol=1e-4):
                difference = "another shape" if want.shape != have.shape else f"{np.abs(want - have).max():.2g}"
                raise OnnxUnavailable(f"the ONNX export of {target.stem} answers {name} unlike torch "
                                      f"({difference}) on inputs of another length")
        if all(0 in axes for axes in graph.dynamic_axes().values()):
            check_batch_axis(new_session(Path(staging), threads), input_names, part.probe, got, target.stem)


def check_batch_axis(session, input_names: list[str], probe: tuple, alone: list, name: str) -> None:
    """A graph with a batch axis must answer two stacked copies of the probe row for row as it answers one."""
    stacked = session.run(None, {n: np.concatenate([t.numpy(), t.numpy()]) for n, t in zip(input_names, probe)})
    for single, pair in zip(alone, stacked):
        if pair.shape[0] != 2 or not all(np.allclose(row, single, rtol=0, atol=BATCH_TOLERANCE) for row in pair):
            raise OnnxUnavailable(f"the ONNX export of {name} answers a batch of two unlike each alone "
                                  f"(by more than {BATCH_TOLERANCE:g})")


def as_tuple(result) -> tuple:
    return result if isinstance(result, tuple) else (result,)


def quantize_int8(source: Path, target: Path) -> None:
    """Dynamic int8 quantisation of the MatMul weights, per channel, output layers kept in float: the settings
    of FunASR's own export (`funasr.utils.export_utils`)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    kept = [node.name for node in onnx.load(str(source), load_external_data=False).graph.node if "output" in node.name]
    with staging_file(target) as staging:
        quantize_dynamic(str(source), staging, op_types_to_quantize=["MatMul"], per_channel=True, reduce_range=False,
                         weight_type=QuantType.QUInt8, nodes_to_exclude=kept)


def save_prepacked(source: Path, target: Path, threads: int, probe: dict[str, np.ndarray]) -> None:
    """ONNX Runtime re-arranges (pre-packs) MatMul weights for its kernels when a session starts, into private
    memory: 905 MB per replica of the full streaming model, where the mapped torch loader shares its weights.
    Saved once as an optimised model whose weights and pre-packed blobs sit, page-aligned, in
    `<target>.data`, later sessions map that file instead: every replica shares one copy in the page cache,
    at the pre-packed speed. The blobs suit this CPU and runtime only, hence `machine_key` in the name. Written
    in a staging folder and run once there in a child process (`onnx_check`); the data is renamed into place
    first and `target` last, so a `target` that exists is complete and ran. One that fails its run is not
    used: `refused(target)` keeps the reason, and sessions load `source`, copying its weights."""
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".packing-"))
    try:
        options = session_options(threads)
        options.optimized_model_filepath = str(staging / target.name)
        options.add_session_config_entry("session.optimized_model_external_initializers_file_name",
                                         mapped_data(target).name)
        options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
        options.add_session_config_entry("session.save_external_prepacked_constant_initializers", "1")
        import onnxruntime

        onnxruntime.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        flush(staging / mapped_data(target).name)  # dirty pages mapped by one process count as its Private_Dirty
        problem = runs_in_a_child(staging / target.name, probe)
        if problem is not None:
            log.warning("%s: the pre-packed model is not used (%s); sessions copy its weights", target.name, problem)
            refused(target).write_text(problem + "\n")
            return
        os.replace(staging / mapped_data(target).name, mapped_data(target))
        os.replace(staging / target.name, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def flush(path: Path) -> None:
    """Write the file's pages to disk now, so that they are clean page cache when sessions map them."""
    on_open_file(path, os.fsync)


def forget_unmapped_pages(path: Path) -> None:
    """Starting a session reads all of the file (the weights as exported and their pre-packed form) into the page
    cache but maps only what it runs on. The kernel drops the pages no process maps; the mapped ones stay, and
    a later replica faults in only what it maps."""
    on_open_file(path, lambda fd: os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED))


def on_open_file(path: Path, call: Callable[[int], object]) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        call(fd)
    finally:
        os.close(fd)


def mapped_data(packed: Path) -> Path:
    """The file a pre-packed part's sessions map: its weights, the same pages in every replica."""
    return packed.with_name(packed.name + ".data")


@functools.cache
def machine_key() -> str:
    """Pre-packed blobs depend on the runtime's version and the CPU's instruction sets."""
    import onnxruntime

    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        flags = ""
    digest = hashlib.sha256(f"{onnxruntime.__version__}|{flags}".encode()).hexdigest()[:10]
    return f"ort{onnxruntime.__version__}-{digest}"


@contextlib.contextmanager
def exclusive(lock_path: Path):
    """An advisory lock between the processes exporting into one folder."""
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class staging_file:
    """A temporary name beside `target`, renamed onto it when the block succeeds and removed otherwise."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __enter__(self) -> str:
        fd, self.staging = tempfile.mkstemp(dir=self.target.parent, prefix=f".{self.target.name}-")
        os.close(fd)
        return self.staging

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            os.chmod(self.staging, 0o644)
            os.replace(self.staging, self.target)
        elif os.path.exists(self.staging):
            os.unlink(self.staging)


def new_session(path: Path, threads: int):
    """One session per part per replica, on `threads` intra-op threads that sleep rather than spin between
    calls (replicas share the cores with each other and with the API)."""
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])


def session_options(threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options
