"""The `fastnn` command: `fastnn info`, `fastnn bench ...`."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="fastnn", description="fastnn: hand-written CPU/CUDA kernels.")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("info", help="version, build mode, SIMD level, threads, GPU visibility")
    sub.add_parser("bench", help="benchmark the kernels against NumPy / PyTorch (fastnn bench --help)",
                   add_help=False)
    if argv and argv[0] == "bench":
        from .bench import main as bench_main
        return bench_main(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "info":
        import fastnn
        print(fastnn.info())
        return 0
    parser.print_help()
    return 0 if not argv else 2
