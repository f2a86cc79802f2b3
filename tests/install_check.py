"""`pip install .` into an existing engine environment: what pip would install or change there."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS = "longcat-flash-plugins"


def packages_pip_would_change() -> dict[str, str]:
    """name -> version of every distribution `pip install <ROOT>` would install or replace in this
    interpreter's environment, other than this package (pip's own resolver, --dry-run: nothing changes)."""
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report", "-", str(ROOT)],
                         check=True, capture_output=True, text=True).stdout
    report = json.loads(out)
    return {item["metadata"]["name"]: item["metadata"]["version"] for item in report["install"]
            if item["metadata"]["name"] != OURS}
