"""Child process of `fastnn bench`: re-times chosen peers against fastnn in another environment.

The parent starts ``python -m fastnn.bench.child`` with a modified environment (glibc malloc
keeping freed memory; or OpenBLAS with OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset, i.e. its
fastest kernels) and a JSON spec on stdin. We rebuild the same cases (same seeds, same
inputs), keep fastnn and the requested contenders, check them again, time them alternately,
and print one JSON line: {"cases": {case_id: {"times": {name: [s, ...]}} | {"error": msg}}}.
"""
from __future__ import annotations

import json
import sys


def main() -> int:
    spec = json.loads(sys.stdin.read())
    import fastnn

    from . import core, runner
    from .suites import Config

    fastnn.set_simd_level(spec["simd"])
    fastnn.set_num_threads(spec["threads"])
    cfg = Config(size=spec["size"], baselines=tuple(spec["baselines"]), device=spec["device"],
                 threads=spec["threads"], only_peers=tuple(spec["only_peers"]),
                 tour=spec.get("tour", False))
    ids = set(spec["case_ids"])
    out = {"cases": {}, "notes": []}

    class _Args:  # the parts of the CLI arguments Run.threads_for needs
        pass

    for label, gen in runner.suite_generators(spec["suite"]):
        try:
            for case in gen(cfg):
                if isinstance(case, core.Unavailable) or case.id not in ids or len(case.contenders) < 2:
                    continue
                # The parent checked these contenders against the float64 reference on the same
                # inputs; here the peer (first) is the yardstick for fastnn, which is much cheaper
                # and still catches a peer that computes differently in this environment.
                case.reference = None
                case.contenders = [c for c in case.contenders if c.peer != "fastnn"] + \
                    [c for c in case.contenders if c.peer == "fastnn"]
                threads = case.threads or spec["threads"]
                with _threads(threads, cfg.baselines):
                    errors = core.check_case(case)
                    bad = [e for e in errors.values() if e]
                    if bad:
                        out["cases"][case.id] = {"error": "; ".join(bad)}
                        continue
                    # the parent chose the round count (>= 9 for a full run: it takes the median of
                    # per-round ratios); the budget still caps a slow case
                    times = core.alternate([c.fn for c in case.contenders], spec["repeats"], warmup=1,
                                           budget_s=spec["budget"], syncs=[c.sync for c in case.contenders],
                                           calls=case.calls)
                out["cases"][case.id] = {"times": {c.name: t for c, t in zip(case.contenders, times)}}
        except core.NotAvailable as e:
            out["notes"].append(f"{label}: not available in the child ({e})")
    print(json.dumps(out))
    return 0


def _threads(n, baselines):
    import contextlib

    import fastnn

    from .machine import optional_torch

    fastnn.set_num_threads(n)
    if "torch" in baselines and optional_torch() is not None:
        optional_torch().set_num_threads(n)
    try:
        import threadpoolctl
        return threadpoolctl.threadpool_limits(limits=n, user_api="blas")
    except ImportError:
        return contextlib.nullcontext()


if __name__ == "__main__":
    sys.exit(main())
