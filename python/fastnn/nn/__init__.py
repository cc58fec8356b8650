"""fastnn.nn: modules and their functional forms (PyTorch's API where it exists)."""
from __future__ import annotations

from . import functional, init
from .container import ModuleList, Sequential
from .conv import AdaptiveAvgPool2d, AvgPool2d, Conv2d, MaxPool2d
from .layers import (GELU, Dropout, Embedding, Flatten, Identity, LayerNorm, Linear, LogSoftmax, ReLU, SiLU,
                     Sigmoid, Softmax, Tanh)
from .loss import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from .module import Module
from .parameter import Parameter
from .transformer import MultiHeadAttention, TransformerEncoder, TransformerEncoderLayer

MultiheadAttention = MultiHeadAttention

__all__ = ["functional", "init", "Module", "Parameter", "Sequential", "ModuleList", "Identity", "Linear", "Flatten",
           "ReLU", "GELU", "Sigmoid", "Tanh", "SiLU", "Softmax", "LogSoftmax", "Dropout", "LayerNorm", "Embedding",
           "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "MultiHeadAttention", "MultiheadAttention",
           "TransformerEncoderLayer", "TransformerEncoder", "MSELoss", "CrossEntropyLoss", "BCEWithLogitsLoss"]
from .rnn import GRU, LSTM, RNN, RNNBase  # noqa: E402
__all__ += ["RNNBase", "RNN", "LSTM", "GRU"]
from .batchnorm import BatchNorm1d, BatchNorm2d  # noqa: E402
__all__ += ["BatchNorm1d", "BatchNorm2d"]
