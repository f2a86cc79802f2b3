"""Runs SGLang's ``prepare_server_args`` for each checkpoint of a spec, in one process (tests/startup_errors.py).

``python -m sglang.launch_server`` loads the plugins and then calls ``prepare_server_args`` on its argv
before it starts any process; the plugin's start-up check (longcat_sglang/plugin.py) raises there.
Usage: python -m tests.sglang.server_args_run SPEC.json OUT.json; arguments: model.
"""

from tests.startup_errors import record_errors


def prepare(model: str) -> None:
    from sglang.srt import server_args

    from tests.sglang.server import CPU_ARGS

    server_args.prepare_server_args(["--model-path", model, *CPU_ARGS])


if __name__ == "__main__":
    from sglang.srt.plugins import load_plugins

    load_plugins()
    record_errors(prepare)
