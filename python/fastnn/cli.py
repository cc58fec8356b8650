"""The `fastnn` command: `fastnn info`, `fastnn bench ...`."""
from __future__ import annotations

import argparse
import os
import sys


# Contenders alternate in one process on few cores, so a library whose worker threads keep
# spinning after a call (OpenBLAS: ~0.1 s by default; libgomp: GOMP_SPINCOUNT) steals the
# cores from the next contender. Park idle workers quickly, for every library alike; this
# changes no kernel, only what threads do between calls. Both variables are read when the
# libraries load, hence the re-exec. Set either one yourself to keep your value.
_BENCH_ENV = {"OPENBLAS_THREAD_TIMEOUT": "4", "GOMP_SPINCOUNT": "20000"}


def _quiet_idle_threads(argv) -> None:
    missing = {k: v for k, v in _BENCH_ENV.items() if k not in os.environ}
    if not missing or os.environ.get("FASTNN_BENCH_REEXEC") == "1":
        return
    env = dict(os.environ, FASTNN_BENCH_REEXEC="1", **missing)
    try:
        os.execve(sys.executable, [sys.executable, "-m", "fastnn", *argv], env)
    except OSError:
        pass  # benchmark anyway, with the libraries' default spinning


def main(argv=None) -> int:
    from_command_line = argv is None  # only then may `bench` re-execute the process
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="fastnn", description="fastnn: hand-written CPU/CUDA kernels.")
    parser.add_argument("--cmake-prefix-path", action="store_true",
                        help="print the CMAKE_PREFIX_PATH entry for find_package(fastnn CONFIG) and exit")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("info", help="version, build mode, SIMD level, threads, GPU visibility")
    sub.add_parser("bench", help="benchmark the kernels against NumPy / PyTorch (fastnn bench --help)",
                   add_help=False)
    if argv and argv[0] == "bench":
        if from_command_line:
            _quiet_idle_threads(argv)
        from .bench import main as bench_main
        return bench_main(argv[1:])
    args = parser.parse_args(argv)
    if args.cmake_prefix_path:
        from ._sdk import cmake_prefix_path
        print(cmake_prefix_path())
        return 0
    if args.command == "info":
        import fastnn
        print(fastnn.info())
        return 0
    parser.print_help()
    return 0 if not argv else 2
