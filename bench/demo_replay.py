"""Benchmark: the demo's end-to-end replay rate. Prints one JSON object.

Usage: .venv/bin/python bench/demo_replay.py [--days 14] [--no-chaos]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "demo"
        done = subprocess.run(
            [sys.executable, "-m", "demo.cli", "--data", str(data), *sys.argv[1:]],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        summary_path = data / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        summary["exit_code"] = done.returncode
        print(json.dumps(summary))
        return done.returncode


if __name__ == "__main__":
    sys.exit(main())
