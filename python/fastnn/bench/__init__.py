"""`fastnn bench`: fastnn's kernels timed against NumPy (and PyTorch when installed).

Method: inputs identical for every contender; results compared before any timing (a
benchmark of a wrong answer is refused); warm-up; then contenders run alternately
(A B A B ...) in the same process so that the noise of a shared VM hits all of them
alike; medians and min-max of the repeats are reported.
"""
from __future__ import annotations

from .runner import main

__all__ = ["main"]
