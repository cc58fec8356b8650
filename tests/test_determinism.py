"""Determinism: same inputs, seed and thread count -> bitwise-identical results, for every public
op (tests/op_cases.py lists one call of each) and for a whole short training run, on the CPU and
on the emulated CUDA device.

On 'cuda' the emulator also replays each op in the three thread-resume orders (forward, reverse,
seeded random): a kernel whose result depends on the order in which threads reach an atomic or a
shared accumulator gives different bits in different orders, as it would from run to run on a
GPU. An op that is non-deterministic by design on CUDA must offer ``deterministic=True``; the
case then calls that path (op_cases passes it whenever the op's signature has the parameter).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastnn as fnn
from fastnn import optim

import op_cases as C
from conftest import DEVICES, SIMD_LEVELS

REPEATS = 3


def _run_or_skip(name, device):
    try:
        return C.run(C.make(name, device))
    except Exception as e:  # noqa: BLE001 - only "no kernel on this device" / known defects are let through
        C.handle_unsupported(e, name, device)


@pytest.mark.parametrize("name", sorted(C.CASES))
def test_op_repeatable_cpu(name, threads):
    """Every op: REPEATS calls on the same inputs give the same bits, at 1 and 2 threads."""
    call = C.make(name, "cpu")
    first = C.run(call)
    for _ in range(REPEATS - 1):
        assert C.bitwise_equal(C.run(call), first), f"{name}: results differ between identical calls"


@pytest.mark.parametrize("level", SIMD_LEVELS[:-1])
@pytest.mark.parametrize("name", sorted(C.CASES))
def test_op_repeatable_cpu_lower_simd_levels(name, level):
    """Every op at the SIMD levels below the best one (the test above runs at the best): the same
    bits on identical calls. Under tools/sanitize.sh this is what runs every family's generic and
    AVX2 kernels."""
    before = fnn.get_simd_level()
    fnn.set_simd_level(level)
    try:
        call = C.make(name, "cpu")
        first = C.run(call)
        assert C.bitwise_equal(C.run(call), first), f"{name} at {level}: results differ between identical calls"
    finally:
        fnn.set_simd_level(before)


@pytest.mark.skipif("cuda" not in DEVICES, reason="device 'cuda' not available")
@pytest.mark.parametrize("name", sorted(C.CASES))
def test_op_repeatable_cuda_every_resume_order(name):
    emu = pytest.importorskip("fastnn._cuda_emu")
    before = emu._get_order()
    try:
        results = []
        for order, seed in (("forward", 0), ("reverse", 0), ("random", 1), ("random", 2)):
            emu._set_order(order, seed)
            results.append(_run_or_skip(name, "cuda"))
        for r in results[1:]:
            assert C.bitwise_equal(r, results[0]), f"{name}: result depends on the emulated thread order"
    finally:
        emu._set_order(*before)


def test_public_ops_all_have_a_case():
    """Every public op of fastnn.ops is exercised by the reliability suites (op_cases.CASES); a case
    naming an op that no longer exists is an error. New ops are listed, not failed, so that a kernel
    family landing before its case is added does not turn main red (the list shows in -ra)."""
    public = set(C.public_ops())
    stale = set(C.CASES) - public
    assert not stale, f"op_cases.CASES names ops that fastnn.ops does not have: {sorted(stale)}"
    missing = sorted(public - set(C.CASES))
    if missing:
        pytest.skip(f"public ops without a reliability case yet (add them to tests/op_cases.py): {missing}")


# ---- whole training runs ---------------------------------------------------------------------
STEPS = 6


def _train(device, threads_=None):
    if threads_:
        fnn.set_num_threads(threads_)
    model = C.tiny_model(device, seed=3)
    opt = optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    x, y = C.tiny_data(device)
    losses = C.train_steps(model, opt, x, y, STEPS)
    return losses.tobytes(), C.params_bytes(model)


@pytest.mark.parametrize("device", DEVICES)
def test_training_run_bitwise(device, threads):
    """Same seed, same thread count: the same losses and parameters, bit for bit (dropout masks,
    init and batch order all come from fastnn.manual_seed)."""
    try:
        a = _train(device)
    except Exception as e:  # noqa: BLE001
        C.skip_if_no_kernel(e, device)
    b = _train(device)
    assert a[0] == b[0], "losses differ between two identical runs"
    assert a[1] == b[1], "parameters differ between two identical runs"


_CHILD = textwrap.dedent("""
    import sys
    sys.path[:0] = {path!r}
    import fastnn as fnn
    from test_determinism import _train
    losses, params = _train({device!r}, {threads})
    sys.stdout.buffer.write(losses + b"".join(params))
""")


@pytest.mark.parametrize("device", DEVICES)
def test_training_run_bitwise_across_processes(device):
    """A fresh process (other addresses, other allocator state, another OpenMP pool) reproduces
    the run of this one bit for bit."""
    threads_ = 2
    before = fnn.get_num_threads()
    try:
        try:
            losses, params = _train(device, threads_)
        except Exception as e:  # noqa: BLE001
            C.skip_if_no_kernel(e, device)
    finally:
        fnn.set_num_threads(before)
    here = os.path.dirname(__file__)
    code = _CHILD.format(path=[here] + sys.path, device=device, threads=threads_)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=600,
                         env=dict(os.environ, FASTNN_CUDA_EMULATE="1"))
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    assert out.stdout == losses + b"".join(params)


def test_seed_changes_the_run():
    """The determinism tests above could pass vacuously if nothing were random; a different seed
    must give a different run."""
    m1, m2 = C.tiny_model("cpu", seed=3), C.tiny_model("cpu", seed=4)
    assert C.params_bytes(m1) != C.params_bytes(m2)
