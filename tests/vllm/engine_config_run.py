"""Builds vLLM's engine config for each checkpoint of SPEC.json, in one process, and writes what each raised.

Usage: python engine_config_run.py SPEC.json OUT.json, SPEC = {name: [model, tp]}, OUT = {name: "Type: message"
or null}. ``EngineArgs.create_engine_config`` is the first thing ``LLM(...)`` and ``vllm serve`` do, in their
front process, before any engine core or worker starts: the start-up checks (longcat_vllm/startup_check.py)
raise there, so one process can try many broken checkpoints.
"""

import json
import sys


def main(spec_path: str, out_path: str) -> None:
    from vllm import EngineArgs

    results = {}
    for name, (model, tp) in json.loads(open(spec_path).read()).items():
        try:
            EngineArgs(model=model, tensor_parallel_size=tp, max_model_len=512).create_engine_config()
            results[name] = None
        except Exception as e:  # noqa: BLE001 - every failure is reported to the test
            results[name] = f"{type(e).__name__}: {e}"
    with open(out_path, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(*sys.argv[1:3])
