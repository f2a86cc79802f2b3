"""Builds vLLM's engine config for each checkpoint of a spec, in one process (tests/startup_errors.py).

``EngineArgs.create_engine_config`` is the first thing ``LLM(...)`` and ``vllm serve`` do, in their front
process, before any engine core or worker starts: the start-up checks (longcat_vllm/startup_check.py)
raise there. Usage: python -m tests.vllm.engine_config_run SPEC.json OUT.json; arguments: model, tp.
"""

from tests.startup_errors import record_errors


def build_config(model: str, tp: int = 1) -> None:
    from vllm import EngineArgs

    EngineArgs(model=model, tensor_parallel_size=tp, max_model_len=512).create_engine_config()


if __name__ == "__main__":
    record_errors(build_config)
