"""conv2d cases of `fastnn bench`, as pytest-benchmark tests (FASTNN_BENCH_SIZE=quick|full)."""
import pytest

from fastnn.bench import pytest_support

CASES = pytest_support.params("conv2d")


@pytest.mark.parametrize("case, contender", CASES)
def test_conv2d(benchmark, case, contender):
    pytest_support.run(benchmark, case, contender)
