"""glibc's heap as the stages set it up: freed memory kept for reuse up to a bound, past it
handed back (``canids.util.trim_heap``, ``tune_heap``). Real allocations, real page faults."""

from __future__ import annotations

import ctypes
import os
import platform
import subprocess
import sys

import pytest

from canids.util import heap_free_bytes, trim_heap

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's heap (mallinfo2, malloc_trim, mallopt)")


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    return libc


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_trim_heap_keeps_free_memory_up_to_the_bound_and_hands_back_what_exceeds_it():
    """A training step frees and reuses ~100 MB every step: trimming it made the next step
    fault it back in (4-9 % of the teacher's graphs/s). The bound keeps a working set; what
    exceeds it still goes back to the operating system."""
    libc = _libc()
    block, n_blocks = 64 * 1024, 3072  # below glibc's mmap threshold: heap memory
    blocks = [libc.malloc(block) for _ in range(n_blocks)]
    try:
        for address in blocks:
            ctypes.memset(address, 1, block)  # resident
        for address in blocks[::2]:  # every other block freed: free memory the live ones fence in
            libc.free(address)
        freed = block * (n_blocks // 2)
        free, resident = heap_free_bytes(), _resident_bytes()
        assert free is not None and free >= freed
        assert trim_heap(above=free + freed) is False  # within the bound: kept
        assert _resident_bytes() > resident - freed // 4
        assert trim_heap(above=freed // 4) is True  # past it: handed back
        assert _resident_bytes() < resident - freed // 2, "malloc_trim handed back less than half of the freed blocks"
    finally:
        for address in blocks[1::2]:
            libc.free(address)


_REUSE = """
import ctypes, resource, sys
from canids.util import tune_heap
if sys.argv[1] == "tuned":
    assert tune_heap()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def arrays_of_every_size():  # page faults of allocating, filling and freeing 1 .. 16 MiB
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for mib in (1, 2, 4, 8, 16):
        block = libc.malloc(mib << 20)
        ctypes.memset(block, 1, mib << 20)
        libc.free(block)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
arrays_of_every_size()
print(arrays_of_every_size())
"""


def test_a_tuned_heap_reuses_freed_arrays_instead_of_faulting_them_in_again():
    """The second time a stage allocates arrays of sizes it has freed before, glibc's own
    thresholds (128 KiB at the start, raised one unmapped block at a time) map and fault
    them in again; ``tune_heap``'s reuse them (preprocessing: 53 k -> 33 k page faults)."""
    faults = {}
    for heap in ("default", "tuned"):
        done = subprocess.run([sys.executable, "-c", _REUSE, heap], capture_output=True, text=True, check=True)
        faults[heap] = int(done.stdout)
    assert faults["default"] >= 1024, faults  # 16 MiB faulted in again: 4,096 pages
    assert faults["tuned"] < faults["default"] // 8, faults
