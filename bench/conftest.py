"""pytest-benchmark suites of fastnn (`pytest bench/ --benchmark-only`). The files are named
bench_*.py so that the main test run (tests/) never collects them; this hook collects them
when bench/ itself is given to pytest."""
from __future__ import annotations

import pytest


def pytest_collect_file(file_path, parent):
    if file_path.suffix == ".py" and file_path.name.startswith("bench_") and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None
