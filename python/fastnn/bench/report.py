"""Terminal output of `fastnn bench` (rich when installed and on a terminal, else plain text),
the progress line, and the --plot chart (matplotlib, optional)."""
from __future__ import annotations

import os
import shutil
import sys

from . import core


def _rich_console(out):
    if not out.isatty() or os.environ.get("FASTNN_BENCH_PLAIN"):
        return None
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(file=out)


def loud(msg):
    print(f"\n*** fastnn bench: {msg}", file=sys.stderr, flush=True)


class Progress:
    """One self-overwriting status line on stderr when it is a terminal; silent otherwise."""

    def __init__(self, enabled):
        self.enabled = enabled
        self.done = 0
        self.width = 0

    def update(self, text):
        if not self.enabled:
            return
        cols = shutil.get_terminal_size((100, 20)).columns - 1
        line = f"[{self.done} done] {text}"[:cols]
        sys.stderr.write("\r" + line + " " * max(0, self.width - len(line)))
        sys.stderr.flush()
        self.width = len(line)

    def row_done(self, rec):
        self.done += 1
        self.update(f"{rec['op']} {rec['shape']}: {rec['status']}")

    def message(self, msg):
        if self.enabled:
            self.clear()
            print(msg, file=sys.stderr, flush=True)

    def clear(self):
        if self.enabled and self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()
            self.width = 0

    def close(self):
        self.clear()


def header(run, out):
    import numpy as np

    from . import machine

    fnn = run.fnn
    env = {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_THREAD_TIMEOUT",
                                          "GOMP_SPINCOUNT")}
    print(f"fastnn {fnn.__version__} bench: {machine.cpu_model()}, SIMD {fnn.get_simd_level()}, "
          f"{run.threads} thread(s), device {run.args.device}, sizes {run.size}, {run.repeats} repeats", file=out)
    blas = machine.blas_info()
    b = ", ".join(f"{d['internal_api']} {d['version']} ({d['architecture']}, {d['num_threads']} threads)"
                  for d in blas) or "unknown (threadpoolctl not installed)"
    envs = " ".join(f"{k}={'unset' if v is None else v}" for k, v in env.items())
    print(f"peers: numpy {np.__version__} on {b}; env {envs}", file=out)
    if "torch" in run.baselines:
        t = machine.optional_torch()
        if t is not None:
            print(f"       torch {t.__version__} (threads matched to fastnn's)", file=out)
    print("method: warm-up, then contenders alternately (A B A B ...), median [min-max]; results checked "
          "before timing. name[out=] = preallocated outputs; [malloc-tuned] = child process with "
          "MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2^36; [blas-best] = child with OPENBLAS_CORETYPE/"
          "OPENBLAS_L2_SIZE unset. Speedup = peer at its best / fastnn, measured in the same process.",
          file=out)


def print_limits(lim, threads, out):
    src = "cached" if lim.get("cached") else "measured now"
    print(f"limits ({threads} thread(s), {src}, {lim.get('measured_at', '?')}): FP32 FMA peak "
          f"{lim['fma_gflops']:.0f} GFLOP/s; STREAM triad {lim['triad_gbs']:.1f} GB/s; "
          f"Adam pattern {lim['adam_gbs']:.1f} GB/s", file=out)


def suite_title(name, out):
    print(f"\n== {name} ==", file=out, flush=True)


def _ms(x):
    if x is None:
        return "-"
    return f"{x:.3g}" if x < 10 else f"{x:.1f}" if x < 1000 else f"{x:.0f}"


def _peer_cols(recs, run):
    """Per baseline: shipped median, best median (over in-process and child variants)."""
    return [p for p in run.baselines if any(r2["peer"] == p for r in recs for r2 in r.get("results", []))]


def rows(recs, run):
    peers = _peer_cols(recs, run)
    head = ["op", "shape", "thr", "fastnn ms [min-max]"]
    for p in peers:
        head += [f"{p} ms", f"{p}* ms", f"x{p}*"]
    head += ["rate", "% limit"]
    body = []
    for r in recs:
        row = [r["op"], r["shape"], str(r.get("threads", ""))]
        if r["status"] != "ok":
            body.append((row + [r["status"].upper() + ": " + (r.get("error") or "")[:200]], r["status"]))
            continue
        f = next(x for x in r["results"] if x["peer"] == "fastnn" and x["process"] == "main")
        row.append(f"{_ms(f['median_ms'])} [{_ms(f['min_ms'])}-{_ms(f['max_ms'])}]")
        for p in peers:
            shipped = [x for x in r["results"] if x["peer"] == p and not x["best"]]
            best = [x for x in r["results"] if x["peer"] == p]  # its fastest variant, whatever it is
            row.append(_ms(min(x["median_ms"] for x in shipped)) if shipped else "-")
            row.append(_ms(min(x["median_ms"] for x in best)) if best else "-")
            s = r["speedup"].get(p)
            row.append(f"{s:.2f}" if s is not None else "-")
        unit = r["unit"].split("/")[0].replace("GFLOP", "GF").replace("GB", "GB")
        if r["unit"] == "us/call":
            row.append(f"{_ms(r['rate'])} us/op" if r.get("rate") else "-")
        else:
            row.append(f"{_ms(r['rate'])} {unit}/s" if r.get("rate") else "-")
        row.append(f"{100 * r['fraction_of_limit']:.0f}%" if r.get("fraction_of_limit") else "-")
        if r.get("fraction_of_same_window_limit"):
            row[-1] += f" ({100 * r['fraction_of_same_window_limit']:.0f}%)"
        if r.get("samples_per_s"):
            row[-2] = f"{r['samples_per_s']:.0f} samples/s"
        body.append((row, "ok"))
    return head, body


def table(recs, run, out):
    if not recs:
        return
    head, body = rows(recs, run)
    console = _rich_console(out)
    if console is not None:
        from rich.table import Table

        t = Table(show_lines=False)
        for h in head:
            t.add_column(h, justify="left" if h in ("op", "shape") else "right")
        for row, status in body:
            if status != "ok":
                row = row[:3] + [f"[bold red]{row[3]}[/]"] + [""] * (len(head) - 4)
            t.add_row(*row)
        console.print(t)
    else:
        widths = [len(h) for h in head]
        for row, status in body:
            if status == "ok":
                widths = [max(w, len(c)) for w, c in zip(widths, row)]
        fmt = lambda row: "  ".join(c.ljust(w) if i < 2 else c.rjust(w)  # noqa: E731
                                    for i, (c, w) in enumerate(zip(row, widths)))
        print(fmt(head), file=out)
        for row, status in body:
            print(fmt(row) if status == "ok" else "  ".join(row), file=out)
    peers = _peer_cols(recs, run)
    if peers:
        print("  * = the peer at its best (fastest variant); x = speedup of fastnn over it "
              "(> 1: fastnn faster); rate = fastnn's", file=out)
    steady = [r for r in recs if (r.get("calls_per_sample") or 1) > 1]
    for r in steady:
        print(f"  {r['op']} {r['shape']}: each sample is the mean of {r['calls_per_sample']} back-to-back calls "
              f"after {core.lead_in_calls(r['calls_per_sample'])} untimed ones, every contender alike (steady state)",
              file=out)
    probed = [r for r in recs if r.get("limit_same_window")]
    if probed:
        print("  % limit: of the cached probe (best ever measured here); (in parentheses): of the same probe "
              "loop timed on the case's own buffers, alternating with fastnn:", file=out)
        for r in probed:
            cached = f"; cached probe {r['limit']:.1f} GB/s" if r.get("limit") else ""
            print(f"    {r['op']} {r['shape']}: fastnn {r['rate']:.1f} GB/s, same-buffer probe "
                  f"{r['limit_same_window']:.1f} GB/s{cached}", file=out)
    mem = [r for r in recs if any(x.get("peak_extra_bytes") is not None for x in r.get("results", []))]
    if mem:
        print("  peak extra memory of one call (MiB; in brackets: of which the returned outputs, the rest being "
              "workspace):", file=out)
        for r in mem:
            print(f"    {r['op']} {r['shape']}: " + ", ".join(
                f"{x['name']} {x['peak_extra_bytes'] / 2**20:.1f}"
                + (f" [{x['output_bytes'] / 2**20:.1f}]" if x.get("output_bytes") is not None else "")
                for x in r["results"] if x.get("peak_extra_bytes") is not None), file=out)
    out.flush()


# ---- --plot ----------------------------------------------------------------------------------
def plot(doc, path):
    """Speedup bars (vs each peer at its best) and a roofline chart of fastnn's cases."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [c for c in doc["cases"] if c.get("status") == "ok"]
    peers = sorted({p for c in cases for p in c.get("speedup", {})})
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(16, max(5, 0.28 * len(cases) + 2)),
                                   gridspec_kw={"width_ratios": [3, 2]})
    labels = [f"{c['op']} {c['shape']}" + (f" t{c['threads']}" if c.get("threads") == 1 else "") for c in cases]
    h = 0.8 / max(1, len(peers))
    for j, p in enumerate(peers):
        ys = [i + (j - (len(peers) - 1) / 2) * h for i in range(len(cases))]
        vals = [c["speedup"].get(p, float("nan")) for c in cases]
        ax1.barh(ys, vals, height=h, label=f"vs {p} at its best")
    ax1.axvline(1.0, color="k", lw=0.8)
    ax1.set_yticks(range(len(cases)))
    ax1.set_yticklabels(labels, fontsize=7)
    ax1.invert_yaxis()
    ax1.set_xscale("log")
    ax1.set_xlabel("speedup of fastnn (peer time / fastnn time; > 1 = fastnn faster)")
    ax1.legend(fontsize=8)
    ax1.set_title("fastnn speedup")

    lim = next(iter(doc.get("limits", {}).values()), None)
    pts = [(c["intensity"], c["rate"] if c["unit"].startswith("GFLOP") else c["rate"] * c["intensity"], c)
           for c in cases if c.get("intensity") and c.get("rate")]
    if lim:
        import numpy as np

        xs = np.logspace(-2, 3, 200)
        ax2.plot(xs, np.minimum(lim["fma_gflops"], xs * lim["triad_gbs"]), "k-", lw=1.2,
                 label=f"roof: {lim['fma_gflops']:.0f} GFLOP/s, {lim['triad_gbs']:.0f} GB/s triad")
    suites = sorted({c["suite"] for _, _, c in pts})
    for s in suites:
        sel = [(x, y) for x, y, c in pts if c["suite"] == s]
        ax2.scatter([x for x, _ in sel], [y for _, y in sel], s=18, label=s)
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("arithmetic intensity (FLOP / byte of compulsory traffic)")
    ax2.set_ylabel("fastnn GFLOP/s")
    ax2.set_title(f"roofline ({doc['machine']['threads']} threads, {doc['machine']['simd_level']})")
    ax2.legend(fontsize=7)
    fig.suptitle(f"fastnn bench — {doc['machine']['cpu_model']} — {doc['date']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
