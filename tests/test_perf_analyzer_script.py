"""`scripts/perf_analyzer.py` finds the newer C library's packages in a Debian package index (the download and
the run itself need the network and are done by hand: figures in docs/clients.md)."""

from __future__ import annotations

import lzma

from scripts.perf_analyzer import package_files


def test_the_wanted_packages_are_found_with_their_hashes_in_a_packages_index():
    index = "\n\n".join([
        "Package: libc6\nVersion: 2.41-12\nFilename: pool/main/g/glibc/libc6_2.41-12_amd64.deb\nSHA256: aa\n"
        "Description: GNU C Library\n more text: with a colon",
        "Package: libc6-dev\nFilename: pool/main/g/glibc/libc6-dev_2.41-12_amd64.deb\nSHA256: bb",
        "Package: libstdc++6\nFilename: pool/main/g/gcc-14/libstdc++6_14.2.0-19_amd64.deb\nSHA256: cc",
        "Package: libgcc-s1\nFilename: pool/main/g/gcc-14/libgcc-s1_14.2.0-19_amd64.deb\nSHA256: dd"])
    found = package_files(lzma.compress(index.encode()))
    assert found == {"libc6": ("pool/main/g/glibc/libc6_2.41-12_amd64.deb", "aa"),
                     "libstdc++6": ("pool/main/g/gcc-14/libstdc++6_14.2.0-19_amd64.deb", "cc"),
                     "libgcc-s1": ("pool/main/g/gcc-14/libgcc-s1_14.2.0-19_amd64.deb", "dd")}
