"""Batch normalisation modules (PyTorch's BatchNorm1d / BatchNorm2d: arguments, buffers,
state_dict keys incl. ``num_batches_tracked``) and their functional form, on the fused kernels
of ``fastnn.ops.batch_norm``."""
from __future__ import annotations

from .. import _C
from .. import _kernels as K
from ..autograd import _attach, _mode, _rg
from ..ops.batch_norm import batch_norm as _bn_forward, batch_norm_backward as _bn_backward
from . import init
from .module import Module
from .parameter import Parameter

__all__ = ["batch_norm", "BatchNorm1d", "BatchNorm2d"]


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,  # noqa: A002
               eps=1e-5):
    """torch.nn.functional.batch_norm: normalises over every dim but 1; in training, running
    statistics (when given) are updated in place."""
    y, mean, invstd = _bn_forward(input, weight, bias, running_mean, running_var, training, momentum, eps)
    if _mode.enabled and (_rg(input) or _rg(weight) or _rg(bias)):
        need_w = _rg(weight) or _rg(bias)

        def backward(g):
            gx, gw, gb = _bn_backward(g, input, weight, mean, invstd, training, _rg(input), need_w)
            return gx, gw, gb

        _attach(y, (input, weight, bias), backward, "BatchNormBackward")
    return y


class _BatchNorm(Module):
    _NDIMS = (2, 3)

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        name = type(self).__name__
        if not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"{name}: argument 'num_features': expected an integer >= 1, got {num_features!r}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{name}: argument 'momentum': expected a value in [0, 1] or None, got {momentum!r}")
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(_C.empty([num_features], "float32", "cpu"))
            self.bias = Parameter(_C.empty([num_features], "float32", "cpu"))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", _C.zeros([num_features], _C.DType.float32, "cpu"))
            self.register_buffer("running_var", _C.zeros([num_features], _C.DType.float32, "cpu"))
            self.register_buffer("num_batches_tracked", _C.zeros([], _C.DType.int64, "cpu"))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.fill_(0.0)
            self.running_var.fill_(1.0)
            self.num_batches_tracked.fill_(0)

    def reset_parameters(self):
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            init.zeros_(self.bias)

    def forward(self, input):  # noqa: A002
        if input.ndim not in self._NDIMS:
            want = " or ".join(f"{d}-D" for d in self._NDIMS)
            raise ValueError(f"{type(self).__name__}: argument 'input': expected a {want} tensor, got shape "
                             f"{tuple(input.shape)}")
        if input.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}: argument 'input': expected {self.num_features} channels "
                             f"(dim 1), got shape {tuple(input.shape)}")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            n = int(K.np_(self.num_batches_tracked)) + 1
            self.num_batches_tracked.fill_(n)
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / n
        use_batch = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        return batch_norm(input, self.running_mean if track else None, self.running_var if track else None,
                          self.weight, self.bias, use_batch, factor, self.eps)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Over (N, C) or (N, C, L) inputs."""
    _NDIMS = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Over (N, C, H, W) inputs."""
    _NDIMS = (4,)
