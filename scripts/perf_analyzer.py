"""Run Triton's `perf_analyzer` (PyPI `perf-analyzer`) against the server on a machine whose C library is older
than the one it is built for (glibc 2.38 and GCC 13's libstdc++; Debian 12 has 2.36 and GCC 12).

    python scripts/perf_analyzer.py --folder DIR -- -m punctuation -u 127.0.0.1:8000 -i http ...

Everything goes into `--folder`, nothing into the system: the wheel (pip, for the manylinux_2_38 platform), and
the C library, libstdc++ and libgcc from Debian 13's packages (found in its package index, checked against the
index's SHA256, unpacked with dpkg-deb). perf_analyzer then runs under that folder's own loader; the arguments
after `--` are perf_analyzer's. It reads `GET /v2/models/{name}/config` first (Triton's model configuration).
"""

from __future__ import annotations

import argparse
import hashlib
import lzma
import subprocess
import sys
import urllib.request
from pathlib import Path

MIRROR = "http://deb.debian.org/debian"
SUITE = "trixie"
PACKAGES = ("libc6", "libstdc++6", "libgcc-s1")
WHEEL = "perf-analyzer==2.60.0"


def package_files(index: bytes) -> dict[str, tuple[str, str]]:
    """Package name -> (pool file name, SHA256), for the packages wanted, from a Debian `Packages` index."""
    found = {}
    for stanza in lzma.decompress(index).decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[0] != " ")
        if fields.get("Package") in PACKAGES:
            found[fields["Package"]] = (fields["Filename"], fields["SHA256"])
    return found


def prepared(folder: Path) -> tuple[Path, Path]:
    """(the loader, perf_analyzer's binary), fetched and unpacked once."""
    root, wheel_dir = folder / "root", folder / "wheel"
    libs = root / "usr/lib/x86_64-linux-gnu"
    binary = wheel_dir / "perf_analyzer/bin/perf_analyzer"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", WHEEL, "--platform",
                        "manylinux_2_38_x86_64", "--only-binary=:all:", "-d", str(folder)], check=True)
        wheel = next(folder.glob("perf_analyzer-*.whl"))
        subprocess.run([sys.executable, "-m", "zipfile", "-e", str(wheel), str(wheel_dir)], check=True)
        binary.chmod(0o755)
    if not (libs / "ld-linux-x86-64.so.2").exists():
        index = urllib.request.urlopen(f"{MIRROR}/dists/{SUITE}/main/binary-amd64/Packages.xz", timeout=120).read()
        for name, (path, sha256) in package_files(index).items():
            deb = urllib.request.urlopen(f"{MIRROR}/{path}", timeout=120).read()
            if hashlib.sha256(deb).hexdigest() != sha256:
                raise SystemExit(f"{path}: its SHA256 is not the index's")
            (folder / f"{name}.deb").write_bytes(deb)
            subprocess.run(["dpkg-deb", "-x", str(folder / f"{name}.deb"), str(root)], check=True)
    return libs / "ld-linux-x86-64.so.2", binary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, required=True, help="where the wheel and the libraries go")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="-- then perf_analyzer's arguments")
    args = parser.parse_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    loader, binary = prepared(args.folder)
    libs = f"{loader.parent}:/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu"
    rest = args.args[1:] if args.args[:1] == ["--"] else args.args
    command = [str(loader), "--library-path", libs, str(binary), *rest]
    return subprocess.run(command).returncode


if __name__ == "__main__":
    sys.exit(main())
