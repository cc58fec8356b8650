"""torch.nn modules whose forward (and backward) run fastnn kernels.

Linear and Conv2d subclass torch's own, so initialisation, parameters, state_dict and repr are
torch's; only forward changes. Attention is multi-head self-attention over (B, N, E) inputs.
"""
from __future__ import annotations

import torch

from . import _ops


class Linear(torch.nn.Linear):
    """torch.nn.Linear with forward = torch.ops.fastnn.linear."""

    def forward(self, x):
        return torch.ops.fastnn.linear(x, self.weight, self.bias)


class Conv2d(torch.nn.Conv2d):
    """torch.nn.Conv2d (padding_mode='zeros' only) with forward = torch.ops.fastnn.conv2d."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.padding_mode != "zeros":
            raise ValueError(f"fastnn.torch.Conv2d: argument 'padding_mode': expected 'zeros', got "
                             f"{self.padding_mode!r}")

    def forward(self, x):
        from . import conv2d
        return conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class Attention(torch.nn.Module):
    """Multi-head self-attention: x (B, N, E) -> (B, N, E).

    One fused QKV projection (fastnn linear), fastnn attention over the (B, H, N, D) views of it
    (strided, no copy), then the output projection. ``causal`` masks future tokens;
    ``key_padding_mask`` (B, N) bool, True = padding.
    """

    def __init__(self, embed_dim, num_heads, *, bias=True, causal=False, device=None, dtype=None):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"fastnn.torch.Attention: embed_dim ({embed_dim}) must be divisible by num_heads "
                             f"({num_heads})")
        self.embed_dim, self.num_heads, self.causal = embed_dim, num_heads, causal
        self.qkv = Linear(embed_dim, 3 * embed_dim, bias=bias, device=device, dtype=dtype)
        self.proj = Linear(embed_dim, embed_dim, bias=bias, device=device, dtype=dtype)

    def forward(self, x, key_padding_mask=None):
        b, n, e = x.shape
        h = self.num_heads
        q, k, v = self.qkv(x).view(b, n, 3, h, e // h).permute(2, 0, 3, 1, 4).unbind(0)
        out, _ = torch.ops.fastnn.attention(q, k, v, key_padding_mask, self.causal, None)
        return self.proj(out.transpose(1, 2).reshape(b, n, e))

    def extra_repr(self):
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, causal={self.causal}"


del _ops  # imported for its registrations
