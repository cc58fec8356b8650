"""fastnn.torch: custom ops (opcheck, results and gradients against torch's own ops), modules,
torch.compile, and FusedAdam against torch.optim.Adam.

References are torch's ops evaluated in float64 on the same (float32-valued) inputs, so the
only error measured is fastnn's float32 arithmetic: sums of K products of O(1) numbers carry
an absolute error ~ sqrt(K) * 2^-24 * |typical partial sum|; with K <= ~300 here that is well
below 1e-4, hence atol = rtol = 1e-4 (2e-4 for gradients, which sum over one more axis).
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ft = pytest.importorskip("fastnn.torch")
F = torch.nn.functional
from torch.library import opcheck  # noqa: E402

TOL = dict(rtol=1e-4, atol=1e-4)
GTOL = dict(rtol=2e-4, atol=2e-4)


def randn(*shape, requires_grad=False, seed=None):
    g = torch.Generator().manual_seed(hash((shape, seed)) % 2**31)
    return torch.randn(*shape, generator=g).requires_grad_(requires_grad)


def grads_of(fn, inputs, grad_out):
    """Gradients of sum(fn(*inputs) * grad_out) w.r.t. the inputs that require grad."""
    out = fn(*inputs)
    leaves = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    return out, torch.autograd.grad(out, leaves, grad_out)


def f64(ts):
    return [t.detach().double().requires_grad_(t.requires_grad) if isinstance(t, torch.Tensor) else t for t in ts]


def check_against(fast, ref, inputs, tol=TOL, gtol=GTOL):
    """fast(*inputs) in float32 vs ref(*inputs) in float64: values and input gradients."""
    out = fast(*inputs)
    g = randn(*out.shape, seed="g")
    out, grads = grads_of(fast, inputs, g)
    ref_out, ref_grads = grads_of(ref, f64(inputs), g.double())
    torch.testing.assert_close(out.double(), ref_out, **tol)
    assert len(grads) == len(ref_grads) > 0
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a.double(), b, **gtol)


# ---- opcheck on every op (schema, autograd registration, fake tensors, AOT dispatch) ---------------
def _opcheck_cases():
    r = lambda *s: randn(*s, requires_grad=True)  # noqa: E731
    yield "gemm", (r(17, 33), r(33, 5), None, None, False, False, 1.0, 0.0)
    yield "gemm", (r(33, 17), r(5, 33), r(17, 5), r(5), True, True, 0.5, 2.0)
    yield "linear", (r(2, 3, 17), r(9, 17), r(9))
    yield "linear", (r(1, 65), r(1, 65), None)
    yield "linear_backward", (randn(4, 9), randn(4, 17), randn(9, 17))
    yield "conv2d", (r(2, 3, 9, 9), r(4, 3, 3, 3), r(4), [1, 2], [1, 0], [1, 1], 1)
    yield "conv2d", (r(1, 4, 7, 6), r(4, 2, 3, 2), None, [2, 1], [0, 1], [2, 1], 2)
    yield "conv2d_backward", (randn(2, 4, 5, 5), randn(2, 3, 7, 7), randn(4, 3, 3, 3), [1, 1], [0, 0], [1, 1], 1,
                              True, True, True)
    yield "conv2d_backward", (randn(2, 4, 5, 5), randn(2, 3, 7, 7), randn(4, 3, 3, 3), [1, 1], [0, 0], [1, 1], 1,
                              False, True, False)
    yield "attention", (r(2, 3, 5, 8), r(2, 3, 7, 8), r(2, 3, 7, 8), None, False, None)
    yield "attention", (r(1, 2, 17, 16), r(1, 2, 17, 16), r(1, 2, 17, 16), torch.tensor([[False] * 16 + [True]]),
                        True, 0.3)
    q, k, v = randn(1, 2, 6, 8), randn(1, 2, 9, 8), randn(1, 2, 9, 8)
    out, lse = torch.ops.fastnn.attention(q, k, v, None, False, None)
    yield "attention_backward", (randn(1, 2, 6, 8), q, k, v, out, lse, None, False, None)
    ps = [randn(17), randn(3, 5)]
    for amsgrad in (False, True):
        yield "adam_", ([p.clone() for p in ps], [randn(17), randn(3, 5)], [torch.zeros(17), torch.zeros(3, 5)],
                        [torch.zeros(17), torch.zeros(3, 5)], [torch.zeros(17), torch.zeros(3, 5)] if amsgrad else [],
                        3, 1e-2, 0.9, 0.999, 1e-8, 0.1, amsgrad, False, amsgrad)


@pytest.mark.parametrize("name,args", list(_opcheck_cases()), ids=lambda v: v if isinstance(v, str) else "")
def test_opcheck(name, args):
    opcheck(getattr(torch.ops.fastnn, name).default, args)


def test_every_public_op_is_registered():
    for name in ["gemm", "linear", "conv2d", "attention", "adam_", "linear_backward", "conv2d_backward",
                 "attention_backward"]:
        assert hasattr(torch.ops.fastnn, name), name
    schema = str(torch.ops.fastnn.adam_.default._schema)
    for arg in ("params", "exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs"):
        assert f"Tensor(" in schema and f"!)[] {arg}" in schema, (arg, schema)
    assert "!)[] grads" not in schema


# ---- results and gradients against torch's ops -------------------------------------------------------
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (17, 33, 65), (64, 32, 128), (129, 5, 127)])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_matches_torch(m, n, k, trans_a, trans_b):
    a = randn(*((k, m) if trans_a else (m, k)), requires_grad=True)
    b = randn(*((n, k) if trans_b else (k, n)), requires_grad=True)
    c, bias = randn(m, n, requires_grad=True), randn(n, requires_grad=True)

    def ref(a, b, c, bias):
        return 0.5 * ((a.T if trans_a else a) @ (b.T if trans_b else b)) + 2.0 * c + bias

    def fast(a, b, c, bias):
        return ft.gemm(a, b, trans_a=trans_a, trans_b=trans_b, alpha=0.5, beta=2.0, c=c, bias=bias)

    check_against(fast, ref, [a, b, c, bias])


@pytest.mark.parametrize("shape,out_features,bias", [((1, 1), 1, True), ((17, 33), 65, True), ((2, 5, 64), 32, False),
                                                     ((3, 127), 129, True)])
def test_linear_matches_torch(shape, out_features, bias):
    x = randn(*shape, requires_grad=True)
    w = randn(out_features, shape[-1], requires_grad=True)
    b = randn(out_features, requires_grad=True) if bias else None
    check_against(ft.linear, F.linear, [x, w, b])


@pytest.mark.parametrize("n,c,h,w,o,k,stride,padding,dilation,groups", [
    (1, 1, 1, 1, 1, 1, 1, 0, 1, 1),
    (2, 3, 17, 13, 8, 3, 1, 1, 1, 1),
    (2, 4, 9, 9, 6, 3, 2, 0, 1, 2),
    (1, 5, 12, 11, 5, 3, 1, 2, 2, 5),   # depthwise, dilated
    (3, 2, 8, 8, 4, (3, 1), (1, 2), (1, 0), 1, 1),
])
def test_conv2d_matches_torch(n, c, h, w, o, k, stride, padding, dilation, groups):
    kh, kw = (k, k) if isinstance(k, int) else k
    x = randn(n, c, h, w, requires_grad=True)
    wt = randn(o, c // groups, kh, kw, requires_grad=True)
    b = randn(o, requires_grad=True)
    check_against(lambda x, wt, b: ft.conv2d(x, wt, b, stride, padding, dilation, groups),
                  lambda x, wt, b: F.conv2d(x, wt, b, stride, padding, dilation, groups), [x, wt, b])


def test_conv2d_string_padding():
    x, w = randn(1, 2, 9, 9), randn(3, 2, 3, 3)
    torch.testing.assert_close(ft.conv2d(x, w, padding="same"), F.conv2d(x, w, padding="same"), **TOL)
    torch.testing.assert_close(ft.conv2d(x, w, padding="valid"), F.conv2d(x, w, padding="valid"), **TOL)
    with pytest.raises(ValueError, match="same"):
        ft.conv2d(x, randn(3, 2, 2, 2), padding="same")


@pytest.mark.parametrize("b,h,nq,nk,d", [(1, 1, 1, 1, 1), (2, 3, 17, 17, 16), (1, 2, 33, 65, 32), (2, 1, 64, 64, 64)])
@pytest.mark.parametrize("causal", [False, True])
def test_attention_matches_sdpa(b, h, nq, nk, d, causal):
    q, k, v = (randn(b, h, n, d, requires_grad=True, seed=s) for n, s in ((nq, 0), (nk, 1), (nk, 2)))
    # sdpa's is_causal is top-left aligned; fastnn's is bottom-right (equal when nq == nk): give
    # sdpa the bottom-right mask explicitly (nq <= nk here, so no row is fully masked).
    mask = torch.ones(nq, nk, dtype=torch.bool).tril(diagonal=nk - nq) if causal else None
    check_against(lambda q, k, v: ft.attention(q, k, v, causal=causal),
                  lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask), [q, k, v])


def test_attention_strided_inputs_and_key_padding_mask():
    # (B, N, H, D) tensors seen through a permute: no copy on the fastnn side.
    q, k, v = (randn(2, n, 3, 8, requires_grad=True, seed=n).permute(0, 2, 1, 3) for n in (5, 7, 7))
    q.retain_grad()
    mask = torch.tensor([[False] * 5 + [True] * 2, [False] * 7])

    def ref(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=~mask[:, None, None, :])

    check_against(lambda q, k, v: ft.attention(q, k, v, key_padding_mask=mask, scale=8 ** -0.5), ref, [q, k, v])


def test_attention_module_matches_torch():
    torch.manual_seed(0)
    m = ft.Attention(32, 4, causal=True)
    x = randn(2, 9, 32, requires_grad=True)

    def ref(x):
        b, n, e = x.shape
        q, k, v = F.linear(x, m.qkv.weight.double(), m.qkv.bias.double()).view(b, n, 3, 4, 8).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, n, e)
        return F.linear(out, m.proj.weight.double(), m.proj.bias.double())

    check_against(m, ref, [x])
    m(x).sum().backward()
    assert m.qkv.weight.grad is not None and m.proj.bias.grad is not None


def test_modules_are_drop_in():
    torch.manual_seed(0)
    lin, ref_lin = ft.Linear(17, 5), torch.nn.Linear(17, 5)
    ref_lin.load_state_dict(lin.state_dict())
    conv, ref_conv = ft.Conv2d(3, 4, 3, stride=2, padding=1), torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
    ref_conv.load_state_dict(conv.state_dict())
    x, xi = randn(4, 17), randn(2, 3, 11, 11)
    torch.testing.assert_close(lin(x), ref_lin(x), **TOL)
    torch.testing.assert_close(conv(xi), ref_conv(xi), **TOL)
    with pytest.raises(ValueError, match="padding_mode"):
        ft.Conv2d(3, 4, 3, padding_mode="reflect")


def test_errors_surface_as_python_exceptions():
    with pytest.raises(ValueError, match="linear"):
        ft.linear(randn(3, 4), randn(5, 6))
    with pytest.raises(TypeError):
        ft.linear(randn(3, 4).double(), randn(5, 4).double())
    with pytest.raises(ValueError):
        ft.conv2d(randn(1, 3, 5, 5), randn(2, 4, 3, 3))


def test_zero_copy_exchange():
    # Inputs: the kernel reads torch's memory in place (adam_ updates torch tensors through DLPack).
    p, g = randn(33), randn(33)
    ptr = p.data_ptr()
    before = p.clone()
    ft.adam_([p], [g], [torch.zeros(33)], [torch.zeros(33)], step=1, lr=0.1)
    assert p.data_ptr() == ptr and not torch.equal(p, before)
    # Outputs: the torch result views fastnn's buffer (no copy on the way back).
    import fastnn
    x, w = randn(3, 4), randn(5, 4)
    out = fastnn.ops.linear(x, w)
    t = torch.from_dlpack(out)
    assert t.data_ptr() == np.asarray(out).__array_interface__["data"][0]


def test_import_fastnn_does_not_import_torch():
    code = "import sys, fastnn; assert 'torch' not in sys.modules, 'fastnn imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ))


# ---- FusedAdam against torch.optim.Adam --------------------------------------------------------------
def _mlp(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(ft.Linear(13, 32), torch.nn.Tanh(), ft.Linear(32, 3))


def _train(model, opt, steps, seed=1):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(64, 13, generator=g), torch.randint(0, 3, (64,), generator=g)
    for _ in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return loss.item()


@pytest.mark.parametrize("kwargs", [dict(lr=1e-2), dict(lr=3e-3, weight_decay=0.1, amsgrad=True),
                                    dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, maximize=True),
                                    dict(lr=1e-2, weight_decay=0.05, decoupled_weight_decay=True)])
def test_fused_adam_trains_like_torch_adam(kwargs):
    fast, ref = _mlp(0), _mlp(0)
    # A second param group with its own lr, as torch allows.
    groups = lambda m: [{"params": m[0].parameters()}, {"params": m[2].parameters(), "lr": 5e-3}]  # noqa: E731
    loss_fast = _train(fast, ft.FusedAdam(groups(fast), **kwargs), 25)
    loss_ref = _train(ref, torch.optim.Adam(groups(ref), **kwargs), 25)
    # Same formulas in float32; the kernel may order/fuse operations differently (FMA), so the
    # parameters agree to a few float32 ulps after 25 steps.
    for a, b in zip(fast.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert loss_fast == pytest.approx(loss_ref, rel=1e-5)
    if not kwargs.get("maximize"):
        assert loss_fast < _train(_mlp(0), torch.optim.SGD(_mlp(0).parameters(), lr=0.0), 1)


def test_fused_adam_state_dict_interchanges_with_torch_adam():
    fast, ref = _mlp(0), _mlp(0)
    opt_fast, opt_ref = ft.FusedAdam(fast.parameters(), lr=1e-2), torch.optim.Adam(ref.parameters(), lr=1e-2)
    _train(fast, opt_fast, 5)
    _train(ref, opt_ref, 5)
    sd = opt_fast.state_dict()
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq"} and float(sd["state"][0]["step"]) == 5.0
    # Continue each from the other's state: torch from FusedAdam's, FusedAdam from torch's.
    opt_ref2 = torch.optim.Adam(ref.parameters(), lr=1e-2)
    opt_ref2.load_state_dict(sd)
    opt_fast2 = ft.FusedAdam(fast.parameters(), lr=1e-2)
    opt_fast2.load_state_dict(opt_ref.state_dict())
    _train(fast, opt_fast2, 5)
    _train(ref, opt_ref2, 5)
    for a, b in zip(fast.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert float(opt_fast2.state_dict()["state"][0]["step"]) == 10.0


def test_fused_adam_rejects_bad_input():
    with pytest.raises(ValueError, match="lr"):
        ft.FusedAdam([torch.zeros(2, requires_grad=True)], lr=-1)
    p = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    p.grad = torch.ones(3, dtype=torch.float64)
    with pytest.raises(TypeError, match="float32"):
        ft.FusedAdam([p]).step()


# ---- torch.compile -----------------------------------------------------------------------------------
class _SmallNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = ft.Conv2d(1, 4, 3, padding=1)
        self.attn = ft.Attention(16, 2)
        self.head = ft.Linear(16, 3)

    def forward(self, x):                       # x (B, 1, 4, 4)
        h = self.conv(x).flatten(2)             # (B, 4, 16): 4 tokens of 16 features
        h = self.attn(h)
        return self.head(h.mean(1))


@pytest.mark.slow
def test_torch_compile_fullgraph():
    torch.manual_seed(0)
    model = _SmallNet()
    x = randn(2, 1, 4, 4)
    # fullgraph=True raises on any graph break: the fastnn ops are traced through their fake
    # implementations and stay opaque calls in the graph. Inductor compiles the glue (flatten,
    # mean, ...) to C++ at run time with g++ -- tens of seconds here, hence one inference graph.
    with torch.no_grad():
        eager = model(x)
        out = torch.compile(model, fullgraph=True)(x)
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-6)
    # Training graph (forward + the registered backward, through AOTAutograd) without the C++
    # compilation: aot_eager runs the traced graphs in eager mode.
    out = torch.compile(model, fullgraph=True, backend="aot_eager")(x)
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-6)
    out.sum().backward()
    compiled_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model(x).sum().backward()
    for a, b in zip(compiled_grads, (p.grad for p in model.parameters())):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_torch_export_traces_the_ops():
    lin = ft.Linear(8, 4)
    ep = torch.export.export(lin, (randn(2, 8),))
    assert "fastnn.linear" in str(ep.graph)
    torch.testing.assert_close(ep.module()(randn(2, 8)), lin(randn(2, 8)))
