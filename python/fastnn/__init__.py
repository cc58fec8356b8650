"""fastnn: hand-written CPU and CUDA kernels for small deep-learning workloads.

    import fastnn as fnn
    x = fnn.tensor([[1.0, 2.0]])
"""
from __future__ import annotations

from . import _C
from ._C import DType
from .tensor import (
    Tensor,
    as_tensor,
    empty,
    from_dlpack,
    from_numpy,
    full,
    ones,
    tensor,
    zeros,
)
from . import cuda
from . import ops
from ._info import info
from . import autograd  # attaches the differentiable operators and methods to Tensor
from .autograd import no_grad, enable_grad, set_grad_enabled, is_grad_enabled
from .random import manual_seed, randn, rand, randint
from . import nn, optim, data
from .trainer import Trainer, History, Callback, EarlyStopping, ModelCheckpoint, LambdaCallback
from .serialization import save, load
from ._sdk import cmake_prefix_path  # the C++ library's CMake package (fastnn/_sdk.py)

__version__: str = _C.build_info["version"]

float32 = DType.float32
float64 = DType.float64
float16 = DType.float16
bfloat16 = DType.bfloat16
int32 = DType.int32
int64 = DType.int64
uint8 = DType.uint8
bool_ = DType.bool


def get_num_threads() -> int:
    """Threads a CPU kernel may use."""
    return _C.get_num_threads()


def set_num_threads(n: int) -> None:
    """Set the threads CPU kernels use (process-wide; n >= 1)."""
    _C.set_num_threads(n)


def get_simd_level() -> str:
    """SIMD level the CPU kernels dispatch to: 'avx512', 'avx2' or 'generic'."""
    return _C.get_simd_level()


def set_simd_level(level: str) -> None:
    """Force a SIMD level ('avx512' | 'avx2' | 'generic'); ValueError if the CPU lacks it.

    The environment variable FASTNN_SIMD sets the level at import.
    """
    _C.set_simd_level(level)


def memory_stats() -> dict:
    """Statistics of the caching host allocator (bytes in use, cached, hits, ...)."""
    return _C.memory_stats()


def empty_cache() -> None:
    """Return the host allocator's cached blocks to the operating system."""
    _C.empty_cache()


__all__ = [
    "Tensor", "tensor", "as_tensor", "from_numpy", "from_dlpack", "empty", "zeros", "ones", "full",
    "float32", "float64", "float16", "bfloat16", "int32", "int64", "uint8", "bool_", "DType",
    "get_num_threads", "set_num_threads", "get_simd_level", "set_simd_level", "memory_stats", "empty_cache",
    "info", "cuda", "ops",
    "autograd", "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled", "manual_seed", "randn", "rand",
    "randint", "nn", "optim", "data", "Trainer", "History", "Callback", "EarlyStopping", "ModelCheckpoint",
    "LambdaCallback", "save", "load", "cmake_prefix_path",
]
