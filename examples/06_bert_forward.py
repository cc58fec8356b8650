"""Example 6: BERT-style encoder forward pass (token + position + segment embeddings,
LayerNorm, N pre-LN encoder layers), printing shapes and timings.
Quality bar: runs, output finite, padded positions do not change the unpadded ones."""
import time

import numpy as np

import fastnn as fnn
from fastnn import nn


class BertEncoder(nn.Module):
    def __init__(self, vocab=30522, d=256, heads=4, layers=4, ffn=1024, max_len=512):
        super().__init__()
        self.tok, self.pos, self.seg = nn.Embedding(vocab, d), nn.Embedding(max_len, d), nn.Embedding(2, d)
        self.ln = nn.LayerNorm(d)
        self.layers = nn.ModuleList(nn.TransformerEncoderLayer(d, heads, ffn, dropout=0.1) for _ in range(layers))
        self.final = nn.LayerNorm(d)

    def forward(self, ids, segments, mask):
        n = ids.shape[1]
        h = self.tok(ids) + self.pos(fnn.tensor(np.arange(n))) + self.seg(segments)
        h = self.ln(h)
        for i, layer in enumerate(self.layers):
            t0 = time.perf_counter()
            h = layer(h, key_padding_mask=mask)
            print(f"  layer {i}: {tuple(h.shape)} {1e3 * (time.perf_counter() - t0):.1f} ms")
        return self.final(h)


fnn.manual_seed(0)
model = BertEncoder().eval()
print(f"parameters: {model.num_parameters() / 1e6:.1f} M")
b, n = 8, 128
rng = np.random.default_rng(0)
ids = rng.integers(1000, 30000, (b, n))
lengths = rng.integers(n // 2, n + 1, b)
mask = np.arange(n)[None, :] >= lengths[:, None]
ids[mask] = 0
segs = (np.arange(n)[None, :] >= (lengths[:, None] // 2)).astype(np.int64)
with fnn.no_grad():
    for rep in range(2):
        t0 = time.perf_counter()
        out = model(fnn.tensor(ids), fnn.tensor(segs), fnn.tensor(mask))
        dt = time.perf_counter() - t0
        print(f"forward {rep}: output {tuple(out.shape)}, {1e3 * dt:.1f} ms, {b * n / dt:,.0f} tokens/s")
    # the same first sequence alone, without its padding
    L = int(lengths[0])
    solo = model(fnn.tensor(ids[:1, :L]), fnn.tensor(segs[:1, :L]), fnn.tensor(mask[:1, :L]))
o = out.numpy()
diff = np.abs(solo.numpy()[0] - o[0, :L]).max()
ok = np.isfinite(o).all() and diff < 1e-3
print(f"max |padded - unpadded| over the real tokens: {diff:.2e}")
print("quality bar (finite, padding-invariant):", "PASS" if ok else "FAIL")
