"""The README's static-and-induced table is what benchmarks/static_vs_induced.py prints."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_side_by_side_table_is_the_scripts_output():
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "static_vs_induced.py")], capture_output=True,
                         text=True, check=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}).stdout
    rows = [line for line in out.splitlines() if line.startswith("|")]
    assert len(rows) == 7  # header, rule, 4 layers, mean
    readme = (REPO / "README.md").read_text()
    missing = [row for row in rows if row not in readme.splitlines()]
    assert not missing, missing
