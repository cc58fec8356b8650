"""CUDA GEMM (kernels/gemm.cu dispatcher, gemm_fp32.cu, gemm_tensor_core.cu) on device 'cuda'.

Runs on the CPU emulator of CUDA (conftest sets FASTNN_CUDA_EMULATE=1) in the three thread-resume
orders (forward, reverse, seeded random), against float64 NumPy references. Shapes are tails of every
tile (1, 17, 33, 65, 127, 129) and exact tile multiples (64, 128); both block tiles (64x64, 128x128)
of both paths are forced through fastnn.cuda.set_gemm_tile, and the heuristic is checked separately.

Tolerances, per path (element-wise, M = |op(A)| @ |op(B)| in float64, K the inner dimension):
* FP32 (CUDA cores): the CPU GEMM's bound (tests/test_gemm.py): 4 sqrt(K) eps32 M + 4 eps32 |C|.
* TF32: each operand is rounded to a 10-bit mantissa (relative error <= 2^-11 each, so <= 2^-10 + 2^-22
  per product), then summed in float32: 2^-10 M * 1.01 + the FP32 bound. A dropped product term
  (~ M / K on average) is far above this for K <= 129 (2^-10 * K << 1).
* BF16 / FP16 operands: the reference is computed from the 16-bit-rounded inputs; the products of two
  16-bit values are exact in float32 and only the float32 accumulation errs: the FP32 bound.
The fused activations add <= 2e-7 (1 + |ref|) and scale their input's error by <= 1.13 (gelu).
"""
from __future__ import annotations

import numpy as np
import pytest
from test_gemm import EPS, act_ref, bound

import fastnn
from fastnn import nn, ops

if not fastnn.cuda.is_available():
    pytest.skip("device 'cuda' not available (neither a GPU nor the emulator)", allow_module_level=True)
emu = pytest.importorskip("fastnn._cuda_emu")

ORDERS = ["forward", "reverse", "random"]
ACTS = ["relu", "gelu", "gelu_tanh", "sigmoid", "tanh"]
PATHS = ["fp32", "tf32", "bf16", "fp16"]
TILES = [64, 128]


@pytest.fixture(params=ORDERS, autouse=True)
def order(request):
    before = emu._get_order()
    emu._set_order(request.param, 4321)
    yield request.param
    emu._set_order(*before)


@pytest.fixture(autouse=True)
def restore_config():
    tf32, tile = fastnn.cuda.get_allow_tf32(), fastnn.cuda.get_gemm_tile()
    yield
    fastnn.cuda.set_allow_tf32(tf32)
    fastnn.cuda.set_gemm_tile(tile)


def _dtype(path):
    return {"bf16": "bfloat16", "fp16": "float16"}.get(path, "float32")


def use_path(path, tile=None):
    fastnn.cuda.set_allow_tf32(path == "tf32")
    fastnn.cuda.set_gemm_tile(tile)


def to_cuda(x, path="fp32"):
    """A device tensor of the path's operand dtype and the float64 values it holds (rounded)."""
    t = fastnn.from_numpy(np.ascontiguousarray(x, np.float32)).to("cuda")
    if _dtype(path) != "float32":
        t = t.to(dtype=_dtype(path))
    return t, t.to(dtype="float32").cpu().numpy().astype(np.float64)


def host(t):
    out = t.cpu().numpy()
    assert out.dtype == np.float32
    return out.astype(np.float64)


def path_tol(path, a64, b64, ref):
    """The module docstring's bound for op(A) @ op(B) (a64, b64 as float64 with the operand rounding)."""
    k = a64.shape[-1]
    tol = bound(a64, b64, k, ref)
    if path == "tf32":
        tol = tol + 1.01 * 2.0**-10 * (np.abs(a64) @ np.abs(b64))
    return tol


def check(got, ref, tol, act=None):
    if act is not None:
        tol = 1.13 * tol + 2e-7 * (1.0 + np.abs(ref))
    assert got.shape == ref.shape, (got.shape, ref.shape)
    err = np.abs(got - ref)
    bad = ~(err <= tol)
    assert not bad.any(), f"{bad.sum()} of {bad.size} elements off; max err {err.max():.3g}, tol {tol[bad][0]:.3g}"


def gemm_case(rng, path, m, n, k, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, bias=False, act=None,
              tile=None):
    use_path(path, tile)
    a, a64 = to_cuda(rng.uniform(-1, 1, (k, m) if trans_a else (m, k)), path)
    b, b64 = to_cuda(rng.uniform(-1, 1, (n, k) if trans_b else (k, n)), path)
    oa, ob = (a64.T if trans_a else a64), (b64.T if trans_b else b64)
    c_np = rng.uniform(-1, 1, (m, n)).astype(np.float32)
    bias_np = rng.uniform(-1, 1, n).astype(np.float32)
    got = ops.gemm(a, b, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta,
                   c=fastnn.from_numpy(c_np).to("cuda") if beta != 0.0 else None,
                   bias=fastnn.from_numpy(bias_np).to("cuda") if bias else None, activation=act)
    z = alpha * (oa @ ob)
    tol = abs(alpha) * path_tol(path, oa, ob, z)
    if beta != 0.0:
        z = z + beta * c_np.astype(np.float64)
        tol = tol + 2 * EPS * abs(beta) * np.abs(c_np)
    if bias:
        z = z + bias_np
    tol = tol + 4 * EPS * np.abs(z)
    check(host(got), act_ref(z, act), tol, act)


# ---- every path x both tiles x trans combos x tails ---------------------------------------------------
SHAPES = [(1, 1, 1), (17, 33, 65), (129, 127, 17), (64, 64, 64)]


@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True), (True, True)])
def test_paths_tiles_trans(rng, path, tile, trans_a, trans_b):
    for m, n, k in SHAPES:
        if path == "fp16" and m * n * k > (1 if tile == 128 else 40000):
            continue  # the emulator converts every half operand in software: fp16 (same code as bf16) small
        gemm_case(rng, path, m, n, k, trans_a, trans_b, tile=tile)


@pytest.mark.parametrize("path", PATHS[:3])
def test_exact_tile_multiples_and_k_tails(rng, path):
    # 128x128 blocks, K = one and several K-steps of each path (8 fp32, 16 tf32, 32 bf16/fp16) + tails.
    for k in (8, 16, 32, 33, 96):
        gemm_case(rng, path, 128, 128, k, tile=128)


@pytest.mark.parametrize("path", PATHS)
def test_epilogue(rng, path):
    for act in [None, "gelu"] if path == "fp16" else [None] + ACTS:  # fp16: same epilogue code, slow operands
        gemm_case(rng, path, 33, 65, 17, alpha=-1.5, beta=0.75, bias=True, act=act)
    gemm_case(rng, path, 20, 9, 0, alpha=2.0, beta=0.5, bias=True, act="tanh")  # K = 0: epilogue only


def test_beta_zero_ignores_nan_c(rng):
    a, a64 = to_cuda(rng.uniform(-1, 1, (17, 9)))
    b, b64 = to_cuda(rng.uniform(-1, 1, (9, 33)))
    out = fastnn.from_numpy(np.full((17, 33), np.nan, np.float32)).to("cuda")
    ops.gemm(a, b, out=out)
    check(host(out), a64 @ b64, bound(a64, b64, 9, a64 @ b64))
    ops.gemm(a, b, c=out, beta=1.0, out=out)  # in place: C <- A B + C
    check(host(out), 2 * (a64 @ b64), 2 * bound(a64, b64, 9, a64 @ b64))


@pytest.mark.parametrize("path", PATHS)
def test_strided_views(rng, path):
    """Sliced / transposed / offset views: the scalar (non-16-byte) staging and both smem layouts."""
    use_path(path)
    base_a, base_a64 = to_cuda(rng.uniform(-1, 1, (40, 70)), path)
    base_b, base_b64 = to_cuda(rng.uniform(-1, 1, (70, 50)), path)
    cases = [
        (base_a[1:34, 3:68], base_a64[1:34, 3:68]),  # offset rows and columns: misaligned
        (base_a[::2, 1::3], base_a64[::2, 1::3]),  # non-unit strides in both dims
        (base_a[:, :16].T, base_a64[:, :16].T),  # m-contiguous (the k-major layout)
    ]
    for a, a64 in cases:
        k = a64.shape[1]
        b, b64 = base_b[1:k + 1, 2:35], base_b64[1:k + 1, 2:35]
        ref = a64 @ b64
        check(host(ops.gemm(a, b)), ref, path_tol(path, a64, b64, ref) + 4 * EPS * np.abs(ref))
    # Strided output (every second column of a wider tensor).
    out = fastnn.from_numpy(np.zeros((33, 66), np.float32)).to("cuda")
    a, a64 = base_a[:33, :16], base_a64[:33, :16]
    b, b64 = base_b[:16, :33], base_b64[:16, :33]
    ops.gemm(a, b, out=out[:, ::2])
    full = host(out)
    ref = a64 @ b64
    check(full[:, ::2], ref, path_tol(path, a64, b64, ref) + 4 * EPS * np.abs(ref))
    assert not full[:, 1::2].any()


def test_heuristic_plan():
    plan = fastnn.cuda.gemm_plan
    fastnn.cuda.set_gemm_tile(None)
    fastnn.cuda.set_allow_tf32(False)
    sms = 132  # the emulated H100
    assert plan(4096, 4096, 4096) == ("fp32", 128)
    assert plan(129, 129, 64) == ("fp32", 64)  # 4 blocks of 128x128 < 132 SMs
    assert plan(129, 129, 64, batch=sms // 4) == ("fp32", 128)
    assert plan(129, 129, 64, batch=sms // 4 - 1) == ("fp32", 64)
    assert plan(127, 1 << 20, 64) == ("fp32", 64)  # thin: M < 128
    assert plan(4096, 4096, 64, dtype="bfloat16") == ("bf16", 128)
    assert plan(64, 64, 64, dtype="float16") == ("fp16", 64)
    fastnn.cuda.set_allow_tf32(True)
    assert fastnn.cuda.get_allow_tf32()
    assert plan(4096, 4096, 64) == ("tf32", 128)
    assert plan(4096, 4096, 64, dtype="bfloat16") == ("bf16", 128)  # the flag concerns float32 only
    fastnn.cuda.set_gemm_tile(64)
    assert fastnn.cuda.get_gemm_tile() == 64
    assert plan(4096, 4096, 64) == ("tf32", 64)
    fastnn.cuda.set_gemm_tile(128)
    assert plan(1, 1, 1) == ("tf32", 128)


def test_heuristic_128_tile_runs(rng):
    """The heuristic itself picks 128x128 for a batch filling the SMs (cheap K on the FP32 path)."""
    use_path("fp32")
    assert fastnn.cuda.gemm_plan(129, 129, 3, batch=33) == ("fp32", 128)
    a, a64 = to_cuda(rng.uniform(-1, 1, (33, 129, 3)))
    b, b64 = to_cuda(rng.uniform(-1, 1, (3, 129)))
    ref = a64 @ b64
    check(host(ops.matmul(a, b)), ref, 4 * np.sqrt(3) * EPS * (np.abs(a64) @ np.abs(b64)) + 4 * EPS * np.abs(ref))


# ---- batched matmul, linear, backward on 'cuda' -------------------------------------------------------
@pytest.mark.parametrize("path", PATHS)
def test_batched_matmul_broadcast(rng, path):
    use_path(path)
    shapes = [((2, 3, 17, 9), (9, 5)), ((3, 1, 4, 7), (2, 7, 6)), ((5, 33), (2, 3, 33, 2)), ((9,), (2, 9, 4)),
              ((2, 1, 6, 8), (1, 3, 8, 5))]
    for sa, sb in shapes[:1] if path == "fp16" else shapes:
        a, a64 = to_cuda(rng.uniform(-1, 1, sa), path)
        b, b64 = to_cuda(rng.uniform(-1, 1, sb), path)
        ref = np.matmul(a64, b64)
        got = host(ops.matmul(a, b))
        k = sa[-1]
        mag = np.matmul(np.abs(a64), np.abs(b64))
        tol = 4 * np.sqrt(k) * EPS * mag + 8 * EPS * np.abs(ref)
        if path == "tf32":
            tol = tol + 1.01 * 2.0**-10 * mag
        check(got, ref, tol)


def test_matmul_backward(rng):
    a, a64 = to_cuda(rng.uniform(-1, 1, (3, 1, 5, 7)))
    b, b64 = to_cuda(rng.uniform(-1, 1, (2, 7, 4)))
    g, g64 = to_cuda(rng.uniform(-1, 1, (3, 2, 5, 4)))
    ga, gb = ops.matmul_backward(g, a, b)
    ref_a = (g64 @ np.swapaxes(b64, -1, -2)).sum(axis=1, keepdims=True)
    ref_b = (np.swapaxes(a64, -1, -2) @ g64).sum(axis=0)
    check(host(ga), ref_a, 1e-5 * (1 + np.abs(ref_a)))
    check(host(gb), ref_b, 1e-5 * (1 + np.abs(ref_b)))


@pytest.mark.parametrize("path", PATHS)
def test_linear_and_backward(rng, path):
    use_path(path)
    x, x64 = to_cuda(rng.uniform(-1, 1, (2, 17, 33)), path)
    w, w64 = to_cuda(rng.uniform(-1, 1, (9, 33)), path)
    bias_np = rng.uniform(-1, 1, 9).astype(np.float32)
    got = host(ops.linear(x, w, fastnn.from_numpy(bias_np).to("cuda"), activation="gelu"))
    z = x64 @ w64.T + bias_np
    tol = path_tol(path, x64.reshape(-1, 33), w64.T, z.reshape(-1, 9)).reshape(z.shape) + 4 * EPS * np.abs(z)
    check(got, act_ref(z, "gelu"), tol, "gelu")
    if path != "fp32":
        return
    g, g64 = to_cuda(rng.uniform(-1, 1, (2, 17, 9)))
    gx, gw, gb = ops.linear_backward(g, x, w)
    check(host(gx), g64 @ w64, 1e-5 * (1 + np.abs(g64 @ w64)))
    ref_w = g64.reshape(-1, 9).T @ x64.reshape(-1, 33)
    check(host(gw), ref_w, 1e-5 * (1 + np.abs(ref_w)))
    check(host(gb), g64.sum(axis=(0, 1)), 1e-5 * (1 + np.abs(g64.sum(axis=(0, 1)))))


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_on_cpu_matches_cuda(rng, dtype):
    """The CPU widens 16-bit operands to float32 (exact): same products as the tensor cores."""
    a_np, b_np = rng.uniform(-1, 1, (17, 33)), rng.uniform(-1, 1, (33, 9))
    a_c, a64 = to_cuda(a_np, "bf16" if dtype == "bfloat16" else "fp16")
    b_c, b64 = to_cuda(b_np, "bf16" if dtype == "bfloat16" else "fp16")
    ref = a64 @ b64
    tol = bound(a64, b64, 33, ref) + 4 * EPS * np.abs(ref)
    check(host(ops.gemm(a_c, b_c)), ref, tol)
    check(host(ops.gemm(a_c.cpu(), b_c.cpu())), ref, tol)
    check(host(ops.linear(a_c.cpu(), b_c.cpu().T.contiguous())), ref, tol)
    check(host(ops.matmul(a_c.cpu(), b_c.cpu())), ref, tol)


# ---- argument errors ------------------------------------------------------------------------------------
def test_errors(rng):
    a, _ = to_cuda(rng.uniform(-1, 1, (4, 5)), "bf16")
    b, _ = to_cuda(rng.uniform(-1, 1, (5, 3)))
    with pytest.raises(TypeError, match="argument 'b': expected dtype bfloat16"):
        ops.gemm(a, b)
    b16, _ = to_cuda(rng.uniform(-1, 1, (5, 3)), "bf16")
    bias16, _ = to_cuda(rng.uniform(-1, 1, 3), "bf16")
    with pytest.raises(TypeError, match="argument 'bias': expected 1-D float32"):
        ops.gemm(a, b16, bias=bias16)
    with pytest.raises(TypeError, match="argument 'grad'"):  # backward: float32 only
        ops.matmul_backward(to_cuda(np.ones((4, 3)), "bf16")[0], to_cuda(np.ones((4, 5)))[0], b)
    i32 = fastnn.from_numpy(np.ones((4, 5), np.int32)).to("cuda")
    with pytest.raises(TypeError, match="float32, bfloat16 or float16"):
        ops.matmul(i32, b)
    with pytest.raises(ValueError, match="expected 0 \\(heuristic\\), 64 or 128, got 7"):
        fastnn.cuda.set_gemm_tile(7)
    with pytest.raises(TypeError, match="argument 'dtype'"):
        fastnn.cuda.gemm_plan(4, 4, 4, dtype="int32")
    with pytest.raises(ValueError, match="argument 'device': expected a CUDA device"):
        fastnn.cuda.gemm_plan(4, 4, 4, device="cpu")


def test_grid_limit_is_an_error():
    fastnn.cuda.set_gemm_tile(64)
    m = 65535 * 64 + 1
    a = fastnn.from_numpy(np.zeros((m, 1), np.float32)).to("cuda")
    b = fastnn.from_numpy(np.zeros((1, 1), np.float32)).to("cuda")
    with pytest.raises(ValueError, match="exceeds the CUDA grid limit"):
        ops.gemm(a, b)


# ---- DLPack export / import of 'cuda' tensors ------------------------------------------------------------
def test_dlpack_cuda_roundtrip(rng):
    x = rng.uniform(-1, 1, (3, 5)).astype(np.float32)
    t = fastnn.from_numpy(x).to("cuda")
    assert t.__dlpack_device__() == (2, 0)  # (kDLCUDA, device 0)
    # Per the spec the consumer passes its stream: 1 legacy default, 2 per-thread default, -1 no sync.
    for stream in (None, 1, 2, -1):
        cap = t.__dlpack__(stream=stream)
        assert 'capsule object "dltensor"' in repr(cap)
        u = fastnn.from_dlpack(cap)
        assert str(u.device) == "cuda:0"
        np.testing.assert_array_equal(u.cpu().numpy(), x)
    assert 'capsule object "dltensor_versioned"' in repr(t.__dlpack__(stream=1, max_version=(1, 0)))
    # The protocol object path (fastnn asks for stream 1) shares memory: a write through the import shows.
    u = fastnn.from_dlpack(t)
    a, b = (fastnn.from_numpy(np.eye(3, dtype=np.float32) * 2).to("cuda"),
            fastnn.from_numpy(x).to("cuda"))
    ops.gemm(a, b, out=u)
    np.testing.assert_array_equal(t.cpu().numpy(), 2 * x)
    # A copy to the host on request, refused when copy=False.
    host_cap = t.__dlpack__(dl_device=(1, 0), copy=True)
    np.testing.assert_array_equal(fastnn.from_dlpack(host_cap).numpy(), 2 * x)
    with pytest.raises(BufferError, match="copy=False"):
        t.__dlpack__(dl_device=(1, 0), copy=False)


def test_dlpack_stream_argument_errors():
    t = fastnn.from_numpy(np.ones((2, 2), np.float32)).to("cuda")
    with pytest.raises(ValueError, match="0 is ambiguous"):
        t.__dlpack__(stream=0)
    with pytest.raises(TypeError, match="argument 'stream': expected None or an integer"):
        t.__dlpack__(stream="1")
    with pytest.raises(ValueError, match="expected None for a CPU tensor"):
        t.cpu().__dlpack__(stream=1)


def test_dlpack_torch_cpu_refuses_cuda_tensor():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this torch has CUDA")
    t = fastnn.from_numpy(np.ones((2, 2), np.float32)).to("cuda")
    with pytest.raises((RuntimeError, AssertionError, BufferError, TypeError), match="CUDA"):
        torch.from_dlpack(t)
    np.testing.assert_array_equal(t.cpu().numpy(), 1.0)  # still usable afterwards


# ---- issue 7 acceptance: a small MLP training step on 'cuda' ----------------------------------------------
def test_mlp_training_step_on_cuda_matches_cpu():
    """Issue 7 acceptance: linear + relu + cross-entropy + Adam runs end-to-end on 'cuda' (emulated) and
    matches the same step on the CPU (float32 kernels on both sides; tolerance 1e-5 relative, far below a
    wrong gradient or a skipped update, which change parameters by ~lr = 1e-2)."""
    rng = np.random.default_rng(7)
    x_np = rng.standard_normal((6, 17)).astype(np.float32)
    y_np = np.array([0, 2, 1, 2, 0, 1])

    def build():
        return nn.Sequential(nn.Linear(17, 33), nn.ReLU(), nn.Linear(33, 3))

    cpu_model, cuda_model = build(), build()
    cuda_model.load_state_dict(cpu_model.state_dict())
    cuda_model = cuda_model.to("cuda")
    assert all(str(p.device) == "cuda:0" for p in cuda_model.parameters())
    results = []
    for model, dev in ((cpu_model, "cpu"), (cuda_model, "cuda")):
        opt = fastnn.optim.Adam(model.parameters(), lr=1e-2)
        x, y = fastnn.from_numpy(x_np).to(dev), fastnn.from_numpy(y_np).to(dev)
        losses = []
        for _ in range(2):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        results.append((losses, {k: v.cpu().numpy() for k, v in model.state_dict().items()}))
    (l_cpu, p_cpu), (l_cuda, p_cuda) = results
    np.testing.assert_allclose(l_cuda, l_cpu, rtol=1e-5)
    assert l_cuda[1] < l_cuda[0]
    for k in p_cpu:
        np.testing.assert_allclose(p_cuda[k], p_cpu[k], rtol=1e-5, atol=1e-6, err_msg=k)
