"""Python imports this at start-up when its directory is on PYTHONPATH: metrics_overhead.py puts it there
for an SGLang server whose scheduler, the process that runs the model, it cannot reach otherwise."""

import os

if os.environ.get("LONGCAT_COUNT_TIMER_DIR"):
    from count_timer import install

    install(os.environ["LONGCAT_COUNT_TIMER_DIR"])
