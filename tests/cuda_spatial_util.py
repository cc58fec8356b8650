"""Helpers of the CUDA convolution / pooling tests (tests/test_cuda_conv.py, test_cuda_pool.py):
skip without a CUDA device, the emulator's three resume orders, host <-> device conversions."""
from __future__ import annotations

import numpy as np
import pytest

import fastnn

if not fastnn.cuda.is_available():
    pytest.skip("device 'cuda' not available (neither a GPU nor the emulator)", allow_module_level=True)
emu = pytest.importorskip("fastnn._cuda_emu")

ORDERS = ["forward", "reverse", "random"]


@pytest.fixture(params=ORDERS, autouse=True)
def order(request):
    """Every test of a module importing this runs once per emulator resume order."""
    before = emu._get_order()
    emu._set_order(request.param, 4321)
    yield request.param
    emu._set_order(*before)


def dev(a):
    return fastnn.from_numpy(np.ascontiguousarray(a)).to("cuda")


def cpu(a):
    return fastnn.from_numpy(np.ascontiguousarray(a))


def host(t):
    return np.asarray(t.to("cpu"))
