"""The CPU emulator of the CUDA execution model (csrc/cuda_emu/) and the CUDA backend plumbing
(csrc/cuda_backend/, kernels/copy.cu, kernels/gemm.cu), tested through fastnn._cuda_emu.

Every test runs in the three thread-resume orders (forward, reverse, seeded random): they expose
different races (see docs/CUDA.md). The self-test kernels live in kernels/testing/emu_selftest.cu.
"""
from __future__ import annotations

import ctypes
import re

import numpy as np
import pytest

emu = pytest.importorskip("fastnn._cuda_emu")
st = emu._selftest

ORDERS = ["forward", "reverse", "random"]
SELFTEST = r"emu_selftest\.cu:\d+"


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(params=ORDERS, autouse=True)
def order(request):
    before = emu._get_order()
    emu._set_order(request.param, 12345)
    yield request.param
    emu._set_order(*before)


# ---- module / backend ---------------------------------------------------------------------------

def test_backend_capsule_and_device():
    cap = emu._backend()
    is_valid = ctypes.pythonapi.PyCapsule_IsValid
    is_valid.restype = ctypes.c_int
    is_valid.argtypes = [ctypes.py_object, ctypes.c_char_p]
    assert is_valid(cap, b"fastnn.CudaBackend") == 1
    assert emu.name() == "cuda-emulated"
    assert emu.device_count() == 1
    assert emu.unavailable_reason() == ""
    assert "H100" in emu.device_name(0)
    with pytest.raises(ValueError, match="device index 3"):
        emu.memory_stats(3)


def test_set_order_rejects_unknown():
    with pytest.raises(ValueError, match="'order'.*got 'sideways'"):
        emu._set_order("sideways", 0)


# ---- barriers -------------------------------------------------------------------------------------

def test_missing_syncthreads_is_caught_by_reverse_order(order):
    # out[t] = s[t-1] read without a barrier after the writes: forward order hides the race
    # (thread t-1 ran first), reverse order reads poisoned (NaN) shared memory.
    out = np.array(st.shift(64, False))
    expected = np.concatenate([[-1.0], np.arange(63.0)])
    if order == "forward":
        np.testing.assert_array_equal(out, expected)
    elif order == "reverse":
        assert out[0] == -1.0 and np.isnan(out[1:]).all()
    else:
        assert not np.array_equal(out, expected)  # seed 12345 exposes it


def test_syncthreads_makes_shift_correct(order):
    for n in (1, 33, 64, 1024):
        out = np.array(st.shift(n, True))
        np.testing.assert_array_equal(out, np.concatenate([[-1.0], np.arange(n - 1.0)]))


def test_missing_syncwarp_is_caught_by_forward_order(order):
    # Shared-memory tree reduction of 1..32 (= 528): without __syncwarp a lane reads a partial sum
    # that a higher lane has not updated yet; reverse order hides it (higher lanes finish first).
    assert st.warp_tree_sum(True) == 528.0
    racy = st.warp_tree_sum(False)
    if order == "reverse":
        assert racy == 528.0
    if order == "forward":
        assert racy != 528.0


def test_divergent_barrier_names_both_lines():
    with pytest.raises(RuntimeError, match="divergent __syncthreads") as e:
        st.divergent_barrier()
    lines = set(re.findall(SELFTEST, str(e.value)))
    assert len(lines) == 2, str(e.value)


def test_deadlock_lists_each_waiting_location():
    with pytest.raises(RuntimeError, match="deadlock") as e:
        st.deadlock()
    msg = str(e.value)
    assert re.search(SELFTEST + r" \(__syncwarp\) mask 0xffffffff: 16 thread", msg), msg
    assert re.search(SELFTEST + r" \(__syncthreads\): 48 thread", msg), msg


def test_barrier_after_early_exit_is_an_error():
    with pytest.raises(RuntimeError, match=r"reached by 16 of 32 threads; 16 thread\(s\) had already exited"):
        st.exit_before_barrier()


def test_errors_leave_the_emulator_usable():
    for fn in (st.deadlock, st.divergent_barrier, st.illegal_address):
        with pytest.raises(RuntimeError):
            fn()
        np.testing.assert_array_equal(st.shift(64, True)[1:], np.arange(63.0))


def test_illegal_address_is_an_exception_not_a_crash():
    with pytest.raises(RuntimeError, match=r"thread \(\d+,0,0\) of block \(0,0,0\): invalid memory access"):
        st.illegal_address()


def test_stack_overflow_and_integer_trap_are_exceptions():
    with pytest.raises(RuntimeError, match=r"thread \(\d+,0,0\) of block \(0,0,0\): stack overflow"):
        st.emulator_fault(0)
    with pytest.raises(RuntimeError, match="integer division by zero"):
        st.emulator_fault(1)
    np.testing.assert_array_equal(st.shift(64, True)[1:], np.arange(63.0))


# ---- warp operations ------------------------------------------------------------------------------

def _expected_warp_ops(n, width, arg):
    t = np.arange(n)
    lane = t % 32
    v = 10 * t + 1
    base = t - lane  # thread id of lane 0 of the warp
    seg = lane & ~(width - 1)
    lw = lane & (width - 1)
    shfl = v[base + seg + (arg & (width - 1))]
    up = np.where(lw < arg, v, v[np.clip(t - arg, 0, n - 1)])
    down = np.where(lw + arg >= width, v, v[np.clip(t + arg, 0, n - 1)])
    src = lane ^ arg
    xor = np.where(src >= seg + width, v, v[np.clip(base + src, 0, n - 1)])
    ballot = np.zeros(n, np.int64)
    anyv = np.zeros(n, np.int64)
    allv = np.zeros(n, np.int64)
    for w in range(0, n, 32):
        ids = t[w:w + 32]
        ballot[w:w + 32] = sum(1 << (i - w) for i in ids if i % 3 == 0)
        anyv[w:w + 32] = int(any(i == 5 for i in ids))
        allv[w:w + 32] = int(all(i < 40 for i in ids))
    count = np.full(n, (n + 1) // 2)
    return np.stack([shfl, up, down, xor, ballot, anyv, allv, count])


@pytest.mark.parametrize("n,width,arg", [(64, 32, 3), (64, 16, 5), (64, 8, 1), (96, 4, 2), (32, 32, 31),
                                         (64, 16, 17), (64, 2, 1), (48, 16, 3)])
def test_warp_shuffles_and_votes(n, width, arg):
    got = np.array(st.warp_ops(n, width, arg)).reshape(8, n)
    np.testing.assert_array_equal(got, _expected_warp_ops(n, width, arg))


def test_shuffle_from_lane_outside_mask_is_an_error():
    with pytest.raises(RuntimeError, match=SELFTEST + r".*reads lane 20, which is not in mask 0xffff"):
        st.shuffle_outside_mask()


# ---- shared memory, atomics, wmma, pipelines ------------------------------------------------------

def test_shared_memory_is_poisoned_before_each_block():
    got = np.array(st.uninitialised_shared(), dtype=np.uint32)
    # static, dynamic, and static again in block 1 after block 0 wrote 7s: all 0xFF bytes.
    assert (got == 0xFFFFFFFF).all()
    assert np.isnan(got.view(np.float32)).all()


@pytest.mark.parametrize("blocks,threads", [(1, 1), (3, 64), (2, 1000)])
def test_atomics(blocks, threads):
    n = blocks * threads
    f, i, mx, cas, exch_ok, mn = st.atomics(blocks, threads)
    assert f == n and i == 2 * n and mx == n - 1 and cas == n and exch_ok == 1 and mn == -5


def _bf16_round(x):
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return r.astype(np.uint32).view(np.float32)


def _tf32_round(x):
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return (((u + 0x1000) & 0xFFFFE000).astype(np.uint32)).view(np.float32)


@pytest.mark.parametrize("kind", [0, 1, 2], ids=["half", "bf16", "tf32"])
def test_wmma_tile(kind, rng):
    a = rng.standard_normal(256).astype(np.float32)
    b = rng.standard_normal(256).astype(np.float32)
    c = rng.standard_normal(256).astype(np.float32)
    rnd = {0: lambda x: x.astype(np.float16).astype(np.float32), 1: _bf16_round, 2: _tf32_round}[kind]
    A = rnd(a).reshape(16, 16).astype(np.float64)
    B = rnd(b).reshape(16, 16).T.astype(np.float64)  # stored column-major
    ref = A @ B + c.reshape(16, 16)
    got = np.array(st.wmma_tile(kind, a, b, c)).reshape(16, 16)
    # Inputs are exact after rounding; 16 products accumulate in float32: |err| <= 16 eps32 sum|ab| + |c| eps.
    bound = 2 * 17 * np.finfo(np.float32).eps * (np.abs(A) @ np.abs(B) + np.abs(c.reshape(16, 16)))
    assert (np.abs(got - ref) <= bound).all()
    # and the rounding of the operands is visible (not a float32 product):
    full = a.reshape(16, 16).astype(np.float64) @ b.reshape(16, 16).T + c.reshape(16, 16)
    assert np.abs(got - full).max() > 1e-6


def test_pipeline_copies_land_at_the_wait():
    src = np.arange(64, dtype=np.float32)
    np.testing.assert_array_equal(st.pipeline(0), src)          # wait_prior(0): both groups
    assert np.isnan(st.pipeline(1)).all()                        # read before any wait: poison
    partial = np.array(st.pipeline(2))                           # wait_prior(1): first group only
    np.testing.assert_array_equal(partial[:32], src[:32])
    assert np.isnan(partial[32:]).all()


@pytest.mark.parametrize("case,code,message,ran", [
    (0, 9, "invalid configuration argument", False),   # 1025 threads
    (1, 9, "invalid configuration argument", False),   # blockDim.z = 65
    (2, 9, "invalid configuration argument", False),   # gridDim.y = 65536
    (3, 1, "invalid argument", False),                 # 64 KiB dynamic smem without opt-in
    (4, 0, "no error", True),                          # ... with cudaFuncSetAttribute
    (5, 1, "invalid argument", False),                 # opt-in above 227 KiB
    (6, 9, "invalid configuration argument", False),   # empty block
    (7, 0, "no error", True),                          # valid launch
])
def test_launch_configuration_errors(case, code, message, ran):
    assert st.launch_config(case) == (code, message, ran)


# ---- memory ---------------------------------------------------------------------------------------

def test_malloc_memcpy_memset_round_trip():
    emu.empty_cache()
    before = emu.memory_stats()
    copies = emu.host_device_copies()
    data = np.arange(1000, dtype=np.uint8)
    p = emu._malloc(1000)
    q = emu._malloc(1000)
    assert p != q and p != 0
    emu._htod(p, data)
    np.testing.assert_array_equal(np.frombuffer(emu._dtoh(p, 1000), np.uint8), data)
    emu._dtod(q, p, 1000)
    emu._memset(q + 10, 0xAB, 20)
    got = np.frombuffer(emu._dtoh(q, 1000), np.uint8)
    exp = data.copy()
    exp[10:30] = 0xAB
    np.testing.assert_array_equal(got, exp)
    assert emu.host_device_copies() == copies + 3  # D2D does not count
    s = emu.memory_stats()
    assert s["allocated_bytes"] - before["allocated_bytes"] == 2 * 1024  # size class of 1000 bytes
    emu._free(p)
    r = emu._malloc(900)  # same size class: served from the cache
    assert r == p
    assert emu.memory_stats()["num_cache_hits"] == s["num_cache_hits"] + 1
    emu._free(q)
    emu._free(r)
    assert emu.memory_stats()["cached_bytes"] >= 2048
    emu.empty_cache()
    assert emu.memory_stats()["cached_bytes"] == 0
    assert emu._malloc(0) == 0


def test_out_of_range_copies_raise_with_call_name():
    p = emu._malloc(1000)  # 1024-byte block
    try:
        with pytest.raises(RuntimeError, match=r"cudaMemcpy\(.*\) failed: invalid argument \(cudaErrorInvalidValue\)"):
            emu._dtoh(p, 4096)
        with pytest.raises(RuntimeError, match=r"cudaMemsetAsync\(.*\) failed: invalid argument"):
            emu._memset(p + 512, 0, 4096)
    finally:
        emu._free(p)


# ---- copy / fill kernels ------------------------------------------------------------------------

DTYPES = ["float32", "float64", "float16", "bfloat16", "int32", "int64", "uint8", "bool"]


def _to_raw(x, dtype):
    """float values -> array holding `dtype` (bfloat16 as uint16 bits, rounded to nearest even)."""
    if dtype == "bfloat16":
        return (_bf16_round(x).view(np.uint32) >> 16).astype(np.uint16)
    return np.asarray(x).astype(dtype)


def _values(raw, dtype):
    if dtype == "bfloat16":
        return (raw.astype(np.uint32) << 16).view(np.float32)
    return raw


def _reference(src_raw, src_dtype, dst_dtype):
    v = _values(src_raw, src_dtype)
    if dst_dtype == "bfloat16":
        return _to_raw(v.astype(np.float32), "bfloat16")
    return v.astype(dst_dtype)


@pytest.mark.parametrize("src_dtype", DTYPES)
@pytest.mark.parametrize("dst_dtype", DTYPES)
def test_copy_all_dtype_pairs_transposed(src_dtype, dst_dtype, rng):
    # Non-negative quarter values: exact in every float type's range of use, no saturation cases.
    x = (rng.integers(0, 100, (65, 33)) + 0.25 * rng.integers(0, 4, (65, 33))).astype(np.float32)
    src = _to_raw(x, src_dtype).T  # (33, 65), non-contiguous
    for fortran in (False, True):
        got = emu._copy(src, src_dtype, dst_dtype, fortran)
        np.testing.assert_array_equal(got, _reference(src, src_dtype, dst_dtype))
        assert got.flags["F_CONTIGUOUS" if fortran else "C_CONTIGUOUS"]


@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (257,), (3, 0, 2), (3, 5, 7), (2, 1, 129), (2, 3, 4, 5, 6)])
@pytest.mark.parametrize("pair", [("float32", "float32"), ("float32", "float16"), ("int64", "float64")])
def test_copy_tail_shapes_and_strides(shape, pair, rng):
    sd, dd = pair
    x = _to_raw(rng.integers(-50, 50, shape), sd)
    views = [x, x[..., ::-1], x[..., ::2] if x.ndim else x]
    if x.ndim >= 2:
        views.append(np.swapaxes(x, 0, -1))
        views.append(np.broadcast_to(x[:1], x.shape))  # zero stride
    for v in views:
        np.testing.assert_array_equal(emu._copy(v, sd, dd), v.astype(dd))


@pytest.mark.parametrize("dtype", DTYPES)
def test_copy_contiguous_same_dtype_is_one_memcpy_of_the_right_size(dtype, rng):
    # One merged contiguous run of the same dtype is a device memcpy of numel * itemsize bytes:
    # a wrong element size would copy too little (or overrun) and show as wrong tail elements.
    x = _to_raw(rng.integers(0, 100, (3, 129)).astype(np.float32), dtype)
    np.testing.assert_array_equal(emu._copy(x, dtype, dtype), x)


def test_copy_dimension_limit():
    # Slicing every dimension with step 2 leaves nothing to merge: 8 dims run, 9 are refused.
    base = np.arange(4 ** 9, dtype=np.float32).reshape((4,) * 9)
    v8 = base[(0,) + (slice(None, None, 2),) * 8]
    np.testing.assert_array_equal(emu._copy(v8, "float32", "float32"), v8)
    v9 = base[(slice(None, None, 2),) * 9]
    with pytest.raises(ValueError, match="9 non-mergeable dimensions; at most 8"):
        emu._copy(v9, "float32", "float32")


def test_copy_float_to_int_saturates():
    x = np.array([np.nan, np.inf, -np.inf, 1e10, -1e10, 3.7, -3.7, 255.5, 0.0], np.float32)
    i32 = np.iinfo(np.int32)
    np.testing.assert_array_equal(emu._copy(x, "float32", "int32"),
                                  [0, i32.max, i32.min, i32.max, i32.min, 3, -3, 255, 0])
    np.testing.assert_array_equal(emu._copy(x, "float32", "uint8"), [0, 255, 0, 255, 0, 3, 0, 255, 0])
    np.testing.assert_array_equal(emu._copy(x, "float32", "bool"), [1, 1, 1, 1, 1, 1, 1, 1, 0])
    # integer -> integer wraps like C++ and NumPy
    np.testing.assert_array_equal(emu._copy(np.array([-1, 256, 300], np.int32), "int32", "uint8"), [255, 0, 44])


@pytest.mark.parametrize("dtype", DTYPES)
def test_fill(dtype):
    n = 1000
    size = np.dtype("uint16" if dtype == "bfloat16" else dtype).itemsize
    p = emu._malloc(n * size)
    try:
        emu._fill(p, dtype, 3.0, n)
        raw = np.frombuffer(emu._dtoh(p, n * size), "uint16" if dtype == "bfloat16" else dtype)
        np.testing.assert_array_equal(_values(raw, dtype), np.full(n, 3.0).astype(_values(raw, dtype).dtype))
    finally:
        emu._free(p)


# ---- gemm (baseline kernel) -----------------------------------------------------------------------

@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (17, 33, 5), (65, 64, 70), (3, 4, 0), (0, 5, 3)])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, True)])
def test_gemm_baseline(m, n, k, trans_a, trans_b, rng):
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    c = rng.standard_normal((m, n)).astype(np.float32)
    A = (a.T if trans_a else a).astype(np.float64)
    B = (b.T if trans_b else b).astype(np.float64)
    got = emu._gemm(a, b, trans_a, trans_b, 0.5, 2.0, c, 1)
    ref = np.maximum(0.5 * (A @ B) + 2.0 * c, 0.0)
    # float32 dot products of length k (gamma_k ~ k eps) plus the beta*C term's rounding.
    tol = 2 * (k + 2) * np.finfo(np.float32).eps * (0.5 * np.abs(A) @ np.abs(B) + 2 * np.abs(c))
    assert got.shape == (m, n)
    assert (np.abs(got - ref) <= tol + 1e-30).all()


# ---- process-level behaviour ----------------------------------------------------------------------

def test_concurrent_launches_are_serialised():
    # Hooks release the GIL: launches from two OS threads must queue on the emulator's mutex.
    import threading
    errors = []

    def work():
        try:
            for _ in range(10):
                out = np.array(st.shift(256, True))
                assert out[0] == -1.0 and np.array_equal(out[1:], np.arange(255.0))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_order_from_environment(order):
    # One subprocess (importing fastnn is slow on this VM): the order fixture is irrelevant here.
    if order != "forward":
        pytest.skip("checked once")
    import os
    import subprocess
    import sys
    code = "import fastnn._cuda_emu as e; print(*e._get_order())"
    env = dict(os.environ, FASTNN_EMU_ORDER="random", FASTNN_EMU_SEED="77")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["random", "77"]


def test_real_module_explains_missing_gpu(order):
    if order != "forward":
        pytest.skip("checked once")
    real = pytest.importorskip("fastnn._cuda")
    assert real.emulated is False and real.name() == "cuda"
    n = real.device_count()
    if n > 0:
        assert real.unavailable_reason() == ""
    else:  # e.g. "cudaGetDeviceCount failed: CUDA driver version is insufficient ... (cudaErrorInsufficientDriver)"
        assert real.unavailable_reason().startswith("cudaGetDeviceCount")
