"""LongCat-Flash's MoE on vLLM's FusedMoE: fp32 router, zero experts per longcat_common.routing.

vLLM's fused-MoE kernels take a fixed-width [T, k] id tensor, so a zero slot must still carry an id.
We give it weight 0 and the id that costs nothing where the kernel allows it:
  * DeepEP all-to-all (HT, LL, v2): -1, which DeepEP's dispatch treats as "no expert" (no dispatch).
  * expert parallel on CUDA without DeepEP: an expert this rank does not own; its expert map sends it
    to -1, so the slot is skipped here (no GEMM, no hot spot on expert 0) -- the same trick vLLM's
    DeepEP-HT prepare step uses for its own -1 ids. Every rank routes the same tokens and fills its
    own way, so no rank computes a zero slot.
  * no expert map (TP only) on CUDA: expert 0 with weight 0 (the kernel computes the slot).
  * CPU backend: ``cpu_fused_moe`` ignores the expert map and cannot skip a slot (a -1 id gives
    wrong sums, an out-of-range id corrupts the heap), so ids are turned into this rank's local ids
    here and every masked slot (zero expert, or an expert of another EP rank) goes to local expert 0
    with weight 0. This is what makes EP run on vLLM's CPU backend at all (docs/vllm.md).
The identity term ``identity_coef * x`` is added once, after FusedMoE's TP/EP all-reduce.
"""

import torch
from torch import nn

from vllm.model_executor.layers.fused_moe import FusedMoEFactory, GateLinear
from vllm.model_executor.layers.fused_moe.config import RoutingMethodType
from vllm.model_executor.layers.fused_moe.router.base_router import BaseRouter
from vllm.platforms import current_platform

from longcat_common.config import LongcatConfig
from longcat_common.routing import MASKED_SLOT, add_identity, route_with_zero_experts


class ZeroExpertSlotRouter(BaseRouter):
    """vLLM router returning longcat_common's routing with zero slots given a kernel-safe id (weight 0)."""

    def __init__(self, config: LongcatConfig, correction_bias: torch.Tensor):
        super().__init__(top_k=config.moe_topk, global_num_experts=config.n_routed_experts)
        self.config = config
        self.correction_bias = correction_bias
        self.expert_map: torch.Tensor | None = None
        self.fill_id = 0

    def bind(self, expert_map: torch.Tensor | None, parallel) -> None:
        """Called once FusedMoE exists: its EP expert map (global id -> local id or -1) and parallel config."""
        self.expert_map = expert_map
        if parallel.use_deepep_ht_kernels or parallel.use_deepep_ll_kernels or parallel.use_deepep_v2_kernels:
            self.fill_id = MASKED_SLOT  # DeepEP dispatch takes -1 as "no expert": nothing is sent
        elif expert_map is not None and not current_platform.is_cpu():
            remote = (expert_map < 0).nonzero()
            self.fill_id = int(remote[0, 0]) if remote.numel() else 0

    @property
    def routing_method_type(self) -> RoutingMethodType:
        return RoutingMethodType.Custom

    def route(self, router_logits: torch.Tensor):
        c = self.config
        return route_with_zero_experts(router_logits, self.correction_bias, c.moe_topk,
                                       c.n_routed_experts, c.routed_scaling_factor)

    def _compute_routing(self, hidden_states, router_logits, indices_type, *, input_ids=None):
        routing = self.route(router_logits)
        if current_platform.is_cpu():
            ids = routing.topk_ids
            if self.expert_map is not None:
                ids = torch.where(ids >= 0, self.expert_map[ids.clamp(min=0).long()].to(ids.dtype), ids)
            weights = routing.topk_weights.masked_fill(ids < 0, 0.0)
            return weights, ids.clamp(min=0).to(indices_type or torch.int32)
        return routing.topk_weights, routing.ids_for_kernel(self.fill_id).to(indices_type or torch.int32)


class LongcatRouter(nn.Module):
    """Checkpoint names mlp.router.classifier.weight [E, H] and mlp.router.e_score_correction_bias [E], fp32."""

    def __init__(self, config: LongcatConfig, prefix: str):
        super().__init__()
        self.classifier = GateLinear(config.hidden_size, config.num_experts_total, bias=False,
                                     out_dtype=torch.float32, params_dtype=torch.float32,
                                     prefix=f"{prefix}.classifier")
        self.e_score_correction_bias = nn.Parameter(torch.zeros(config.num_experts_total, dtype=torch.float32),
                                                    requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits, _ = self.classifier(x)
        return logits.float()


class LongcatMoE(nn.Module):
    def __init__(self, config: LongcatConfig, quant_config, prefix: str):
        super().__init__()
        self.router = LongcatRouter(config, f"{prefix}.router")
        self.slot_router = ZeroExpertSlotRouter(config, self.router.e_score_correction_bias)
        self.experts = FusedMoEFactory(
            num_experts=config.n_routed_experts, top_k=config.moe_topk, hidden_size=config.hidden_size,
            intermediate_size=config.expert_ffn_hidden_size, renormalize=False, quant_config=quant_config,
            prefix=f"{prefix}.experts", router=self.slot_router, router_logits_dtype=torch.float32,
        )
        self.slot_router.bind(self.experts.routed_experts.expert_map, self.experts.moe_config.moe_parallel_config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [T, H] (post_attention_layernorm[0] output) -> routed experts (reduced) + identity term [T, H]."""
        logits = self.router(x)
        routed = self.experts(hidden_states=x, router_logits=logits)
        return add_identity(routed, self.slot_router.route(logits).identity_coef, x)
