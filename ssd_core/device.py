"""Device selection and CPU process tuning shared by the app, the CLI and the benchmarks."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys

import torch


def default_device() -> torch.device:
    """CUDA if present, then Apple MPS, then CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/"auto" picks :func:`default_device`; anything else is checked to be usable."""
    if device is None or str(device) == "auto":
        return default_device()
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} asked for, but CUDA is not available here")
    if dev.type == "mps" and not default_device().type == "mps":
        raise ValueError(f"device {str(device)!r} asked for, but Apple MPS is not available here")
    return dev


def device_label(device: torch.device | None = None) -> str:
    """A human description such as ``CUDA (NVIDIA H100)`` or ``CPU (2 threads)``."""
    dev = device or default_device()
    if dev.type == "cuda":
        return f"CUDA ({torch.cuda.get_device_name(dev)})"
    if dev.type == "mps":
        return "Apple MPS"
    return f"CPU ({torch.get_num_threads()} threads)"


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 matrix products in hardware: a CUDA GPU with bf16
    (Ampere and later), or a CPU with AVX512-BF16 or AMX. Elsewhere bf16 is emulated and
    slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return (any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)
                and not _cpu_isa_capped())
    return False


def _cpu_isa_capped() -> bool:
    """Whether the process was told to use less than the CPU has for bf16: oneDNN capped below
    its bf16 instructions (``ONEDNN_MAX_CPU_ISA=AVX2``, ``AVX512_CORE``, ...) or ATen's kernels
    below AVX-512 (``ATEN_CPU_CAPABILITY=avx2``). The hardware checks above do not see either."""
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "")).upper()
    if isa and isa not in ("ALL", "DEFAULT") and "BF16" not in isa and "AMX" not in isa:
        return True
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001 - an older torch without it: trust the hardware checks
        return False
    return capability in ("DEFAULT", "AVX", "AVX2", "NO AVX", "VSX", "ZVECTOR")


_ALLOCATOR_TUNED = False


def tune_cpu_allocator() -> bool:
    """Keep freed memory in glibc's heap instead of returning it to the OS after each step.

    On these VMs the page faults from glibc trimming PyTorch's large activation buffers made CPU
    training 2-5x slower and noisy. ``mallopt`` here does what ``GLIBC_TUNABLES`` would do before
    Python starts. Returns True when applied (glibc on Linux), False elsewhere.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4
        ok = libc.mallopt(m_mmap_max, 0) == 1
        ok = libc.mallopt(m_trim_threshold, 2**31 - 1) == 1 and ok
    except (OSError, AttributeError):
        return False
    _ALLOCATOR_TUNED = ok
    return ok


def configure_cpu_threads() -> int:
    """Use one intra-op thread per physical core (at least 1); returns the number set."""
    if "OMP_NUM_THREADS" in os.environ:
        return torch.get_num_threads()
    if hasattr(os, "sched_getaffinity"):
        n = len(os.sched_getaffinity(0))
    else:
        n = os.cpu_count() or 1
    n = max(1, n)
    torch.set_num_threads(n)
    return n


_OPENMP = None


def _openmp_runtime():
    """The OpenMP runtime torch loaded (found in this process's memory map), or None."""
    global _OPENMP
    if _OPENMP is None:
        _OPENMP = False
        try:
            with open("/proc/self/maps") as f:
                paths = sorted({line.split()[-1] for line in f
                                if any(k in line for k in ("libgomp", "libiomp", "libomp"))})
            for path in paths:
                lib = ctypes.CDLL(path)  # already loaded: the same library instance
                if hasattr(lib, "omp_set_num_threads"):
                    _OPENMP = lib
                    break
        except (OSError, IndexError):
            pass
    return _OPENMP or None


def limit_this_thread(n: int) -> bool:
    """Run this thread's torch CPU ops with at most ``n`` intra-op threads, leaving every other
    thread's setting alone (``torch.set_num_threads`` would change the default of every thread
    started afterwards). It sets OpenMP's per-thread setting, which ATen and oneDNN read.

    Why: a live stream's frames are single images, and on a busy 2-core machine two OpenMP
    threads that wait for each other at every layer ran TinySSD ~10x slower than one
    (bench/bench_live.py). Returns False where torch's OpenMP runtime is not found."""
    torch.get_num_threads()  # PyTorch's lazy per-thread initialization first: it would undo ours
    lib = _openmp_runtime()
    if lib is None:
        return False
    lib.omp_set_num_threads(max(1, int(n)))
    return torch.get_num_threads() == max(1, int(n))


@contextlib.contextmanager
def this_thread_limited(n: int | None):
    """``with this_thread_limited(1):`` torch ops of this thread use one intra-op thread inside
    the block, and this thread's previous setting after it (None: no change). Yields whether
    the limit applies."""
    if n is None:
        yield False
        return
    prev = torch.get_num_threads()
    ok = limit_this_thread(n)
    try:
        yield ok
    finally:
        if ok:
            limit_this_thread(prev)
