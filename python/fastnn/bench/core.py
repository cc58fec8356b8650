"""Cases, contenders, the correctness gate and the alternating timer.

A *case* is one operation at one shape; its *contenders* are fastnn and the variants of
each peer: the peer as shipped (what a user writes: fresh outputs per call) and the peer at
its best (preallocated ``out=`` where its API allows). Variants that need another process
environment (glibc malloc that keeps freed memory, OpenBLAS with its fastest kernels) are
timed in a child process against fastnn again (see child.py), so that every ratio we quote
comes from one process and one time window.

Before anything is timed every contender's result is compared with a reference (float64
NumPy where affordable) under a tolerance derived from the reduction length and float32's
epsilon; a contender that disagrees is refused: its error is printed and nothing about it
is timed or reported as a speed.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any, Callable, Optional

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)


# Peer name of a contender that is no peer but this machine's limit for the case's access
# pattern, timed on the case's own buffers in the same alternation as fastnn (the same time
# window): it computes nothing to check, and it yields a same-window fraction of the limit
# instead of a speedup.
LIMIT = "limit"


class WrongAnswer(Exception):
    """A contender's result disagrees with the reference: refuse to time it."""


class NotAvailable(Exception):
    """The kernel (or peer) a case needs is not in this build."""


@dataclasses.dataclass
class Unavailable:
    """Yielded by a suite in place of a case whose kernel is missing (the others still run)."""
    suite: str
    what: str
    missing: str


@dataclasses.dataclass
class Contender:
    name: str                    # 'fastnn', 'numpy', 'numpy[out=]', 'torch', 'torch[fused]', ...
    peer: str                    # 'fastnn' | 'numpy' | 'torch' | 'limit' (a hardware probe, see LIMIT)
    fn: Callable[[], Any]        # the timed call
    variant: str = "shipped"     # 'shipped' | 'out=' | 'malloc-tuned' | 'blas-best' | free text
    check: Optional[Callable[[], Any]] = None  # returns the outputs to compare (default: fn())
    best: bool = False           # in-process "at its best" variant of its peer
    sync: Optional[Callable[[], None]] = None  # e.g. device synchronisation after fn
    memory: Optional[Callable[[], Any]] = None  # peak extra bytes of one call, or (peak, bytes of its outputs)


@dataclasses.dataclass
class Case:
    suite: str
    op: str
    shape: str
    work: float                  # FLOPs, or bytes for memory-bound cases
    unit: str                    # 'GFLOP/s' | 'GB/s'
    limit: str                   # 'fma' | 'triad' | 'adam' | 'none'
    contenders: list
    reference: Optional[Callable[[], Any]] = None  # float64 outputs; None: compare with the first peer
    atol: Any = None             # absolute tolerance per output (float or list) — or a callable(i, ref)
    threads: Optional[int] = None  # this case's own thread count (e.g. GEMM 1 thread)
    note: str = ""
    samples: Optional[float] = None  # for training cases: samples processed by one call
    intensity: Optional[float] = None  # FLOP per byte of compulsory memory traffic (roofline)
    calls: int = 1  # consecutive calls per timed sample, every contender alike (see alternate)
    margins: dict = dataclasses.field(default_factory=dict)  # filled by check_case: max |err| / tol

    @property
    def id(self) -> str:
        return f"{self.suite}/{self.op}/{self.shape}" + (f"/t{self.threads}" if self.threads else "")


def to_numpy(x):
    """Outputs as a tuple of float64 NumPy arrays (fastnn.Tensor, torch.Tensor, ndarray, scalars)."""
    if x is None:
        return ()
    if isinstance(x, (tuple, list)):
        out = []
        for e in x:
            out.extend(to_numpy(e))
        return tuple(out)
    if hasattr(x, "detach") and hasattr(x, "numpy") and type(x).__module__.startswith("torch"):
        return (x.detach().cpu().numpy().astype(np.float64),)
    if not isinstance(x, np.ndarray) and hasattr(x, "device") and str(getattr(x, "device", "cpu")) != "cpu" \
            and hasattr(x, "cpu"):
        x = x.cpu()
    return (np.asarray(x, dtype=np.float64),)


def compare(name: str, case: Case, got, ref) -> None:
    """Raises WrongAnswer naming the contender, the case, the worst element and the tolerance."""
    worst = 0.0
    got, ref = to_numpy(got), to_numpy(ref)
    if len(got) != len(ref):
        raise WrongAnswer(f"{name} {case.id}: returned {len(got)} outputs, the reference has {len(ref)}")
    for i, (g, r) in enumerate(zip(got, ref)):
        if g.shape != r.shape:
            raise WrongAnswer(f"{name} {case.id}: output {i} has shape {g.shape}, expected {r.shape}")
        if case.atol is None:
            tol = 0.0
        elif callable(case.atol):
            tol = float(case.atol(i, r))
        elif isinstance(case.atol, (list, tuple)):
            tol = float(case.atol[i])
        else:
            tol = float(case.atol)
        if g.size == 0:
            continue
        g, r = np.atleast_1d(g), np.atleast_1d(r)
        bad = ~np.isfinite(g) & np.isfinite(r)
        err = np.abs(g - r)
        err[~np.isfinite(err) & ~bad] = 0.0  # both inf of the same sign (masked rows) agree
        err[bad] = np.inf
        j = int(np.argmax(err))
        worst = max(worst, float(err.flat[j] / tol) if tol > 0 else (0.0 if err.flat[j] == 0 else float("inf")))
        if not err.flat[j] <= tol:
            idx = np.unravel_index(j, g.shape) if g.ndim > 1 or g.shape != (1,) else ()
            raise WrongAnswer(f"{name} {case.id}: output {i} is wrong: max |error| {err.flat[j]:.3g} > tolerance "
                              f"{tol:.3g} at index {tuple(int(t) for t in idx)} (got {g.flat[j]:.6g}, "
                              f"expected {r.flat[j]:.6g})")
    return worst


def check_case(case: Case) -> dict:
    """Runs each contender once and compares it with the reference. Returns {name: error or None};
    a contender with an error must not be timed."""
    errors = {}
    ref = case.reference() if case.reference is not None else None
    for c in case.contenders:
        if c.peer == LIMIT:
            errors[c.name] = None
            continue
        try:
            got = (c.check or c.fn)()
            if c.sync:
                c.sync()
            if ref is None:  # the first contender to answer is the yardstick (cases without a reference)
                ref = to_numpy(got)
                errors[c.name] = None
                continue
            case.margins[c.name] = compare(c.name, case, got, ref)
            errors[c.name] = None
        except WrongAnswer as e:
            errors[c.name] = str(e)
        except NotAvailable:
            raise
        except AttributeError as e:
            if c.peer == "fastnn" and "fastnn" in str(e):  # a Python wrapper ahead of its native kernel
                raise NotAvailable(str(e)) from None
            errors[c.name] = f"{c.name} {case.id}: raised {e.__class__.__name__}: {e}"
        except (ValueError, TypeError, RuntimeError, NotImplementedError) as e:
            if c.peer == "fastnn" and "cuda" in str(e).lower():  # kernel without a CUDA version (yet)
                raise NotAvailable(f"on device cuda: {e}") from None
            errors[c.name] = f"{c.name} {case.id}: raised {e.__class__.__name__}: {e}"
        except Exception as e:  # noqa: BLE001 - a crashing contender is refused like a wrong one
            errors[c.name] = f"{c.name} {case.id}: raised {e.__class__.__name__}: {e}"
    return errors


def lead_in_calls(calls: int) -> int:
    """Untimed calls before a sample of ``calls`` back-to-back ones (none for a single call)."""
    return 0 if calls <= 1 else max(1, calls // 4)


def alternate(fns, repeats: int, warmup: int = 1, budget_s: Optional[float] = None, syncs=None, calls: int = 1):
    """Times the callables A B C A B C ...; returns one list of seconds per callable.

    ``calls`` > 1 makes each sample the mean of that many back-to-back calls (a steady state, as
    inside a training loop) instead of one call right after another contender's run: for an op
    of well under a millisecond a single call mostly measures what the previous contender left
    behind (parked worker threads, a clock ramping up, evicted caches), not the op. Such a
    sample starts with ``lead_in_calls(calls)`` untimed calls: on this VM a core left idle for a
    few milliseconds (while a single-threaded peer ran) comes back slowly, and whichever
    multi-threaded contender comes next would pay for it in its first calls.
    ``budget_s`` caps the time spent (at least 3 rounds are always run) so that a slow peer
    at a large size does not stall a run."""
    syncs = syncs or [None] * len(fns)
    for _ in range(warmup):
        for f, s in zip(fns, syncs):
            f()
            if s:
                s()
    times = [[] for _ in fns]
    start = time.perf_counter()
    for r in range(repeats):
        for i, (f, s) in enumerate(zip(fns, syncs)):
            for _ in range(lead_in_calls(calls)):
                f()
            if s and calls > 1:
                s()
            t0 = time.perf_counter()
            for _ in range(calls):
                f()
            if s:
                s()
            times[i].append((time.perf_counter() - t0) / calls)
        if budget_s is not None and r >= 2 and time.perf_counter() - start > budget_s:
            break
    return times


def summarize(ts) -> dict:
    return {"median_ms": statistics.median(ts) * 1e3, "min_ms": min(ts) * 1e3, "max_ms": max(ts) * 1e3,
            "repeats": len(ts)}


def warmup_for(seconds_estimate: float) -> int:
    return 1 if seconds_estimate > 0.05 else 2
