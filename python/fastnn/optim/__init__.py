"""fastnn.optim: optimizers on fused multi-tensor kernels, LR schedulers, regularisation."""
from __future__ import annotations

from . import lr_scheduler
from .adam import Adam, AdamW
from .lr_scheduler import CosineAnnealingLR, LinearWarmup, LRScheduler, StepLR
from .optimizer import Optimizer
from .regularization import clip_grad_norm_, l1_penalty, l2_penalty
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler", "LRScheduler", "StepLR", "CosineAnnealingLR",
           "LinearWarmup", "l1_penalty", "l2_penalty", "clip_grad_norm_"]
