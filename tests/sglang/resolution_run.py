"""The class SGLang resolves and builds for each checkpoint, with the plugins loaded as a server loads them,
in its own process (registration and hooks are process-wide; tests/sglang/test_resolution.py).

Per checkpoint: ``get_model_architecture`` of SGLang's ``ModelConfig`` (as the model loader and ModelRunner
call it) for the target and for the NEXTN draft, then the target class built on CPU, TP=1: "built", or the
first line of the error SGLang's class stops with. The log lines of longcat_sglang go to the record too,
and, under "registry", what SGLang's ``ModelRegistry`` resolves each LongCat architecture name to.
Usage: python -m tests.sglang.resolution_run OUT.json CHECKPOINT_DIR...
"""

import json
import logging
import socket
import sys

REGISTRY_NAMES = ("LongcatFlashForCausalLM", "LongcatCausalLM", "LongcatFlashNgramForCausalLM",
                  "LongcatFlashForCausalLMNextN")


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def _name(cls) -> str:
    return f"{cls.__module__}:{cls.__name__}"


def _build(model_cls, model_config) -> str:
    try:
        model_cls(model_config.hf_config, None)
    except Exception as e:
        return f"{type(e).__name__}: {str(e).splitlines()[0]}"
    return "built"


def resolve(path: str) -> dict:
    from sglang.srt.configs.model_config import ModelConfig
    from sglang.srt.model_loader.utils import get_model_architecture

    logs = Lines()
    logging.getLogger("longcat_sglang").addHandler(logs)
    target = ModelConfig(path)
    draft = ModelConfig(path, is_draft_model=True)
    target_cls, _ = get_model_architecture(target)
    draft_cls, _ = get_model_architecture(draft)
    built = _build(target_cls, target)
    logging.getLogger("longcat_sglang").removeHandler(logs)
    return {"target": _name(target_cls), "draft": _name(draft_cls), "build": built, "log": logs.lines}


def main(out: str, paths: list[str]) -> None:
    from sglang.srt import runtime_context
    from sglang.srt.distributed import parallel_state
    from sglang.srt.plugins import load_plugins
    from sglang.srt.server_args import ServerArgs

    load_plugins()
    logging.getLogger("longcat_sglang").setLevel(logging.INFO)
    args = ServerArgs(model_path=paths[0], device="cpu", attention_backend="torch_native", disable_cuda_graph=True)
    runtime_context.publish(args, role="test", ranks=runtime_context.SpawnRanks(world_rank=0))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    parallel_state.init_distributed_environment(world_size=1, rank=0, local_rank=0, backend="gloo",
                                                distributed_init_method=f"tcp://127.0.0.1:{port}")
    parallel_state.initialize_model_parallel()
    from sglang.srt.models.registry import ModelRegistry

    registry = {name: _name(ModelRegistry.resolve_model_cls([name])[0]) for name in REGISTRY_NAMES}
    with open(out, "w") as f:
        json.dump({"registry": registry, **{path: resolve(path) for path in paths}}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
