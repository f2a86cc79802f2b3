"""Runs SGLang's ``prepare_server_args`` for each checkpoint of SPEC.json, in one process, and writes what each
raised.

Usage: python server_args_run.py SPEC.json OUT.json, SPEC = {name: model path}, OUT = {name: "Type: message"
or null}. ``python -m sglang.launch_server`` loads the plugins and then calls ``prepare_server_args`` on its
argv before it starts any process; the plugin's start-up check (longcat_sglang/plugin.py) raises there,
so one process can try many broken checkpoints.
"""

import json
import sys


def main(spec_path: str, out_path: str) -> None:
    from sglang.srt import server_args
    from sglang.srt.plugins import load_plugins

    from tests.sglang.server import CPU_ARGS

    load_plugins()
    results = {}
    for name, model in json.loads(open(spec_path).read()).items():
        try:
            server_args.prepare_server_args(["--model-path", model, *CPU_ARGS])
            results[name] = None
        except Exception as e:  # noqa: BLE001 - every failure is reported to the test
            results[name] = f"{type(e).__name__}: {e}"
    with open(out_path, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(*sys.argv[1:3])
