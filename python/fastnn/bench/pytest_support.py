"""Helpers for the pytest-benchmark suites in the repository's bench/ directory
(`pytest bench/ --benchmark-only`): the same cases as `fastnn bench`, one benchmark per
(case, contender), each case checked for correctness before its first timing.

Sizes: FASTNN_BENCH_SIZE=quick (default) | full | tiny.
"""
from __future__ import annotations

import os

from . import core, machine
from .suites import Config

_checked = {}


def config() -> Config:
    import fastnn

    size = os.environ.get("FASTNN_BENCH_SIZE", "quick")
    baselines = tuple(b for b in os.environ.get("FASTNN_BENCH_BASELINES", "numpy,torch").split(",") if b)
    if "torch" in baselines and machine.optional_torch() is None:
        baselines = tuple(b for b in baselines if b != "torch")
    return Config(size=size, baselines=baselines, threads=fastnn.get_num_threads())


def params(suite: str):
    """pytest.param(case, contender) for every case of a CLI suite ('gemm', 'conv2d', ...)."""
    import pytest

    from .runner import suite_generators

    out = []
    for label, gen in suite_generators(suite):
        try:
            for case in gen(config()):
                if isinstance(case, core.Unavailable):
                    out.append(pytest.param(None, None, id=f"{case.what}-unavailable",
                                            marks=pytest.mark.skip(reason=f"not available in this build: "
                                                                          f"{case.missing}")))
                    continue
                for c in case.contenders:
                    out.append(pytest.param(case, c, id=f"{case.op}-{case.shape}-{c.name}".replace(" ", "_")))
        except core.NotAvailable as e:
            out.append(pytest.param(None, None, id=f"{label}-unavailable",
                                    marks=pytest.mark.skip(reason=f"not available in this build: {e}")))
    return out


def run(benchmark, case, contender):
    """Checks the case once (a wrong fastnn fails the test, a wrong peer skips), then times."""
    import pytest

    import fastnn

    threads = case.threads or fastnn.get_num_threads()
    before = fastnn.get_num_threads()
    fastnn.set_num_threads(threads)
    torch = machine.optional_torch()
    if torch is not None:
        torch.set_num_threads(threads)
    try:
        if case.id not in _checked:
            _checked[case.id] = core.check_case(case)
        err = _checked[case.id].get(contender.name)
        if err:
            if contender.peer == "fastnn":
                pytest.fail(f"refusing to benchmark a wrong answer: {err}")
            pytest.skip(f"peer gives a wrong answer: {err}")
        benchmark.group = f"{case.op} {case.shape}" + (f" t{case.threads}" if case.threads else "")
        benchmark.extra_info.update({"work": case.work, "unit": case.unit, "contender": contender.name,
                                     "variant": contender.variant, "threads": threads})

        def call():
            contender.fn()
            if contender.sync:
                contender.sync()
        benchmark(call)
    finally:
        fastnn.set_num_threads(before)
