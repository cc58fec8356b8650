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


# ---- streams -------------------------------------------------------------------------------
class Stream:
    """A CUDA stream on one device (``torch.cuda.Stream``'s model). Work issued while it is this
    thread's current stream (``with fastnn.cuda.stream(s):``) is queued on it; the device's default
    stream orders with every stream. The caching allocator reuses memory freed on a stream only for
    that stream: a tensor used on a second stream must not be freed before that stream is done
    (call ``synchronize()``). Under the emulator work is synchronous and streams keep only their
    identity. ``Stream(device, handle=0)`` with ``handle=0`` names the default stream."""

    def __init__(self, device: int = 0, *, _handle=None):
        _require()
        self.device = int(device)
        if _handle is None:
            self._handle = int(_C._cuda_stream_create(self.device))
            self._owned = True
        else:
            self._handle = int(_handle)
            self._owned = False

    @property
    def cuda_stream(self) -> int:
        """The raw ``cudaStream_t`` value (0: the default stream), e.g. for DLPack's ``stream=``."""
        return self._handle

    def synchronize(self) -> None:
        _C._cuda_stream_synchronize(self._handle, self.device)

    def close(self) -> None:
        """Synchronises and destroys the stream (also done when it is garbage-collected)."""
        if self._owned and self._handle:
            h, self._handle = self._handle, 0
            _C._cuda_stream_destroy(h, self.device)

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the backend may be gone
            pass

    def __eq__(self, other):
        return isinstance(other, Stream) and (self.device, self._handle) == (other.device, other._handle)

    def __hash__(self):
        return hash((self.device, self._handle))

    def __repr__(self):
        return f"fastnn.cuda.Stream(device={self.device}, cuda_stream={self._handle:#x})"


def current_stream(device: int = 0) -> Stream:
    """This thread's current stream on ``device`` (the default stream unless changed)."""
    _require()
    return Stream(device, _handle=_C._cuda_current_stream(int(device)))


def default_stream(device: int = 0) -> Stream:
    _require()
    return Stream(device, _handle=0)


def set_stream(s: Stream) -> None:
    """Makes ``s`` this thread's current stream on its device."""
    if not isinstance(s, Stream):
        raise TypeError(f"set_stream: argument 's': expected fastnn.cuda.Stream, got {type(s).__name__}")
    if s._owned and not s._handle:
        raise ValueError("set_stream: argument 's': the stream was closed")
    _C._cuda_set_current_stream(s._handle, s.device)


class stream:  # noqa: N801 — a context manager named like torch.cuda.stream
    """``with fastnn.cuda.stream(s): ...`` issues the block's CUDA work on ``s`` (this thread only),
    then restores the previous current stream."""

    def __init__(self, s: Stream):
        if not isinstance(s, Stream):
            raise TypeError(f"stream: argument 's': expected fastnn.cuda.Stream, got {type(s).__name__}")
        self._s = s
        self._prev = None

    def __enter__(self):
        self._prev = current_stream(self._s.device)
        set_stream(self._s)
        return self._s

    def __exit__(self, *exc):
        _C._cuda_set_current_stream(self._prev._handle, self._prev.device)
        return False


# ---- GEMM configuration (kernels/gemm.cu; docs/CUDA.md "GEMM") ----------------------------
def set_allow_tf32(allow: bool) -> None:
    """Let float32 matrix products and convolutions on 'cuda' round their operands to TF32 (10-bit
    mantissa) and run on tensor cores, like ``torch.backends.cuda.matmul.allow_tf32``. Default False:
    FP32 CUDA cores. (conv2d's ``allow_tf32=`` argument overrides it per call.)"""
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
