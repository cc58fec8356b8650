"""MultiHeadAttention (fused QKV projection + fused attention kernel) and the pre-LN
Transformer encoder layer. Batch-first: x is (B, N, E)."""
from __future__ import annotations

import math

from .. import _C
from . import functional as F
from . import init
from .container import ModuleList
from .layers import Dropout, LayerNorm, Linear
from .module import Module
from .parameter import Parameter


class MultiHeadAttention(Module):
    """Self-attention: one (3E, E) projection gives q, k, v as strided views (no split copies),
    fastnn.ops.attention runs on them, then the output projection. ``key_padding_mask``
    (B, N) bool: True marks a padding key to ignore (PyTorch's convention). Init as PyTorch's
    nn.MultiheadAttention (xavier_uniform_ in-projection, zero biases)."""

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True):
        super().__init__()
        if num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(f"MultiHeadAttention: argument 'num_heads': expected a divisor of embed_dim={embed_dim}, "
                             f"got {num_heads}")
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, dropout
        self.in_proj_weight = Parameter(_C.empty([3 * embed_dim, embed_dim], "float32", "cpu"))
        init.xavier_uniform_(self.in_proj_weight)
        if bias:
            self.in_proj_bias = Parameter(_C.zeros([3 * embed_dim], "float32", "cpu"))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias)
        if bias:
            init.zeros_(self.out_proj.bias)

    def forward(self, x, key_padding_mask=None, causal=False):
        if x.ndim != 3 or x.shape[2] != self.embed_dim:
            raise ValueError(f"MultiHeadAttention: argument 'x': expected shape (B, N, {self.embed_dim}), "
                             f"got {tuple(x.shape)}")
        if key_padding_mask is not None and tuple(key_padding_mask.shape) != tuple(x.shape[:2]):
            raise ValueError(f"MultiHeadAttention: argument 'key_padding_mask': expected shape {tuple(x.shape[:2])}, "
                             f"got {tuple(key_padding_mask.shape)}")
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        o = F.attention_from_qkv(qkv, self.num_heads, key_padding_mask, causal,
                                 self.dropout if self.training else 0.0)
        return self.out_proj(o)

    def extra_repr(self):
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}"


class TransformerEncoderLayer(Module):
    """Pre-LN block: x + Drop(MHA(LN1(x))), then x + Drop(W2 Drop(GELU(W1 LN2(x))))."""

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, layer_norm_eps=1e-5):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = Linear(d_model, dim_feedforward)
        self.linear2 = Linear(dim_feedforward, d_model)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout = Dropout(dropout)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)

    def forward(self, x, key_padding_mask=None, causal=False):
        x = x + self.dropout1(self.self_attn(self.norm1(x), key_padding_mask, causal))
        h = self.dropout(F.gelu(self.linear1(self.norm2(x))))
        return x + self.dropout2(self.linear2(h))


class TransformerEncoder(Module):
    """N encoder layers (each with its own weights) and an optional final LayerNorm."""

    def __init__(self, layer_factory, num_layers, norm=None):
        super().__init__()
        self.layers = ModuleList(layer_factory() for _ in range(num_layers))
        self.norm = norm

    def forward(self, x, key_padding_mask=None, causal=False):
        for layer in self.layers:
            x = layer(x, key_padding_mask, causal)
        return self.norm(x) if self.norm is not None else x
