"""fastnn.ops: functional access to every kernel (Tensor, NumPy array or DLPack producer in,
fastnn.Tensor out). One module per kernel family; each re-exported here."""
from __future__ import annotations
from .attention import attention, attention_backward
from .optim import adam_, sgd_, clip_grad_norm_, grad_norm
