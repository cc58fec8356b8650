#!/usr/bin/env python3
"""Registers / shared memory / spills per CUDA kernel, from `nvcc -Xptxas -v`, into docs/CUDA.md.

Compiles every kernels/*.cu (and kernels/testing/*.cu) once per architecture with the
project's flags (spills are errors), parses ptxas' resource report and rewrites the table
between the markers in docs/CUDA.md. Run through the `cuda_resource_table` CMake target or:
    python tools/cuda_resource_table.py --archs 80,86,89,90
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN = "<!-- resource-table:begin -->"
END = "<!-- resource-table:end -->"

FUNC_RE = re.compile(r"ptxas info\s*: Compiling entry function '([^']+)' for '(sm_\w+)'")
USED_RE = re.compile(r"ptxas info\s*: Used (\d+) registers(.*)")
SPILL_RE = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
SMEM_RE = re.compile(r"(\d+) bytes smem")


def demangle(names):
    try:
        out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, check=True)
        return out.stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return list(names)


def compile_report(nvcc, cu, archs):
    """One nvcc run per file for every architecture (the host side is compiled once)."""
    includes = ["-I", str(ROOT / "kernels"), "-I", str(ROOT / "csrc"), "-I", str(ROOT / "csrc/include"),
                "-I", str(ROOT / "csrc/cuda_backend")]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [nvcc, "-std=c++17", "-O3", "--expt-relaxed-constexpr", "-Xptxas", "-v", "-Xptxas", "-warn-spills",
               "--Werror", "all-warnings", *[f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs], *includes,
               "-c", str(cu), "-o", os.path.join(tmp, "k.o")]
        r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        raise SystemExit(f"nvcc failed on {cu} for sm_{','.join(archs)} (rc {r.returncode})")
    rows, cur = [], None
    for line in r.stderr.splitlines():
        m = FUNC_RE.search(line)
        if m:
            cur = {"kernel": m.group(1), "arch": m.group(2), "stack": 0, "spill_st": 0, "spill_ld": 0,
                   "regs": 0, "smem": 0}
            rows.append(cur)
            continue
        if cur is None:
            continue
        m = SPILL_RE.search(line)
        if m:
            cur["stack"], cur["spill_st"], cur["spill_ld"] = map(int, m.groups())
        m = USED_RE.search(line)
        if m:
            cur["regs"] = int(m.group(1))
            s = SMEM_RE.search(m.group(2))
            cur["smem"] = int(s.group(1)) if s else 0
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nvcc", default="nvcc")
    ap.add_argument("--archs", default="80,86,89,90")
    ap.add_argument("--out", default=str(ROOT / "docs" / "CUDA.md"))
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="files compiled at once")
    ap.add_argument("--only", nargs="+", metavar="FILE",
                    help="re-measure only these .cu files and keep the other files' rows of the existing table "
                         "(a full run takes ~15 min on 2 cores)")
    args = ap.parse_args()
    archs = [a.strip() for a in re.split(r"[;,]", args.archs) if a.strip()]
    sources = sorted((ROOT / "kernels").glob("*.cu")) + sorted((ROOT / "kernels" / "testing").glob("*.cu"))
    if args.only:
        wanted = {Path(f).resolve() for f in args.only}
        unknown = wanted - {cu.resolve() for cu in sources}
        if unknown:
            ap.error(f"--only: not a kernels/*.cu file: {', '.join(sorted(map(str, unknown)))}")
        sources = [cu for cu in sources if cu.resolve() in wanted]
    rows = []
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        reports = list(pool.map(lambda cu: compile_report(args.nvcc, cu, archs), sources))
    for cu, rep in zip(sources, reports):
        for r in rep:
            r["file"] = str(cu.relative_to(ROOT))
            rows.append(r)
    names = demangle([r["kernel"] for r in rows])
    # One row per kernel: registers per architecture side by side.
    table = {}
    for r, name in zip(rows, names):
        short = name.replace("(anonymous namespace)::", "").replace("fastnn::cuda_kernels::", "").replace(
            "fastnn::cuda_selftest::", "").replace("fastnn::", "")
        if short.startswith("void "):
            short = short[5:]
        depth, cut = 0, len(short)
        for i in range(len(short) - 1, -1, -1):  # drop the trailing parameter list
            if short[i] == ")":
                depth += 1
            elif short[i] == "(":
                depth -= 1
                if depth == 0:
                    cut = i
                    break
        short = short[:cut]
        key = (r["file"], short)
        e = table.setdefault(key, {"regs": {}, "smem": 0, "stack": 0, "spill": 0})
        e["regs"][r["arch"]] = r["regs"]
        e["smem"] = max(e["smem"], r["smem"])
        e["stack"] = max(e["stack"], r["stack"])
        e["spill"] = max(e["spill"], r["spill_st"] + r["spill_ld"])
    arch_names = "/".join(f"sm_{a}" for a in archs)
    lines = [BEGIN, "", f"Generated by `tools/cuda_resource_table.py --archs {','.join(archs)}` "
             "(nvcc -O3 -Xptxas -v -Xptxas -warn-spills --Werror all-warnings: a spill fails the build).", "",
             f"| file | kernel | registers ({arch_names}) | static smem (B) | stack (B) | spill bytes |",
             "|---|---|---|---:|---:|---:|"]
    by_file = {}
    for (file, kernel), e in table.items():
        regs = "/".join(str(e["regs"].get(f"sm_{a}", "-")) for a in archs)
        by_file.setdefault(file, []).append(
            f"| {file} | `{kernel}` | {regs} | {e['smem']} | {e['stack']} | {e['spill']} |")
    out = Path(args.out)
    text = out.read_text() if out.exists() else "# CUDA kernels\n\n"
    if args.only and BEGIN in text and END in text:  # keep the rows of the files not re-measured
        for row in text[text.index(BEGIN):text.index(END)].splitlines():
            cells = [c.strip() for c in row.strip("|").split("|")]
            if row.startswith("| kernels/") and cells[0] not in by_file:
                by_file.setdefault("~" + cells[0], []).append(row)
        by_file = {f.lstrip("~"): rows_ for f, rows_ in sorted(by_file.items(), key=lambda kv: kv[0].lstrip("~"))}
    for file_rows in by_file.values():
        lines += file_rows
    lines += ["", END]
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + "\n".join(lines) + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n## Resource usage per kernel\n\n" + "\n".join(lines) + "\n"
    out.write_text(text)
    print(f"wrote {len(rows)} rows to {out}")


if __name__ == "__main__":
    main()
