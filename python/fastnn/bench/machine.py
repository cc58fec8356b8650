"""What the benchmark runs on: machine description and its measured limits.

The limits (peak FP32 FMA rate, memory bandwidth for a STREAM triad and for Adam's access
pattern) come from the native probes in fastnn._C. They take seconds (the bandwidth probes
touch ~1 GiB, and fresh memory is slow on this VM), so each is measured once and cached in
a JSON file keyed by CPU model, SIMD level and thread count:
``$FASTNN_BENCH_CACHE`` or ``$XDG_CACHE_HOME/fastnn/probes.json`` (``~/.cache/fastnn/probes.json``).
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time

# Environment variables that change what the peers run; reported with every result.
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
            "MKL_NUM_THREADS", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")

# Arrays of the bandwidth probes: 64M floats = 256 MiB each, well past the L3 (32 MiB on the Zen 5 machine).
PROBE_FLOATS = 64 * 1024 * 1024


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_info(threads_limited_to=None) -> list:
    """The BLAS libraries loaded in this process (threadpoolctl, when installed)."""
    try:
        import threadpoolctl
    except ImportError:
        return []
    out = []
    for d in threadpoolctl.threadpool_info():
        if d.get("user_api") != "blas":
            continue
        out.append({k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads",
                                          "threading_layer", "filepath")})
    return out


def library_versions() -> dict:
    import numpy as np

    import fastnn

    v = {"fastnn": fastnn.__version__, "numpy": np.__version__, "python": platform.python_version()}
    torch = optional_torch()
    v["torch"] = torch.__version__ if torch is not None else None
    from importlib import metadata

    for name in ("threadpoolctl", "matplotlib", "rich", "jsonschema"):
        try:
            v[name] = metadata.version(name)
        except Exception:  # noqa: BLE001 - optional extras: absent or broken is the same to us
            v[name] = None
    return v


_torch = False


def optional_torch():
    """torch if importable, else None (imported once)."""
    global _torch
    if _torch is False:
        try:
            import torch  # noqa: F401
            _torch = torch
        except Exception:  # noqa: BLE001
            _torch = None
    return _torch


def machine_info(threads: int, device: str) -> dict:
    import fastnn

    info = {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "simd_level": fastnn.get_simd_level(),
        "max_simd_level": fastnn._C.max_simd_level(),
        "threads": threads,
        "device": device,
        "build_mode": fastnn._C.build_info.get("mode"),
        "compiler": fastnn._C.build_info.get("compiler"),
        "env": {k: os.environ.get(k) for k in BLAS_ENV},
        "blas": blas_info(),
        "versions": library_versions(),
    }
    if device == "cuda":
        info["cuda_device"] = fastnn.cuda.get_device_name(0)
        info["cuda_emulated"] = fastnn.cuda.is_emulated()
    return info


# ---- probes ----------------------------------------------------------------------------
def cache_path() -> str:
    p = os.environ.get("FASTNN_BENCH_CACHE")
    if p:
        return p
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fastnn", "probes.json")


def _load_cache() -> dict:
    try:
        with open(cache_path()) as f:
            d = json.load(f)
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_cache(d: dict) -> None:
    path = cache_path()
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(d, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError as e:  # a read-only home must not stop a benchmark
        print(f"fastnn bench: could not write the probe cache {path}: {e}", file=sys.stderr)


def probe_key(threads: int, simd: str | None = None, tiny: bool = False) -> str:
    import fastnn

    simd = simd or fastnn.get_simd_level()
    return f"{cpu_model()}|{simd}|{threads}" + ("|tiny" if tiny else "")


def limits(threads: int, *, refresh: bool = False, tiny: bool = False, log=None) -> dict:
    """{'fma_gflops', 'triad_gbs', 'adam_gbs', 'measured_at', 'cached'} for this thread count
    at the current SIMD level; measured on first use, then read from the cache."""
    import fastnn

    key = probe_key(threads, tiny=tiny)
    cache = _load_cache()
    if not refresh and key in cache and all(k in cache[key] for k in ("fma_gflops", "triad_gbs", "adam_gbs")):
        return dict(cache[key], cached=True, key=key)
    if log:
        log(f"probing this machine's limits for {threads} thread(s) at SIMD level {fastnn.get_simd_level()} "
            "(once; cached in " + cache_path() + ")")
    n = 1 << 20 if tiny else PROBE_FLOATS
    seconds = 0.02 if tiny else 0.3
    repeats = 2 if tiny else 5
    d = {
        # best of 3: other tenants can only slow a probe down, never speed it up
        "fma_gflops": max(float(fastnn._C._probe_fma_gflops(threads, seconds)) for _ in range(3)),
        "triad_gbs": float(fastnn._C._probe_bandwidth_gbs("triad", n, threads, repeats)),
        "adam_gbs": float(fastnn._C._probe_bandwidth_gbs("adam", n, threads, repeats)),
        "probe_floats": n,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    cache = _load_cache()
    old = cache.get(key)
    if isinstance(old, dict):
        # A busy machine only ever lowers a probe: keep the best value ever measured.
        for k in ("fma_gflops", "triad_gbs", "adam_gbs"):
            if isinstance(old.get(k), (int, float)) and old[k] > d[k]:
                d[k] = float(old[k])
    cache[key] = d
    _save_cache(cache)
    return dict(d, cached=False, key=key)


def have_probes() -> bool:
    import fastnn

    return hasattr(fastnn._C, "_probe_fma_gflops") and hasattr(fastnn._C, "_probe_bandwidth_gbs")
