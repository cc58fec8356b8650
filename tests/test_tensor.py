"""The foundation: zero-copy interchange, views, conversions, devices, error contract."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import fastnn

try:
    import torch
except ImportError:  # pragma: no cover - CI installs torch
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch not installed")


# ---- NumPy <-> Tensor shares memory --------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda a: a,
    lambda a: a[::2],
    lambda a: a[:, 1::3],
    lambda a: a.T,
    lambda a: a[::-1, ::-2],
    lambda a: a[3],
    lambda a: np.broadcast_to(a[:1], (5, 7)),
], ids=["contiguous", "row-step", "col-step", "transposed", "negative-steps", "row", "broadcast"])
def test_numpy_roundtrip_shares_memory(make):
    base = np.arange(5 * 7, dtype=np.float32).reshape(5, 7)
    view = make(base)
    t = fastnn.from_numpy(view)
    assert t.shape == view.shape
    back = t.numpy()
    assert np.shares_memory(back, base)
    assert np.shares_memory(np.asarray(t), base)
    np.testing.assert_array_equal(back, view)
    assert [s * 4 for s in t.strides] == list(view.strides)


def test_writes_through_shared_memory():
    a = np.zeros((3, 4), np.float32)
    t = fastnn.from_numpy(a)
    t[1].copy_(np.ones(4, np.float32))
    assert a[1].sum() == 4 and a.sum() == 4


def test_tensor_outlives_numpy_owner():
    t = fastnn.from_numpy(np.arange(10, dtype=np.float32))
    import gc
    gc.collect()
    np.testing.assert_array_equal(t.numpy(), np.arange(10))


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int32", "int64", "uint8", "bool"])
def test_numpy_dtypes(dtype):
    a = (np.arange(6) % 3).astype(dtype).reshape(2, 3)
    t = fastnn.from_numpy(a)
    assert t.dtype.name == ("bool" if dtype == "bool" else dtype)
    np.testing.assert_array_equal(t.numpy(), a)


def test_array_protocol_copy_semantics():
    a = np.arange(4, dtype=np.float32)
    t = fastnn.from_numpy(a)
    assert np.shares_memory(np.asarray(t), a)
    assert not np.shares_memory(np.array(t, copy=True), a)
    conv = np.asarray(t, dtype=np.float64)
    assert conv.dtype == np.float64 and not np.shares_memory(conv, a)
    with pytest.raises(ValueError, match="copy=False"):
        t.__array__(dtype=np.float64, copy=False)


# ---- DLPack ----------------------------------------------------------------------------------
def test_dlpack_numpy_both_ways():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2]
    t = fastnn.from_dlpack(a)
    assert np.shares_memory(t.numpy(), a)
    b = np.from_dlpack(t)
    assert np.shares_memory(b, a)
    np.testing.assert_array_equal(b, a)


def test_dlpack_versioned_and_legacy_capsules():
    t = fastnn.tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    legacy = t.__dlpack__()
    versioned = t.__dlpack__(max_version=(1, 0))
    assert "dltensor" in repr(legacy) and "dltensor_versioned" not in repr(legacy)
    assert "dltensor_versioned" in repr(versioned)
    for cap in (legacy, versioned):
        u = fastnn.from_dlpack(cap)
        assert u.data_ptr() == t.data_ptr()
    assert t.__dlpack_device__() == (1, 0)
    del legacy, versioned  # unconsumed capsules free their context without leaking or crashing
    with pytest.raises(TypeError, match="already consumed"):
        cap = t.__dlpack__()
        fastnn.from_dlpack(cap)
        fastnn.from_dlpack(cap)


def test_dlpack_copy_flag():
    t = fastnn.tensor([1.0, 2.0])
    arr = np.from_dlpack(t, copy=True)
    assert not np.shares_memory(arr, t.numpy())


@needs_torch
def test_dlpack_torch_both_ways():
    x = torch.arange(24, dtype=torch.float32).reshape(4, 6)[:, 1::2]
    t = fastnn.from_dlpack(x)
    assert t.data_ptr() == x.data_ptr() and t.shape == (4, 3)
    assert t.strides == x.stride()
    y = torch.from_dlpack(t)
    assert y.data_ptr() == x.data_ptr()
    assert torch.equal(y, x)
    x[0, 0] = 100.0  # shared memory: visible on both sides
    assert t.numpy()[0, 0] == 100.0
    i = torch.arange(5, dtype=torch.int64)
    assert fastnn.from_dlpack(i).dtype == fastnn.int64
    b = torch.ones(3, dtype=torch.bfloat16)
    tb = fastnn.from_dlpack(b)
    assert tb.dtype == fastnn.bfloat16
    np.testing.assert_array_equal(tb.float().numpy(), np.ones(3, np.float32))


@needs_torch
def test_torch_tensor_accepted_where_tensors_are():
    x = torch.ones(2, 3)
    t = fastnn.as_tensor(x)
    assert t.data_ptr() == x.data_ptr()


# ---- creation, views, conversion -----------------------------------------------------------
def test_tensor_constructor_dtypes_and_copy():
    a = np.ones(3)
    t = fastnn.tensor(a)
    assert t.dtype == fastnn.float32  # float64 data defaults to float32
    assert fastnn.tensor(a, dtype="float64").dtype == fastnn.float64
    assert fastnn.tensor([1, 2]).dtype == fastnn.int64
    assert fastnn.tensor([True, False]).dtype == fastnn.bool_
    b = np.ones(3, np.float32)
    assert not np.shares_memory(fastnn.tensor(b).numpy(), b)  # tensor() copies, like torch.tensor
    assert fastnn.tensor(2.5).item() == 2.5 and fastnn.tensor(2.5).shape == ()
    assert fastnn.tensor([1.0], requires_grad=True).requires_grad


@pytest.mark.parametrize("dst", ["float16", "bfloat16", "int32", "int64", "float64", "uint8", "bool"])
def test_dtype_conversions(dst):
    x = np.array([0.0, 1.5, -2.25, 3.0, 1000.0], np.float32)
    t = fastnn.tensor(x).to(dtype=dst)
    assert t.dtype.name == dst
    back = t.to(dtype="float32").numpy()
    if dst in ("float16", "float64"):
        expect = x.astype(dst).astype(np.float32)
    elif dst == "bfloat16":
        expect = x  # all exactly representable in bfloat16's 8 bits of mantissa
    elif dst == "bool":
        expect = (x != 0).astype(np.float32)
    elif dst == "uint8":
        expect = np.clip(np.trunc(x), 0, 255)
    else:
        expect = np.trunc(x)
    np.testing.assert_array_equal(back, expect)


def test_bfloat16_rounds_to_nearest_even():
    # 1 + 2^-8 is halfway between two bfloat16 values: ties to even -> 1.0; 1 + 3*2^-8 -> 1 + 2^-6
    x = np.array([1 + 2**-8, 1 + 3 * 2**-8, np.nan, np.inf], np.float32)
    y = fastnn.tensor(x).to(dtype="bfloat16").float().numpy()
    assert y[0] == 1.0 and y[1] == 1 + 2**-6 and np.isnan(y[2]) and y[3] == np.inf


def test_float_to_int_saturates_instead_of_undefined_behaviour():
    x = np.array([np.nan, 1e30, -1e30], np.float32)
    y = fastnn.tensor(x).to(dtype="int32").numpy()
    assert list(y) == [0, 2**31 - 1, -(2**31)]


def test_views_share_storage_and_match_numpy():
    a = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    t = fastnn.from_numpy(a)
    cases = [
        (t.reshape(6, 4), a.reshape(6, 4)),
        (t.view(-1), a.reshape(-1)),
        (t.transpose(0, 2), a.transpose(2, 1, 0)),
        (t.permute(1, 2, 0), a.transpose(1, 2, 0)),
        (t[1, :, ::-1], a[1, :, ::-1]),
        (t[..., 2], a[..., 2]),
        (t[None, :, 1], a[None, :, 1]),
        (t.unsqueeze(1), a[:, None]),
        (t[:, :1].squeeze(1), a[:, 0]),
        (t.flatten(1), a.reshape(2, 12)),
        (t.T, a.T),
    ]
    for v, ref in cases:
        np.testing.assert_array_equal(v.numpy(), ref)
        assert np.shares_memory(v.numpy(), a)


def test_reshape_copies_only_when_needed():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = fastnn.from_numpy(a).T  # (4, 3) non-contiguous
    r = t.reshape(12)
    np.testing.assert_array_equal(r.numpy(), a.T.reshape(12))
    assert not np.shares_memory(r.numpy(), a)
    with pytest.raises(ValueError, match="without a copy"):
        t.view(12)
    assert t.contiguous().is_contiguous()


def test_zero_size_dimensions_are_valid():
    t = fastnn.zeros(0, 3)
    assert t.shape == (0, 3) and t.numel() == 0
    assert t.reshape(3, 0).shape == (3, 0)
    assert fastnn.from_numpy(np.empty((4, 0), np.float32)).numpy().shape == (4, 0)
    assert t.T.contiguous().shape == (3, 0)


def test_repr_and_item():
    t = fastnn.tensor([[1.0, 2.0]])
    assert repr(t) == "tensor([[1., 2.]], dtype=fastnn.float32)"
    assert fastnn.tensor([7]).item() == 7
    assert float(fastnn.tensor([1.5])) == 1.5


def test_caching_allocator_reuses_blocks():
    fastnn.empty(1 << 20)  # allocate and free 4 MiB
    before = fastnn.memory_stats()
    for _ in range(5):
        fastnn.empty(1 << 20)
    after = fastnn.memory_stats()
    assert after["num_cache_hits"] - before["num_cache_hits"] == 5
    assert after["num_system_allocs"] == before["num_system_allocs"]
    fastnn.empty_cache()
    assert fastnn.memory_stats()["cached_bytes"] == 0


# ---- error contract --------------------------------------------------------------------------
def test_error_wrong_dtype_names_argument_expected_actual():
    with pytest.raises(TypeError, match=r"from_numpy: argument 'a': expected a NumPy array of float32.*got dtype complex64"):
        fastnn.from_numpy(np.zeros(2, np.complex64))
    with pytest.raises(TypeError, match="big-endian"):
        fastnn.from_numpy(np.zeros(2, ">f4"))
    with pytest.raises(TypeError, match="expected a numpy.ndarray, got list"):
        fastnn.from_numpy([1, 2])
    with pytest.raises(TypeError, match="object array"):
        fastnn.tensor([object()])


def test_error_shapes_and_sizes():
    with pytest.raises(ValueError, match=r"argument 'shape': expected non-negative sizes, got \(2, -1\)"):
        fastnn.empty(2, -1)
    with pytest.raises(ValueError, match="more elements than fastnn can address"):
        fastnn.empty(2**40, 2**40)
    t = fastnn.zeros(2, 3)
    with pytest.raises(ValueError, match=r"cannot reshape a tensor of shape \(2, 3\).*into shape \(4,\)"):
        t.reshape(4)
    with pytest.raises(IndexError, match="index 5 is out of bounds for dimension 0 with size 2"):
        t[5]
    with pytest.raises(IndexError, match="too many indices"):
        t[0, 0, 0]
    with pytest.raises(IndexError, match=r"expected a dimension in \[-2, 1\], got 2"):
        t.transpose(0, 2)
    with pytest.raises(ValueError, match="expected a permutation"):
        t.permute(0, 0)


def test_error_device_and_dtype_names():
    with pytest.raises(ValueError, match=r"argument 'device': expected 'cpu', 'cuda' or 'cuda:N', got 'tpu'"):
        fastnn.zeros(2, device="tpu")
    with pytest.raises(TypeError, match="argument 'dtype': expected a dtype"):
        fastnn.zeros(2, dtype="complex128")
    with pytest.raises(ValueError, match="expected an integer >= 1, got 0"):
        fastnn.set_num_threads(0)
    with pytest.raises(ValueError, match="expected 'avx512', 'avx2' or 'generic', got 'sse9'"):
        fastnn.set_simd_level("sse9")


def test_error_unaligned_and_odd_strides():
    raw = np.zeros(17, np.uint8)
    odd = raw[1:].view(np.float32)  # 4-byte items at an odd address
    with pytest.raises(ValueError, match="aligned"):
        fastnn.from_numpy(odd)
    rec = np.zeros(4, dtype=[("a", np.float32), ("b", np.int8)])["a"]  # 5-byte stride
    with pytest.raises(ValueError, match="multiples of the 4-byte item size, got 5 bytes"):
        fastnn.from_numpy(rec)


def test_bfloat16_to_numpy_is_a_clear_error():
    t = fastnn.tensor([1.0]).to(dtype="bfloat16")
    with pytest.raises(TypeError, match="bfloat16 has no NumPy equivalent"):
        t.numpy()


# ---- configuration, SIMD levels, info, CLI -------------------------------------------------------
def test_threads_setting():
    before = fastnn.get_num_threads()
    fastnn.set_num_threads(1)
    assert fastnn.get_num_threads() == 1
    fastnn.set_num_threads(before)


def _run(code, **env):
    e = dict(os.environ)
    e.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=120)


@pytest.mark.parametrize("level", ["generic", "avx2", "avx512"])
def test_every_simd_level_imports_and_is_reported(level):
    from conftest import SIMD_LEVELS
    r = _run("import fastnn; print(fastnn.get_simd_level()); print(fastnn.info())", FASTNN_SIMD=level)
    if level in SIMD_LEVELS:
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[0] == level
        assert f"simd level          {level}" in r.stdout
    else:
        assert r.returncode != 0 and "FASTNN_SIMD" in r.stderr


def test_bad_simd_environment_is_a_clear_error():
    r = _run("import fastnn", FASTNN_SIMD="sse9")
    assert r.returncode != 0
    assert "FASTNN_SIMD: expected one of avx512, avx2, generic, got 'sse9'" in r.stderr


def test_info_reports_no_gpu():
    r = _run("import fastnn; i = fastnn.info(); print(i); assert i['gpu visible'].startswith('no')",
             FASTNN_CUDA_EMULATE="0")
    assert r.returncode == 0, r.stderr
    assert "cuda device         unavailable" in r.stdout
    assert "gpu visible         no" in r.stdout


def test_cli_info_and_module_entry_point():
    r = subprocess.run([sys.executable, "-m", "fastnn", "info"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "build mode" in r.stdout and "simd level" in r.stdout
