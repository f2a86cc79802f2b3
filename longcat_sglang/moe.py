"""LongCat-Flash's routed MoE with zero-computation experts, on SGLang's FusedMoE.

Routing is common/routing.py's contract: zero-expert slots come back as id -1 with weight 0, so the
FusedMoE dispatcher sends them nowhere (SGLang's EP id mapping keeps -1, its triton and DeepGEMM runners
skip it; the other runners route by themselves or index experts by id, so they are refused), and the
identity term ``identity_coef * x`` is added once, after the TP/EP all-reduce of the real experts' output.
SGLang 0.5.23's built-in class does neither: it scales zero experts by 1 instead of routed_scaling_factor
and adds them before the reduction (counted once per rank).
"""

import torch
from torch import nn

from longcat_common.config import LongcatConfig
from longcat_common.experts import masked_swiglu_experts
from longcat_common.routing import add_identity, route_with_zero_experts
from longcat_sglang.metrics import rank_counter, step_padding
from sglang.srt.distributed import tensor_model_parallel_all_reduce
from sglang.srt.layers.linear import ReplicatedLinear
from sglang.srt.layers.moe.fused_moe_triton.layer import FusedMoE
from sglang.srt.layers.moe.token_dispatcher import StandardCombineInput
from sglang.srt.layers.moe.topk import StandardTopKOutput
from sglang.srt.layers.moe.utils import get_moe_a2a_backend, get_moe_runner_backend
from sglang.srt.layers.quantization.unquant import UnquantizedFusedMoEMethod
from sglang.srt.runtime_context import get_exec, get_parallel
from sglang.srt.utils import add_prefix


class MaskedSlotsNativeMoEMethod(UnquantizedFusedMoEMethod):
    """Unquantised experts off CUDA. SGLang's native MoE loop indexes experts by id and so cannot take
    the -1 of a zero-expert slot (or of an expert another EP rank owns); longcat_common's loop skips them.
    """

    def _masked_experts(self, layer, dispatch_output) -> StandardCombineInput:
        weights, ids, _ = dispatch_output.topk_output
        out = masked_swiglu_experts(dispatch_output.hidden_states, layer.w13_weight, layer.w2_weight, ids, weights)
        return StandardCombineInput(hidden_states=out)

    forward_native = _masked_experts
    forward_cpu = _masked_experts


class LongcatRouter(nn.Module):
    """fp32 router over real + zero experts; parameter names as in the checkpoint (never quantised)."""

    def __init__(self, config: LongcatConfig, prefix: str):
        super().__init__()
        self.classifier = ReplicatedLinear(config.hidden_size, config.num_experts_total, bias=False,
                                           params_dtype=torch.float32, quant_config=None,
                                           prefix=add_prefix("classifier", prefix))
        self.e_score_correction_bias = nn.Parameter(torch.zeros(config.num_experts_total, dtype=torch.float32),
                                                    requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits, _ = self.classifier(x.float())
        return logits  # [T, n_routed + n_zero] fp32


def check_moe_runner_backend(backend) -> None:
    """Only runners that take precomputed top-k ids with -1 for "no expert": triton and DeepGEMM (and auto,
    which picks one of them for unquantised and block-FP8 experts on CUDA)."""
    if not (backend.is_auto() or backend.is_triton() or backend.is_deep_gemm()):
        raise ValueError(f"longcat-flash-plugins: --moe-runner-backend {backend.value} is not supported for "
                         "LongCat-Flash (it routes by itself or cannot skip zero-expert slots); use triton, "
                         "deep_gemm or auto")


class LongcatMoE(nn.Module):
    def __init__(self, config: LongcatConfig, layer_id: int, quant_config, on_cuda: bool, prefix: str):
        super().__init__()
        if get_exec().moe.ep_dispatch_algorithm is not None:
            raise ValueError("LongCat-Flash: zero experts do not support expert placement remapping; "
                             "disable EPLB, redundant experts and --ep-dispatch-algorithm")
        if not get_moe_a2a_backend().is_none():
            raise ValueError(f"LongCat-Flash plugin: --moe-a2a-backend {get_moe_a2a_backend()} is not supported; "
                             "expert parallelism runs on the standard dispatcher (--ep-size N)")
        check_moe_runner_backend(get_moe_runner_backend())
        self.config = config
        self.tp_size = get_parallel().tp_size
        self.router = LongcatRouter(config, prefix=add_prefix("router", prefix))
        self.slot_counter = rank_counter(config)  # docs/metrics.md
        self.experts = FusedMoE(
            num_experts=config.n_routed_experts, top_k=config.moe_topk, layer_id=layer_id,
            hidden_size=config.hidden_size, intermediate_size=config.expert_ffn_hidden_size,
            reduce_results=False, quant_config=quant_config, prefix=add_prefix("experts", prefix),
            quant_method=None if on_cuda else MaskedSlotsNativeMoEMethod(),
            # out of place on every device: the identity term and mlps[0] read x again (SGLang's default
            # writes the expert output into x in its Triton runner, and its DeepGEMM runner frees x)
            inplace=False)
        if not on_cuda and self.experts.moe_ep_size > 1:
            # SGLang's dispatcher builds its global -> local expert map on first use on
            # sglang.srt.utils.get_device(), which raises without an accelerator: give it the map (on CPU)
            # by the rule the expert weight loader uses.
            self.experts.dispatcher.local_expert_mapping = torch.tensor(
                [self.experts._map_global_expert_id_to_local_expert_id(e) for e in range(config.n_routed_experts)],
                dtype=torch.int32)

    def forward(self, x: torch.Tensor, dp_slots: torch.Tensor | None = None) -> torch.Tensor:
        """x [T, H] (the post_attention_layernorm[0] output) -> [T, H], fully reduced, identity term included.
        Under DP attention x holds every DP rank's rows, one slot per rank, and dp_slots [D] their row counts
        (dp_gather.py); the slot counter skips padding rows by them."""
        logits = self.router(x)
        c = self.config
        routing = route_with_zero_experts(logits, self.router.e_score_correction_bias, c.moe_topk,
                                          c.n_routed_experts, c.routed_scaling_factor)
        if self.slot_counter is not None:
            self.slot_counter.add(routing.topk_ids, step_padding(x.shape[0], x.device, dp_slots))
        routed = self.experts(x, StandardTopKOutput(routing.topk_weights, routing.topk_ids, logits))
        if self.tp_size > 1:
            routed = tensor_model_parallel_all_reduce(routed)
        return add_identity(routed, routing.identity_coef, x)
