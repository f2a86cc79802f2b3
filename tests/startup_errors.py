"""Many broken checkpoints tried in one engine process: each engine's first start-up step runs the
plugin's start-up check (vLLM: building its engine config; SGLang: ``prepare_server_args``), before any
worker starts, so one process can try every start-up case of tests/bad_checkpoints.py.

The test writes the broken copies and a spec ``{case: runner arguments}`` (``startup_errors``); a runner
module (tests/vllm/engine_config_run.py, tests/sglang/server_args_run.py) tries each in the engine's
environment and writes ``{case: "Type: message" or null}`` (``record_errors``).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.bad_checkpoints import AT_LOAD, BAD_CHECKPOINTS, STARTED

ROOT = Path(__file__).parents[1]
STARTUP = [kind for kind in BAD_CHECKPOINTS if kind not in AT_LOAD + STARTED]
# not a checkpoint: a bad value of the metrics switch (longcat_common.metrics.counting_on), on a good one
BAD_SWITCH = {"metrics_switch": ("tiny_ckpt", "LONGCAT_METRICS='maybe'", {"env": {"LONGCAT_METRICS": "maybe"}})}


def startup_errors(request, directory: Path, runner: str, extra: dict | None = None) -> tuple[dict, dict]:
    """({case: error text or None}, {case: expected message}) for every STARTUP case, each run with the
    runner arguments {"model": path}, plus ``extra`` cases {case: (fixture, message, arguments)}."""
    spec, messages = {}, {}
    for kind in STARTUP:
        source, write = BAD_CHECKPOINTS[kind]
        path, messages[kind] = write(request.getfixturevalue(source), directory / kind)
        spec[kind] = {"model": str(path)}
    for kind, (source, message, case_args) in (extra or {}).items():
        spec[kind], messages[kind] = {"model": str(request.getfixturevalue(source)), **case_args}, message
    (directory / "spec.json").write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, "-m", runner, str(directory / "spec.json"), str(directory / "out.json")],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((directory / "out.json").read_text()), messages


def record_errors(attempt) -> None:
    """Runner side: ``attempt(**arguments)`` for each case of argv[1]'s spec (an ``env`` argument sets
    environment variables for that case); what each raised to argv[2]."""
    spec_path, out_path = sys.argv[1:3]
    results = {}
    for name, arguments in json.loads(Path(spec_path).read_text()).items():
        env = arguments.pop("env", {})  # environment variables of this case only
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        try:
            attempt(**arguments)
            results[name] = None
        except Exception as e:  # noqa: BLE001 - every failure is reported to the test
            results[name] = f"{type(e).__name__}: {e}"
        finally:
            for key, value in saved.items():
                if value is None:
                    del os.environ[key]
                else:
                    os.environ[key] = value
    Path(out_path).write_text(json.dumps(results))
