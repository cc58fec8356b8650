"""Shared fixtures: every kernel test runs at each SIMD level the CPU supports, with 1 and
2 threads where it matters, and on device 'cuda' (the CPU emulator of CUDA when no GPU is
visible; the suite enables it itself)."""
from __future__ import annotations

import os

# Before fastnn is imported: let 'cuda' run on the emulator when there is no GPU.
os.environ.setdefault("FASTNN_CUDA_EMULATE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


class _NoTorch:
    """FASTNN_TEST_NO_TORCH=1 (tools/sanitize.sh --leaks): importing torch raises ImportError, so
    tests that need it skip (pytest.importorskip) and the leak run needs no suppressions for
    libtorch's own allocations, which could also hide fastnn's when called through torch."""

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"import of {name} blocked by FASTNN_TEST_NO_TORCH=1", name=name)
        return None


if os.environ.get("FASTNN_TEST_NO_TORCH") == "1":
    import sys  # noqa: E402

    sys.meta_path.insert(0, _NoTorch())

import fastnn  # noqa: E402

_LEVELS = ["generic", "avx2", "avx512"]
SIMD_LEVELS = _LEVELS[: _LEVELS.index(fastnn._C.max_simd_level()) + 1]
DEVICES = ["cpu"] + (["cuda"] if fastnn.cuda.is_available() else [])


@pytest.fixture(params=SIMD_LEVELS)
def simd_level(request):
    """Runs the test once per SIMD level this CPU supports; restores the level afterwards."""
    before = fastnn.get_simd_level()
    fastnn.set_simd_level(request.param)
    yield request.param
    fastnn.set_simd_level(before)


@pytest.fixture(params=[1, 2])
def threads(request):
    before = fastnn.get_num_threads()
    fastnn.set_num_threads(request.param)
    yield request.param
    fastnn.set_num_threads(before)


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def f32_matmul_tol(k: int, scale: float = 1.0) -> float:
    """Error bound for a float32 dot product of length k against a float64 reference:
    |fl(sum) - sum| <= gamma_k * sum|a_i b_i| with gamma_k ~ k * eps32 (worst case);
    blocked / FMA summation is far better, so 2*k*eps*scale is a safe bound."""
    return 2.0 * max(k, 1) * np.finfo(np.float32).eps * scale


@pytest.fixture(params=["forward", "reverse", "random"])
def emu_order(request):
    """For CUDA-emulator tests that ask for it: runs once per thread-resume order (seeded random)."""
    emu = pytest.importorskip("fastnn._cuda_emu")
    before = emu._get_order()
    emu._set_order(request.param, 777)
    yield request.param
    emu._set_order(*before)
