"""SASS check of the CUDA GEMM (tools/sass_check.py): compiled for sm_80, the wmma kernels contain HMMA
(tensor-core) instructions and cp.async (LDGSTS), the FP32 kernels FFMA + LDGSTS and no HMMA.
Needs nvcc and cuobjdump (`pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm`); skipped otherwise."""
from __future__ import annotations

import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import sass_check  # noqa: E402


def test_tensor_core_gemm_has_hmma(monkeypatch):
    # Under tools/sanitize.sh this process runs with libasan in LD_PRELOAD; nvcc and cuobjdump are
    # not ours and crash with it (exit 139), so they must not inherit it.
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    cuobjdump = sass_check.find_cuobjdump(None)
    if cuobjdump is None or shutil.which("nvcc") is None:
        pytest.skip("nvcc or cuobjdump not installed (pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)")
    # The tensor-core file only (the FP32 file's FFMA check runs with the tool itself): one nvcc compile.
    assert sass_check.check("80", shutil.which("nvcc"), cuobjdump, files=["kernels/gemm_tensor_core.cu"]) == []


def test_functions_split():
    sass = "\n\tFunction : _Z1av\n HMMA.16816.F32 R0\n\tFunction : _Z1bv\n FFMA R1\n"
    assert sass_check.functions(sass) == {"_Z1av": "\n HMMA.16816.F32 R0\n", "_Z1bv": "\n FFMA R1\n"}
