"""The models' honest evaluation on the Complete Journey year (issue 15 item 4), as one JSON:
every metric beside its baselines, training times (wall and CPU seconds) and peak memory.

    PYTHONPATH=. python bench/models.py [--week 42]

Not a CI test: it trains on 1.44 M lines (a few minutes of one core).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

from center.models.dataset import load_complete_journey
from center.models.evaluation import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--week", type=int, default=42)
    parser.add_argument("--bootstrap", type=int, default=500, help="bootstrap resamples")
    args = parser.parse_args()
    started, cpu = time.perf_counter(), time.process_time()
    year = load_complete_journey()
    loaded_s = round(time.perf_counter() - started, 1)
    result = evaluate(year, week=args.week, rounds=args.bootstrap)
    result["bench"] = {
        "lines": len(year.lines),
        "merchandise_lines": len(year.merchandise),
        "load_s": loaded_s,
        "total_wall_s": round(time.perf_counter() - started, 1),
        "total_cpu_s": round(time.process_time() - cpu, 1),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "cores": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
