"""How much of a weights file sits in the page cache, and dropping it.

Mapped weights are clean file-backed pages: no process's Private_Dirty counts them, every replica of a model
shares them, and they stay cached after the last process is gone. `mincore` on a fresh read-only mapping says
which pages are resident without touching them; `posix_fadvise(DONTNEED)` drops those no process maps.
Plain ctypes and os calls: the supervisor never imports torch.
"""

from __future__ import annotations

import ctypes
import mmap
import os

MB = 1024 * 1024
PAGE = mmap.PAGESIZE
MAP_FAILED = ctypes.c_void_p(-1).value

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
_libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)


def resident_mb(*paths: str) -> float:
    """MB of these files in the page cache now; a file that is gone or cannot be read counts 0."""
    return sum(map(file_resident_mb, paths))


def file_resident_mb(path: str) -> float:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return 0.0
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return 0.0
        address = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if address in (None, MAP_FAILED):
            return 0.0
        try:
            pages = (size + PAGE - 1) // PAGE
            flags = (ctypes.c_ubyte * pages)()
            if _libc.mincore(address, size, flags) != 0:
                return 0.0
            resident = pages - bytes(flags).count(0)
        finally:
            _libc.munmap(address, size)
    finally:
        os.close(fd)
    return resident * PAGE / MB


def drop(*paths: str) -> float:
    """Ask the kernel to drop these files' cached pages; returns the MB that were resident and are now gone."""
    return sum(map(drop_file, paths))


def drop_file(path: str) -> float:
    before = file_resident_mb(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return 0.0
    try:
        os.fdatasync(fd)  # dirty pages (a model generated or converted moments ago) are not dropped, only clean ones
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return max(before - file_resident_mb(path), 0.0)
