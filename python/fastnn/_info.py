"""fastnn.info(): what this build is and what it runs on."""
from __future__ import annotations

import os
import platform

from . import _C, cuda


class BuildInfo(dict):
    """A dict that prints as an aligned two-column table."""

    def __str__(self) -> str:
        w = max(len(k) for k in self)
        return "\n".join(f"{k:<{w}}  {v}" for k, v in self.items())


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def info() -> BuildInfo:
    """Version, build mode, CUDA architectures, SIMD level, threads, GPU visibility."""
    b = _C.build_info
    d = BuildInfo()
    d["version"] = b["version"]
    d["build mode"] = b["mode"]
    d["cuda architectures"] = ("sm_" + ", sm_".join(b["cuda_architectures"].split(","))
                               if b["cuda_architectures"] else "none (no nvcc at build time)")
    d["simd level"] = f"{_C.get_simd_level()} (cpu supports {_C.max_simd_level()}" + (
        f"; FASTNN_SIMD={os.environ['FASTNN_SIMD']})" if os.environ.get("FASTNN_SIMD") else ")")
    d["threads"] = _C.get_num_threads()
    d["cpu"] = _cpu_model()
    d["compiler"] = b["compiler"]
    if cuda.is_available():
        d["cuda device"] = f"{cuda.backend_name()}: {cuda.get_device_name(0)}"
        d["gpu visible"] = "no (CPU emulator of CUDA)" if cuda.is_emulated() else "yes"
    else:
        d["cuda device"] = "unavailable"
        d["gpu visible"] = "no"
        d["why"] = cuda.why_unavailable()
    return d
