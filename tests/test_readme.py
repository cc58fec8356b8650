"""README.md's usage example runs as written (it is the first thing a newcomer copies)."""
from __future__ import annotations

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.skipif(not README.exists(), reason="README.md not next to the tests")
def test_readme_usage_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README.md lost its usage example"
    exec(compile(blocks[0], "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert out.startswith("True (4, 4)")
    assert "simd level" in out


def test_readme_has_exactly_two_setup_commands():
    text = README.read_text()
    setup = text[text.index("## Set-up"):text.index("## Build options")]
    commands = re.findall(r"```bash\n(.*?)```", setup, re.S)
    assert [c.strip() for c in commands] == ['pip install . && fastnn bench',
                                             'pip install ".[test,torch]" && python -m pytest -q']
