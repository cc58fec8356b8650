"""The C++ library as another project sees it: examples/cpp is configured with
find_package(fastnn CONFIG REQUIRED) against this fastnn's package (the prefix printed by
`python -m fastnn --cmake-prefix-path`), built, and run; it checks its own results against
double-precision loops and exits non-zero on a mismatch. Also: fastnn_c.h compiles as C."""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import fastnn

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "cpp"
pytestmark = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")


def run(cmd, **kw):
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{res.stdout}\n{res.stderr}"
    return res.stdout


@pytest.fixture(scope="module")
def prefix():
    out = run([sys.executable, "-m", "fastnn", "--cmake-prefix-path"]).strip()
    assert out == fastnn.cmake_prefix_path()
    config = pathlib.Path(out, "lib", "cmake", "fastnn", "fastnnConfig.cmake")
    assert config.exists(), (f"{config} is missing: this fastnn was built without its C++ package "
                             "(a developer build makes it with the `fastnn_sdk` target)")
    return out


@pytest.mark.skipif(not EXAMPLE.exists(), reason="examples/cpp is not next to the tests")
def test_example_project_builds_and_runs(prefix, tmp_path):
    build = tmp_path / "build"
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    env = {k: v for k, v in os.environ.items() if k != "CMAKE_PREFIX_PATH"}
    run(["cmake", "-S", str(EXAMPLE), "-B", str(build), *gen, f"-DCMAKE_PREFIX_PATH={prefix}",
         "-DCMAKE_BUILD_TYPE=Release"], env=env)
    cache = (build / "CMakeCache.txt").read_text()
    assert f"fastnn_DIR:PATH={prefix}/lib/cmake/fastnn" in cache
    run(["cmake", "--build", str(build)], env=env)
    out = run([str(build / "fastnn_example")])
    assert f"fastnn {fastnn.__version__} (C ABI v1)" in out
    for line in ("fastnn::cpu::gemm", "fastnn_gemm (C ABI)", "fastnn::cpu::conv2d_forward",
                 "fastnn::cpu::attention_forward"):
        assert line in out, out
    assert "argument 'm': expected a size >= 0, got -1" in out
    assert out.rstrip().endswith("fastnn example: OK"), out
    # A build with nvcc also ships libfastnn_cuda.so (fastnn/cuda.h); the example then builds a
    # second program on it, which checks fastnn::cuda::gemm on a GPU or, without one, that the
    # call fails with fastnn::Error instead of crashing.
    if pathlib.Path(prefix, "lib", "libfastnn_cuda.so").exists():
        out = run([str(build / "fastnn_cuda_example")])
        assert out.rstrip().endswith("fastnn CUDA example: OK"), out
    else:
        assert not (build / "fastnn_cuda_example").exists()


def test_version_mismatch_is_refused(prefix, tmp_path):
    (tmp_path / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.16)\nproject(p LANGUAGES CXX)\nfind_package(fastnn 99.0 CONFIG REQUIRED)\n")
    res = subprocess.run(["cmake", "-S", str(tmp_path), "-B", str(tmp_path / "b"), f"-DCMAKE_PREFIX_PATH={prefix}"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode != 0 and "fastnn" in res.stderr


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_c_header_is_c(prefix, tmp_path):
    src = tmp_path / "use.c"
    src.write_text('#include <fastnn/fastnn_c.h>\n#include <stdio.h>\n'
                   'int main(void) { float a = 2, b = 3, c = 0;\n'
                   '  if (fastnn_gemm(1, 1, 1, 1.0f, &a, 1, 1, &b, 1, 1, 0.0f, &c, 1, 1, 0, FASTNN_ACTIVATION_NONE)'
                   ' != FASTNN_OK) return 2;\n'
                   '  if (fastnn_gemm(1, 1, 1, 1.0f, 0, 1, 1, &b, 1, 1, 0.0f, &c, 1, 1, 0, 0) != FASTNN_ERROR_TYPE)'
                   ' return 3;\n  printf("%g %s\\n", c, fastnn_last_error()); return c == 6.0f ? 0 : 1; }\n')
    libdir = pathlib.Path(prefix, "lib")
    exe = tmp_path / "use"
    run(["cc", "-std=c99", "-Wall", "-Werror", f"-I{prefix}/include", str(src), f"-L{libdir}", "-lfastnn",
         f"-Wl,-rpath,{libdir}", "-o", str(exe)])
    out = run([str(exe)])
    assert out.startswith("6 fastnn_gemm: argument 'a'"), out
