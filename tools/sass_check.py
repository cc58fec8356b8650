#!/usr/bin/env python3
"""SASS check of the CUDA GEMM: the tensor-core kernels really issue tensor-core instructions.

Compiles kernels/gemm_tensor_core.cu and kernels/gemm_fp32.cu with nvcc for one architecture
(default sm_80), disassembles them with cuobjdump (the `nvidia-cuda-cuobjdump` and `nvidia-cuda-nvdisasm`
wheels from PyPI, or both on PATH) and checks, per kernel instance:
  * every gemm_wmma_kernel<...> contains HMMA instructions (TF32: HMMA.1684.F32.TF32; BF16/FP16:
    HMMA.16816.F32.BF16 / HMMA.16816.F32) and LDGSTS (cp.async);
  * every sgemm_tiled_kernel<...> contains FFMA and LDGSTS and no HMMA.
Exit status 0 when all hold, 1 with the failures listed, 2 when nvcc or cuobjdump is missing.

Usage: python tools/sass_check.py [--arch 80] [--nvcc nvcc] [--cuobjdump PATH]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INCLUDES = ["csrc/include", "csrc", "csrc/cuda_backend", "kernels"]
FILES = {"kernels/gemm_tensor_core.cu": "gemm_wmma_kernel", "kernels/gemm_fp32.cu": "sgemm_tiled_kernel"}


def find_cuobjdump(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    try:
        import nvidia  # namespace package of the NVIDIA wheels

        for base in nvidia.__path__:
            for sub in ("cu13", "cuda_cuobjdump", "cu12"):
                p = os.path.join(base, sub, "bin", "cuobjdump")
                if os.access(p, os.X_OK):
                    return p
    except ImportError:
        pass
    return shutil.which("cuobjdump")


def functions(sass: str) -> dict[str, str]:
    """SASS text per function (cuobjdump -sass prints `Function : <mangled name>` headers)."""
    parts = re.split(r"^\s*Function : (\S+)\s*$", sass, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def check(arch: str, nvcc: str, cuobjdump: str, files=tuple(FILES)) -> list[str]:
    failures = []
    env = dict(os.environ)
    if os.access(os.path.join(os.path.dirname(cuobjdump), "nvdisasm"), os.X_OK):  # the nvidia-cuda-nvdisasm wheel
        env.setdefault("NVDISASM_PATH", os.path.dirname(cuobjdump))
    with tempfile.TemporaryDirectory() as tmp:
        for src in files:
            kernel = FILES[src]
            obj = os.path.join(tmp, os.path.basename(src) + ".o")
            cmd = [nvcc, "-c", src, "-o", obj, "-std=c++17", "--expt-relaxed-constexpr",
                   f"-gencode=arch=compute_{arch},code=sm_{arch}"] + [f"-I{i}" for i in INCLUDES]
            subprocess.run(cmd, cwd=ROOT, check=True)
            r = subprocess.run([cuobjdump, "-sass", obj], capture_output=True, text=True, env=env)
            if r.returncode != 0:
                raise RuntimeError(f"{cuobjdump} -sass {obj} failed ({r.returncode}): {r.stderr.strip()}")
            sass = r.stdout
            found = {name: body for name, body in functions(sass).items() if kernel in name}
            if not found:
                failures.append(f"{src}: no {kernel} instance in the SASS")
            for name, body in found.items():
                has = {op: re.search(rf"\b{op}\b", body) is not None for op in ("HMMA", "FFMA", "LDGSTS")}
                want = ({"HMMA": True, "LDGSTS": True} if kernel == "gemm_wmma_kernel"
                        else {"FFMA": True, "LDGSTS": True, "HMMA": False})
                for op, expected in want.items():
                    if has[op] != expected:
                        failures.append(f"{src}: {name}: {op} {'missing' if expected else 'present'}")
            print(f"{src}: {len(found)} {kernel} instances checked for sm_{arch}")
    return failures


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="80")
    ap.add_argument("--nvcc", default=shutil.which("nvcc") or "nvcc")
    ap.add_argument("--cuobjdump", default=None)
    args = ap.parse_args(argv)
    cuobjdump = find_cuobjdump(args.cuobjdump)
    if cuobjdump is None or shutil.which(args.nvcc) is None:
        print("sass_check: nvcc or cuobjdump not found (pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)", file=sys.stderr)
        return 2
    failures = check(args.arch, args.nvcc, cuobjdump)
    for f in failures:
        print("FAIL", f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
