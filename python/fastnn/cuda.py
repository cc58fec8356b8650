"""Device 'cuda': which implementation backs it, and its state.

Two native modules can back 'cuda':
  * fastnn._cuda      — kernels compiled by nvcc, CUDA runtime linked statically; used when a GPU is visible.
  * fastnn._cuda_emu  — the same kernels compiled by the host compiler against fastnn's CPU emulator of the
                        CUDA execution model; used when FASTNN_CUDA_EMULATE=1 and no GPU is visible.
Each module exposes ``_backend()`` (a capsule the core registers), ``device_count()``,
``unavailable_reason()`` and ``device_name(i)``. The choice is made once, at import.
"""
from __future__ import annotations

import importlib
import os

from . import _C

_backend_module = None
_why_unavailable = ""


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _select() -> None:
    global _backend_module, _why_unavailable
    reasons = []
    try:
        real = importlib.import_module("fastnn._cuda")
    except ImportError as e:
        real = None
        reasons.append(f"fastnn was built without the CUDA module ({e.__class__.__name__}: {e}); "
                       "rebuild with nvcc on PATH or FASTNN_BUILD_MODE=cuda")
    if real is not None:
        n = real.device_count()
        if n > 0:
            _C._set_cuda_backend(real._backend())
            _backend_module = real
            return
        reasons.append(f"no GPU is visible: {real.unavailable_reason()}")
    if _truthy("FASTNN_CUDA_EMULATE"):
        try:
            emu = importlib.import_module("fastnn._cuda_emu")
        except ImportError as e:
            reasons.append(f"FASTNN_CUDA_EMULATE=1 but the emulated CUDA module is missing ({e}); "
                           "it is built when the CUDA headers are found")
        else:
            _C._set_cuda_backend(emu._backend())
            _backend_module = emu
            return
    else:
        reasons.append("set FASTNN_CUDA_EMULATE=1 to run device 'cuda' on the CPU emulator")
    _why_unavailable = "; ".join(reasons)


def is_available() -> bool:
    """True when device 'cuda' works (a real GPU, or the emulator when FASTNN_CUDA_EMULATE=1)."""
    return _backend_module is not None


def why_unavailable() -> str:
    """Why is_available() is False ('' when it is True)."""
    return _why_unavailable


def is_emulated() -> bool:
    """True when 'cuda' runs on fastnn's CPU emulator of the CUDA execution model."""
    return _backend_module is not None and _backend_module.__name__.endswith("_cuda_emu")


def backend_name():
    """'cuda', 'cuda-emulated' or None."""
    return _C._cuda_backend_name()


def device_count() -> int:
    return _backend_module.device_count() if _backend_module is not None else 0


def get_device_name(device: int = 0) -> str:
    _require()
    return _backend_module.device_name(device)


def _require():
    if _backend_module is None:
        raise RuntimeError(f"fastnn.cuda is not available: {_why_unavailable}")


def memory_stats(device: int = 0) -> dict:
    """Caching device allocator statistics."""
    _require()
    return _C._cuda_memory_stats(device)


def empty_cache() -> None:
    """Return cached device blocks to the driver."""
    if _backend_module is not None:
        _C._cuda_empty_cache()


def synchronize(device: int = 0) -> None:
    _require()
    _C._cuda_synchronize(device)


def host_device_copies() -> int:
    """Number of host<->device copies made so far (used to check that training steps stay on the device)."""
    _require()
    return _C._cuda_host_device_copies()


_select()


# ---- GEMM configuration (kernels/gemm.cu; docs/CUDA.md "GEMM") ----------------------------
def set_allow_tf32(allow: bool) -> None:
    """Let float32 matrix products on 'cuda' round their operands to TF32 (10-bit mantissa) and run on
    tensor cores, like ``torch.backends.cuda.matmul.allow_tf32``. Default False: FP32 CUDA cores."""
    _C._set_allow_tf32(bool(allow))


def get_allow_tf32() -> bool:
    """Whether float32 matrix products on 'cuda' may use TF32 tensor cores."""
    return _C._get_allow_tf32()


def set_gemm_tile(tile=None) -> None:
    """Force the CUDA GEMM block tile (64 or 128: BM = BN = tile); None restores the heuristic."""
    _C._set_gemm_tile(0 if tile is None else int(tile))


def get_gemm_tile():
    """The forced CUDA GEMM block tile, or None when the heuristic chooses."""
    t = _C._get_gemm_tile()
    return None if t == 0 else t


def gemm_plan(m: int, n: int, k: int, batch: int = 1, dtype="float32", device="cuda"):
    """``(path, tile)`` the CUDA GEMM dispatcher picks for an (m x k) @ (k x n) product under the
    current configuration: path 'fp32' (CUDA cores), 'tf32', 'bf16' or 'fp16' (tensor cores); tile 64 or 128."""
    return _C._cuda_gemm_plan(int(m), int(n), int(k), int(batch), dtype, device)
