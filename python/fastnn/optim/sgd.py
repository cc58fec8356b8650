"""SGD with momentum / Nesterov / weight decay (torch.optim.SGD formulas), fused kernel."""
from __future__ import annotations

from .. import _C
from ..ops import sgd_
from .optimizer import Optimizer


class SGD(Optimizer):
    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                 maximize=False):
        if lr < 0:
            raise ValueError(f"SGD: argument 'lr': expected a non-negative learning rate, got {lr}")
        if momentum < 0:
            raise ValueError(f"SGD: argument 'momentum': expected >= 0, got {momentum}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov needs momentum > 0 and dampening = 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, maximize=maximize))

    def _step_group(self, g, params, grads):
        kw = dict(lr=g["lr"], momentum=g["momentum"], dampening=g["dampening"], nesterov=g["nesterov"],
                  weight_decay=g["weight_decay"], maximize=g["maximize"])
        if g["momentum"] == 0:
            sgd_(params, grads, None, first_step=False, **kw)
            return
        # torch creates a buffer lazily as the (decayed) grad on a parameter's first step; the
        # kernel's first_step flag does that for a whole call, so new and old buffers go in
        # separate calls (usually all are new on step 1 and old afterwards: one call).
        new, old = ([], [], []), ([], [], [])
        for p, gr in zip(params, grads):
            st = self.state.setdefault(id(p), {})
            buf = st.get("momentum_buffer")
            dst = old
            if buf is None:
                buf = st["momentum_buffer"] = _C.zeros(list(p.shape), p.dtype, str(p.device))
                dst = new
            dst[0].append(p)
            dst[1].append(gr)
            dst[2].append(buf)
        for (ps, gs, bs), first in ((new, True), (old, False)):
            if ps:
                sgd_(ps, gs, bs, first_step=first, **kw)
