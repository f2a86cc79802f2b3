"""SGLang's Triton kernels on our CUDA paths, in the Triton interpreter, in one subprocess for the whole tier.

``triton.jit`` reads TRITON_INTERPRET when a kernel module is imported, and this pytest process has
imported SGLang's kernels already (other test files), so the tier runs as its own pytest session with
the switch set: tests/sglang/interpreted_moe.py and interpreted_attention.py (what runs for real, what
stands in and what is patched is in their docstrings).
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
TIER = ["tests/sglang/interpreted_moe.py", "tests/sglang/interpreted_attention.py"]


def test_interpreted_tier():
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore", *TIER],
                          capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env={**os.environ, "TRITON_INTERPRET": "1"})
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
