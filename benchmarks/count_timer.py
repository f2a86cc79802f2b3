"""Times ``SlotCounter.add`` where the model runs, for benchmarks/metrics_overhead.py: each call's wall
time (the CPU runs the ops synchronously, so this is their whole cost, cold caches included), summed
per process and written to ``<dir>/<pid>.json`` as {"seconds", "calls"} every flush interval. Eager engines
only: inside a compiled graph the timer would split the graph it measures."""

import json
import os
import threading
import time
from pathlib import Path

from longcat_common.metrics import FLUSH_INTERVAL, SlotCounter


def install(directory: str) -> None:
    spent = [0.0, 0]
    add = SlotCounter.add

    def timed_add(self, *args):
        start = time.perf_counter()
        add(self, *args)
        spent[0] += time.perf_counter() - start
        spent[1] += 1

    def publish():
        path = Path(directory) / f"{os.getpid()}.json"
        while True:
            time.sleep(FLUSH_INTERVAL)
            if spent[1]:
                path.write_text(json.dumps({"seconds": spent[0], "calls": spent[1]}))

    SlotCounter.add = timed_add
    threading.Thread(target=publish, name="count-timer", daemon=True).start()


def per_call_seconds(directory: str) -> float | None:
    """Mean seconds per call over every process that published, None where none did."""
    published = [json.loads(f.read_text()) for f in Path(directory).glob("*.json")]
    calls = sum(p["calls"] for p in published)
    return sum(p["seconds"] for p in published) / calls if calls else None
