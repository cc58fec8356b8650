"""docs/CUDA.md's resource table (registers, shared memory, spills per kernel) lists every CUDA kernel.

The table itself comes from nvcc (tools/cuda_resource_table.py, ~15 min for all files and four
architectures, so CI does not regenerate it); this check is the cheap guard that a kernel added or
renamed since the last regeneration does not go unlisted. Refresh the rows of changed files with
`python tools/cuda_resource_table.py --only kernels/<file>.cu`.
"""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GLOBAL = re.compile(r"__global__\s+(?:void\s+)?(?:__launch_bounds__\([^)]*\)\s+)?(?:void\s+)?(\w+)\s*\(")


def kernels_in_sources():
    found = set()
    for cu in sorted((ROOT / "kernels").glob("*.cu")) + sorted((ROOT / "kernels" / "testing").glob("*.cu")):
        text = re.sub(r"//[^\n]*", "", cu.read_text())
        # kernels that exist only in the emulator build (its self-test of fiber overflow and
        # SIGFPE) are not compiled by nvcc and have no row
        text = re.sub(r"#if defined\(FASTNN_CUDA_EMULATED\)\n.*?#(?:else|endif)", "", text, flags=re.S)
        for name in GLOBAL.findall(text):
            found.add((str(cu.relative_to(ROOT)), name))
    return found


def kernels_in_table():
    text = (ROOT / "docs" / "CUDA.md").read_text()
    begin, end = "<!-- resource-table:begin -->", "<!-- resource-table:end -->"
    assert begin in text and end in text, "docs/CUDA.md lost its resource-table markers"
    listed = set()
    for row in text[text.index(begin):text.index(end)].splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) >= 6 and cells[0].startswith("kernels/"):
            name = cells[1].strip("`")
            name = name.split("<", 1)[0].split("::")[-1]
            listed.add((cells[0], name))
            assert cells[5] == "0", f"{cells[0]} {cells[1]} spills {cells[5]} bytes"
    return listed


def test_every_kernel_is_in_the_resource_table():
    sources, table = kernels_in_sources(), kernels_in_table()
    assert len(sources) > 40  # the regex still finds the kernels
    missing = sorted(sources - table)
    stale = sorted(table - sources)
    assert not missing, f"kernels missing from docs/CUDA.md's resource table (regenerate it): {missing}"
    assert not stale, f"rows of kernels that no longer exist in docs/CUDA.md's resource table: {stale}"
