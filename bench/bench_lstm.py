"""lstm case of `fastnn bench` (one LSTM layer, batch 64, seq 128, hidden 256, forward + backward vs
torch.nn.LSTM), as pytest-benchmark tests (FASTNN_BENCH_SIZE=quick|full)."""
import pytest

from fastnn.bench import pytest_support

CASES = pytest_support.params("lstm")


@pytest.mark.parametrize("case, contender", CASES)
def test_lstm(benchmark, case, contender):
    pytest_support.run(benchmark, case, contender)
