"""fastnn.data: array datasets, DataLoader, splits and loaders for the offline data sets."""
from __future__ import annotations

from .augment import Compose, Normalize, RandomCrop, RandomHorizontalFlip
from .dataset import Subset, TensorDataset, random_split, train_val_split
from .datasets import (FASHION_MNIST_CLASSES, TWEETS_LABELS, Vocab, fashion_mnist_available, load_digits,
                       load_fashion_mnist, load_tweets, read_idx, tokenize)
from .loader import DataLoader

__all__ = ["TensorDataset", "Subset", "random_split", "train_val_split", "DataLoader", "load_digits",
           "load_fashion_mnist", "fashion_mnist_available", "read_idx", "load_tweets", "tokenize", "Vocab",
           "FASHION_MNIST_CLASSES", "TWEETS_LABELS",
           "Compose", "RandomCrop", "RandomHorizontalFlip", "Normalize"]
