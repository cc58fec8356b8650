"""Regenerate bench/RESULTS.md from the JSON written by `fastnn bench --json FILE`.

    fastnn bench all --numpy-best --json bench/results.json --plot bench/results.png
    python bench/make_results.py bench/results.json [-o bench/RESULTS.md]

The JSON is validated against fastnn/bench/schema.json first. The page states the date, the
exact command, the machine, its measured limits, and every case with fastnn's median
[min-max], each peer as shipped and at its best, the speedup over the peer at its best
(a same-process ratio), the rate and the fraction of the machine's limit.
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def _ms(x):
    if x is None:
        return "–"
    return f"{x:.3g}" if x < 10 else f"{x:.1f}" if x < 1000 else f"{x:.0f}"


def render(doc, notes=()) -> str:
    m = doc["machine"]
    lines = ["# fastnn benchmark results", ""]
    for n in notes:
        lines += [f"> {n}", ""]
    if doc["size"] != "full":
        lines += [f"> **This is a `{doc['size']}` run** (small shapes, few repeats) made to exercise the tool; "
                  "it is not the reference measurement. The reference is made with "
                  "`fastnn bench all --numpy-best --json bench/results.json` then "
                  "`python bench/make_results.py bench/results.json`.", ""]
    lines += [f"- date: {doc['date']}",
              f"- command: `{doc['command']}`",
              f"- machine: {m['cpu_model']}, {m.get('logical_cpus')} logical CPUs, SIMD level {m['simd_level']}, "
              f"{m['threads']} thread(s), device {m['device']}",
              "- versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v),
              "- BLAS: " + (", ".join(f"{b.get('internal_api')} {b.get('version')} ({b.get('architecture')}, "
                                      f"{b.get('num_threads')} threads)" for b in m["blas"]) or "unknown"),
              "- environment: " + ", ".join(f"{k}={'unset' if v is None else v}" for k, v in m["env"].items()),
              f"- method: {doc['settings']['repeats']} repeats after a warm-up, contenders alternating in one "
              "process; median [min–max]; every result checked against a float64 reference before timing.", ""]
    if doc["limits"]:
        lines += ["## Limits of this machine (own probes)", "", "| threads | FP32 FMA peak | STREAM triad | Adam pattern |",
                  "|---|---|---|---|"]
        for t, lim in sorted(doc["limits"].items(), key=lambda kv: int(kv[0])):
            lines.append(f"| {t} | {lim['fma_gflops']:.0f} GFLOP/s | {lim['triad_gbs']:.1f} GB/s | "
                         f"{lim['adam_gbs']:.1f} GB/s |")
        lines.append("")
    peers = doc["settings"]["baselines"]
    suites = []
    for c in doc["cases"]:
        if c["suite"] not in suites:
            suites.append(c["suite"])
    lines += ["Columns: *peer* = as shipped (fresh outputs per call); *peer\\** = its fastest variant (as shipped, preallocated "
              "`out=`, a child process with glibc malloc keeping freed memory, or OpenBLAS's fastest "
              "kernels); ×peer = speedup of fastnn over the peer at its best (> 1: fastnn faster), from "
              "same-process ratios.", ""]
    for s in suites:
        cases = [c for c in doc["cases"] if c["suite"] == s]
        head = ["op", "shape", "thr", "fastnn ms"]
        for p in peers:
            head += [f"{p} ms", f"{p}* ms", f"×{p}"]
        head += ["rate", "% of limit"]
        lines += [f"## {s}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for c in cases:
            row = [c["op"], c["shape"], str(c["threads"])]
            if c["status"] != "ok":
                row.append(f"**{c['status'].upper()}**: {c['error']}")
                row += [""] * (len(head) - len(row))
                lines.append("| " + " | ".join(row) + " |")
                continue
            f = next(r for r in c["results"] if r["peer"] == "fastnn" and r["process"] == "main")
            row.append(f"{_ms(f['median_ms'])} [{_ms(f['min_ms'])}–{_ms(f['max_ms'])}]")
            for p in peers:
                sh = [r["median_ms"] for r in c["results"] if r["peer"] == p and not r["best"]]
                allv = [r for r in c["results"] if r["peer"] == p]
                row.append(_ms(min(sh)) if sh else "–")
                if allv:
                    fastest = min(allv, key=lambda r: r["median_ms"])
                    row.append(f"{_ms(fastest['median_ms'])} ({fastest['variant']})")
                else:
                    row.append("–")
                sp = c["speedup"].get(p)
                row.append(f"{sp:.2f}" if sp is not None else "–")
            if c.get("samples_per_s"):
                row.append(f"{c['samples_per_s']:.0f} samples/s")
            else:
                row.append(f"{_ms(c.get('rate'))} {c['unit']}" if c.get("rate") else "–")
            row.append(f"{100 * c['fraction_of_limit']:.0f}%" if c.get("fraction_of_limit") else "–")
            if c.get("fraction_of_same_window_limit"):
                row[-1] += f" ({100 * c['fraction_of_same_window_limit']:.0f}% of {c['limit_same_window']:.1f} GB/s)"
            lines.append("| " + " | ".join(row) + " |")
        if any(c.get("fraction_of_same_window_limit") for c in cases):
            lines += ["", "% of limit: of the cached probe (best ever measured); in parentheses: of the same probe loop "
                      "timed on the case's own buffers, alternating with fastnn (same time window)."]
        mem = [(c, r) for c in cases for r in c["results"] if r.get("peak_extra_bytes") is not None]
        if mem:
            lines += ["", "Peak extra memory of one call: " + "; ".join(
                f"{c['op']} {c['shape']} {r['name']} {r['peak_extra_bytes'] / 2**20:.1f} MiB" for c, r in mem) + "."]
        notes = sorted({c["note"] for c in cases if c.get("note")})
        for n in notes:
            lines += ["", f"Note: {n}"]
        lines.append("")
    if doc["unavailable"]:
        lines += ["## Not available in this build", ""] + [f"- {u['suite']}: {u['missing']}" for u in doc["unavailable"]]
        lines.append("")
    if doc["notes"]:
        lines += ["## Notes", ""] + [f"- {n}" for n in doc["notes"]] + [""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("json_file")
    p.add_argument("--note", action="append", default=[],
                   help="a paragraph to print under the title (e.g. the conditions of the run)")
    p.add_argument("-o", "--output", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md"))
    args = p.parse_args(argv)
    with open(args.json_file) as f:
        doc = json.load(f)
    from fastnn.bench.schema import SchemaError, validate

    try:
        validate(doc)
    except SchemaError as e:
        print(f"make_results: {args.json_file} does not match the schema: {e}", file=sys.stderr)
        return 1
    with open(args.output, "w") as f:
        f.write(render(doc, args.note))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
