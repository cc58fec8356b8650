"""fastnn.ops: functional access to every kernel (Tensor, NumPy array or DLPack producer in,
fastnn.Tensor out). One module per kernel family; each re-exported here."""
from __future__ import annotations
from .attention import attention, attention_backward
from .conv import conv2d, conv2d_backward, max_pool2d, max_pool2d_backward, avg_pool2d, avg_pool2d_backward, adaptive_avg_pool2d, adaptive_avg_pool2d_backward
from .gemm import gemm, matmul, linear, matmul_backward, linear_backward
from .optim import adam_, sgd_, clip_grad_norm_, grad_norm
from .nn import *  # noqa: F401,F403  (training kernels; names in nn.__all__)
from .rnn import lstm_cell, gru_cell, rnn_cell, lstm_cell_backward, gru_cell_backward, rnn_cell_backward, rnn_layer_forward, rnn_layer_backward
from .batch_norm import batch_norm, batch_norm_backward
