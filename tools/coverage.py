#!/usr/bin/env python3
"""Line coverage of fastnn's kernels, measured with gcov.

Builds the CPU kernels and the emulated CUDA module with ``--coverage`` (cmake
-DFASTNN_COVERAGE=ON, cmake/reliability.cmake) in its own build directory, runs the tests
against that build, runs gcov on every object and reports the fraction of executable lines
executed:

* ``kernels/`` (the CUDA kernels, as compiled into fastnn._cuda_emu and run by the emulator;
  kernels/cuda_compat.cuh and the emulator self-tests in kernels/testing/ are not counted);
* ``csrc/cpu/kernels/`` once per SIMD level: every file there is compiled three times (objects
  of fastnn_cpu_generic / _avx2 / _avx512) and each object is its own figure, because code under
  ``#if FASTNN_ISA_LEVEL == ...`` exists in one object only. An ISA the machine lacks reads 0.

Every kernel file must have executed lines (> 0%); the goal is >= 95% for each group. The script
prints a per-file table, the totals and the unexecuted line ranges (``--uncovered FILE`` writes
them all), and ``--json FILE`` the figures.

    python tools/coverage.py                      # build-coverage/, whole test suite
    python tools/coverage.py -- tests/test_gemm.py tests/test_cuda_optim.py
    python tools/coverage.py --no-build --no-tests    # report the counters already collected
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ISAS = ("generic", "avx2", "avx512")


def sh(cmd, **kw):
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run(cmd, check=True, **kw)


def build(bdir: Path, jobs: int):
    env = dict(os.environ)
    # ccache would hand back .gcno files recorded in another directory (CCACHE_BASEDIR rewrites
    # paths): coverage objects are always compiled here.
    env["CCACHE_DISABLE"] = "1"
    sh(["cmake", "-S", ROOT, "-B", bdir, "-G", "Ninja", "-DFASTNN_BUILD_MODE=cpu", "-DFASTNN_COVERAGE=ON"],
       env=env, stdout=subprocess.DEVNULL)
    sh(["cmake", "--build", bdir, f"-j{jobs}"], env=env)


def run_tests(bdir: Path, pytest_args):
    for f in bdir.rglob("*.gcda"):  # start from zero
        f.unlink()
    env = dict(os.environ, PYTHONPATH=str(bdir / "python"), FASTNN_CUDA_EMULATE="1")
    t0 = time.time()
    rc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_args],
                        env=env, cwd=ROOT).returncode
    print(f"coverage.py: tests took {time.time() - t0:.0f} s (pytest exit code {rc})", flush=True)
    return rc


def gcov_lines(gcno: Path):
    """{source path (absolute): {line: count}} for one object, from gcov's JSON output."""
    out = subprocess.run(["gcov", "--json-format", "--stdout", str(gcno)], cwd=gcno.parent,
                         capture_output=True, text=True)
    res = defaultdict(dict)
    for line in out.stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        doc = json.loads(line)
        cwd = doc.get("current_working_directory", str(gcno.parent))
        for f in doc.get("files", []):
            path = os.path.realpath(os.path.join(cwd, f["file"]))
            for ln in f.get("lines", []):
                n = ln["line_number"]
                res[path][n] = max(res[path].get(n, 0), int(ln["count"]))
    return res


def group_of(obj: Path, bdir: Path):
    """'cuda' for the emulated module's objects, 'cpu-<isa>' for the ISA objects, else None."""
    rel = str(obj.relative_to(bdir))
    m = re.search(r"fastnn_cpu_(generic|avx2|avx512)\.dir/", rel)
    if m:
        return "cpu-" + m.group(1)
    if "_cuda_emu.dir/" in rel:
        return "cuda"
    return None


def counted(path: str, group: str):
    try:
        rel = Path(path).relative_to(ROOT).as_posix()
    except ValueError:
        return None
    if group == "cuda":
        if re.fullmatch(r"kernels/[^/]+\.(cu|cuh)", rel) and rel != "kernels/cuda_compat.cuh":
            return rel
        return None
    if re.fullmatch(r"csrc/cpu/kernels/[^/]+\.(cpp|h)", rel):
        return rel
    return None


def collect(bdir: Path):
    """{group: {file: {line: count}}} merged over the objects of each group."""
    data = defaultdict(lambda: defaultdict(dict))
    for gcno in sorted(bdir.rglob("*.gcno")):
        group = group_of(gcno, bdir)
        if group is None:
            continue
        for path, lines in gcov_lines(gcno).items():
            rel = counted(path, group)
            if rel is None:
                continue
            dst = data[group][rel]
            for n, c in lines.items():
                dst[n] = max(dst.get(n, 0), c)
    return data


def ranges(nums):
    out, start, prev = [], None, None
    for n in sorted(nums):
        if start is None:
            start = prev = n
        elif n == prev + 1:
            prev = n
        else:
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = n
    if start is not None:
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
    return out


def report(data, uncovered_path=None, json_path=None):
    summary = {"date": datetime.date.today().isoformat(), "groups": {}}
    uncovered_lines = []
    problems = []
    for group in ["cuda"] + [f"cpu-{i}" for i in ISAS]:
        files = data.get(group, {})
        title = "kernels/ (emulated CUDA)" if group == "cuda" else f"csrc/cpu/kernels/ at {group[4:]}"
        tot = hit = 0
        print(f"\n{title}")
        rows = {}
        for rel in sorted(files):
            lines = files[rel]
            n, h = len(lines), sum(1 for c in lines.values() if c > 0)
            if n == 0:
                continue
            tot, hit = tot + n, hit + h
            miss = [ln for ln, c in lines.items() if c == 0]
            rows[rel] = {"lines": n, "executed": h, "percent": round(100.0 * h / n, 1)}
            print(f"  {100.0 * h / n:6.1f}%  {h:5d}/{n:<5d} {rel}")
            if miss:
                uncovered_lines.append(f"[{group}] {rel}: {', '.join(ranges(miss))}")
            if h == 0 and not rel.endswith(".h") and not rel.endswith(".cuh"):
                problems.append(f"{group}: {rel} has no executed line")
        pct = 100.0 * hit / tot if tot else 0.0
        summary["groups"][group] = {"lines": tot, "executed": hit, "percent": round(pct, 1), "files": rows}
        print(f"  {pct:6.1f}%  {hit:5d}/{tot:<5d} TOTAL {title}")
    print("\nLine coverage (" + summary["date"] + "): " + ", ".join(
        f"{g} {v['percent']}%" for g, v in summary["groups"].items()))
    if uncovered_lines:
        print(f"\nUnexecuted lines ({len(uncovered_lines)} files):")
        for u in uncovered_lines:
            print("  " + (u if len(u) < 400 else u[:400] + " ..."))
    if uncovered_path:
        Path(uncovered_path).write_text("\n".join(uncovered_lines) + "\n")
    if json_path:
        Path(json_path).write_text(json.dumps(summary, indent=1) + "\n")
    for p in problems:
        print("coverage.py: " + p)
    return summary, problems


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=str(ROOT / "build-coverage"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--no-tests", action="store_true", help="report the counters already in the build dir")
    ap.add_argument("--uncovered", help="write every unexecuted line range to this file")
    ap.add_argument("--json", help="write the figures to this file")
    ap.add_argument("--fail-under", type=float, default=0.0, help="exit 1 if a group is below this percentage")
    ap.add_argument("pytest_args", nargs="*", default=["tests"])
    args = ap.parse_args(argv)
    bdir = Path(args.build_dir).resolve()
    if not args.no_build:
        build(bdir, args.jobs)
    rc = 0
    if not args.no_tests:
        rc = run_tests(bdir, args.pytest_args or ["tests"])
    summary, problems = report(collect(bdir), args.uncovered, args.json)
    low = [g for g, v in summary["groups"].items() if v["percent"] < args.fail_under]
    if problems or low or rc not in (0, 5):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
