"""The model file as the TFLite runtime mapped it: found in /proc/self/maps, hashed, and
its pages handed back once the interpreter is built.

Loaded by path, TFLite mmaps the file read-only. XNNPACK packs the weights into its own
buffers while the interpreter is built and does not read the file's copy again, so the
mapped pages are dead weight in RSS (9.4 MiB for SFace). Hashing the mapping checks the
bytes the interpreter really uses (a file swapped after the first check cannot slip
through), and MADV_DONTNEED drops its pages: they are clean file pages, read back from the
file if anything touches them again. Linux only; elsewhere `regions` finds nothing and the
caller loads the bytes it hashed instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
from pathlib import Path

MADV_DONTNEED = 4
_CHUNK = 1 << 20


def regions(path: Path) -> set[tuple[int, int]]:
    """(start, end) of every mapping of `path` in this process (empty off Linux)."""
    target = os.path.realpath(path)
    found: set[tuple[int, int]] = set()
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                parts = line.split(maxsplit=5)
                if len(parts) == 6 and parts[5].rstrip("\n") == target:
                    start, end = (int(v, 16) for v in parts[0].split("-"))
                    found.add((start, end))
    except OSError:
        return set()
    return found


def sha256_at(start: int, size: int) -> str:
    """sha256 of `size` bytes mapped at `start`, read in 1 MiB pieces (no whole copy)."""
    digest = hashlib.sha256()
    view = memoryview((ctypes.c_char * size).from_address(start)).cast("B")
    for off in range(0, size, _CHUNK):
        digest.update(view[off : off + _CHUNK])
    return digest.hexdigest()


def release(start: int, end: int) -> bool:
    """Drop the resident pages of a read-only file mapping (they refault from the file)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return int(libc.madvise(start, end - start, MADV_DONTNEED)) == 0
