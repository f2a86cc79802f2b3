"""Which class vLLM gives each LongCat config, in the front process and in a worker (with the plugins
``VLLM_PLUGINS`` lets load).

``front SPEC OUT``: for each case of SPEC ({case: {"model", "speculative"?}}), builds vLLM's engine config
as ``vllm serve`` does first, records the class the loader resolves (``module:class``), the draft's where
there is one, or the error; pickles each config to OUT's directory. Prints ``CASE <name>`` before each
case, so that the log can be read case by case.
``worker SPEC OUT``: a fresh process, as a worker is: loads the general plugins, unpickles each config
(the front process hands its config to the workers pickled), resolves the class again and builds the
model on the CPU (``construct``: the error where it cannot be built).
"""

import json
import os
import pickle
import sys
from pathlib import Path


def class_name(cls) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def front(spec: dict, out: Path) -> dict:
    from vllm import EngineArgs
    from vllm.model_executor.model_loader.utils import get_model_architecture

    results = {}
    for case, args in spec.items():
        print(f"CASE {case}", flush=True)
        try:
            config = EngineArgs(model=args["model"], max_model_len=512, dtype="float32", enforce_eager=True,
                                speculative_config=args.get("speculative")).create_engine_config()
        except Exception as e:  # noqa: BLE001 - the refusal is what the test reads
            results[case] = {"error": f"{type(e).__name__}: {e}"}
            continue
        result = {"class": class_name(get_model_architecture(config.model_config)[0])}
        if config.speculative_config is not None:
            result["draft"] = class_name(get_model_architecture(config.speculative_config.draft_model_config)[0])
        (out.parent / f"{case}.pkl").write_bytes(pickle.dumps(config))
        results[case] = result
    return results


def construct(config) -> str | None:
    """Builds the model as vLLM's loader does before it loads weights (the class's __init__), on the CPU."""
    import torch
    from vllm.config import set_current_vllm_config
    from vllm.model_executor.model_loader.utils import initialize_model
    from vllm.utils.torch_utils import set_default_torch_dtype

    try:
        with set_current_vllm_config(config), set_default_torch_dtype(config.model_config.dtype), torch.device("cpu"):
            initialize_model(vllm_config=config)
        return None
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"


def worker(spec: dict, out: Path) -> dict:
    from vllm.config import set_current_vllm_config
    from vllm.distributed import init_distributed_environment, initialize_model_parallel
    from vllm.model_executor.model_loader.utils import get_model_architecture
    from vllm.plugins import load_general_plugins
    from vllm.utils.network_utils import get_open_port

    load_general_plugins()
    results, distributed = {}, False
    for case in spec:
        path = out.parent / f"{case}.pkl"
        if not path.exists():
            continue
        config = pickle.loads(path.read_bytes())
        if not distributed:
            with set_current_vllm_config(config):
                init_distributed_environment(world_size=1, rank=0, local_rank=0, backend="gloo",
                                             distributed_init_method=f"tcp://127.0.0.1:{get_open_port()}")
                initialize_model_parallel(1, 1)
            distributed = True
        results[case] = {"class": class_name(get_model_architecture(config.model_config)[0]),
                         "construct": construct(config)}
    return results


if __name__ == "__main__":
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "0")
    mode, spec_path, out_path = sys.argv[1:4]
    out = Path(out_path)
    run = {"front": front, "worker": worker}[mode]
    out.write_text(json.dumps(run(json.loads(Path(spec_path).read_text()), out)))
