"""Where the C++ library, its headers, the C ABI and the CMake package live inside the
installed package (the layout `pip install .` and a developer build both produce):

    fastnn/include/fastnn/fastnn.h, fastnn_c.h, ...   headers
    fastnn/lib/libfastnn.so                            CPU kernels + core (C++ API and C ABI)
    fastnn/lib/cmake/fastnn/fastnnConfig.cmake         find_package(fastnn CONFIG)

``cmake -DCMAKE_PREFIX_PATH="$(python -m fastnn --cmake-prefix-path)"`` makes
``find_package(fastnn CONFIG REQUIRED)`` find it (as pybind11's and torch's helpers do).
"""
from __future__ import annotations

import os

__all__ = ["cmake_prefix_path", "include_dir", "library_path"]

_ROOT = os.path.dirname(os.path.abspath(__file__))


def cmake_prefix_path() -> str:
    """The prefix to put on CMAKE_PREFIX_PATH (the package directory: lib/cmake/fastnn is below it)."""
    return _ROOT


def include_dir() -> str:
    """The directory holding ``fastnn/fastnn.h`` and ``fastnn/fastnn_c.h``."""
    return os.path.join(_ROOT, "include")


def library_path() -> str:
    """Path of the shared library (C++ API and the C ABI of fastnn_c.h; loadable with ctypes).
    Raises FileNotFoundError when this build did not produce it."""
    path = os.path.join(_ROOT, "lib", "libfastnn.so")
    if not os.path.exists(path):
        raise FileNotFoundError(f"fastnn: the C/C++ library is not in this build ({path} is missing); "
                                "a developer build makes it with `cmake --build <dir> --target fastnn_sdk`")
    return path
