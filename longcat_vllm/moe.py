"""LongCat-Flash's MoE on vLLM's FusedMoE: fp32 router, zero experts per longcat_common.routing.

The routing is computed once per layer, in ``LongcatMoE.forward``, and both of its consumers read that
one result: the identity term and FusedMoE. FusedMoE's custom op takes only (hidden_states,
router_logits), so the routing enters it packed in the ``router_logits`` slot (``pack_routing``) and our
router unpacks it there instead of routing again. Routing twice (once eagerly inside the op, once in
the compiled graph) could pick different top-k sets on a near-tie, so a token could get a real expert
and the identity term for the same slot, or neither.

vLLM's fused-MoE kernels take a fixed-width [T, k] id tensor, so a zero slot must still carry an id.
We give it weight 0 and the id that costs nothing where the kernel allows it:
  * DeepEP all-to-all (HT, v2, and LL up to its top-k limit): -1, which DeepEP's dispatch treats as
    "no expert" (no dispatch).
  * expert parallel on CUDA without all-to-all kernels (TP x EP, DP 1): an expert this rank does not
    own; its expert map sends it to -1, so the slot is skipped here (no GEMM, no hot spot on expert 0)
    -- the same trick vLLM's DeepEP-HT prepare step uses for its own -1 ids. Every rank routes the
    same tokens and fills its own way, so no rank computes a zero slot.
  * DeepEP low-latency with top-k > 11 (LongCat-Flash routes 12): refused, its kernels take at most
    11 slots (``kNumMaxTopK``).
  * other all-to-all backends on CUDA (DP > 1 with EP), vLLM's default ``allgather_reducescatter``
    included: refused, naming the DeepEP flags. Every rank sees every DP rank's ids (all-gathered, or
    sent to the owner), so a fill id must be one that no rank computes: every real id is some rank's
    expert, and vLLM's ``moe_align_block_size`` reads ``expert_map[id]`` for -1 (out of bounds) and, in
    its small-batch kernel, for ids past the expert count too.
  * no expert map (TP only, or DP without EP) on CUDA: expert 0 with weight 0 (the kernel computes it).
  * CPU backend: -1, and this layer's CPU experts turn ids into local ids after any DP all-gather
    (``map_ids_in_cpu_experts``): vLLM's ``cpu_fused_moe`` ignores the expert map and cannot skip a slot
    (a -1 id gives wrong sums, an out-of-range id corrupts the heap), so every masked slot (zero expert,
    or an expert of another EP rank) goes to local expert 0 with weight 0 there. The CPU communicator
    runs every all2all backend as all-gather / reduce-scatter, so this one rule covers TP, EP, DP and
    DP + EP (docs/vllm.md).
Monolithic MoE kernels route inside the kernel from the logits and are refused: they cannot take this
routing. The identity term ``identity_coef * x`` is added once, after FusedMoE's TP/EP all-reduce.
"""

import torch
from torch import nn

from vllm.model_executor.layers.fused_moe import FusedMoEFactory, GateLinear
from vllm.model_executor.layers.fused_moe.config import RoutingMethodType
from vllm.model_executor.layers.fused_moe.router.base_router import BaseRouter
from vllm.platforms import current_platform

from longcat_common.config import LongcatConfig
from longcat_vllm.metrics import count_routing, rank_counter
from longcat_common.routing import (MASKED_SLOT, ZeroExpertRouting, add_identity, ids_for_kernel,
                                    route_with_zero_experts)


DEEPEP_LL_MAX_TOPK = 11  # DeepEP csrc/kernels/legacy/internode_ll.cu: kNumMaxTopK (dispatch), kNumMaxTopk (combine)


def pack_routing(routing: ZeroExpertRouting) -> torch.Tensor:
    """[T, 2k] fp32: the masked weights, then the ids (-1 for zero slots; exact in fp32 below 2^24)."""
    return torch.cat([routing.topk_weights, routing.topk_ids.float()], dim=-1)


def unpack_routing(packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """pack_routing's output -> (topk_weights [T, k] fp32, topk_ids [T, k] int32), both fresh and contiguous.

    A column slice of ``packed`` would have strides (2k, 1): vLLM's Triton fused-MoE kernel reads the
    weights by flat slot index, FlashInfer CUTLASS and the naive DP all-gather read ``data_ptr()`` as a
    dense [T, k], DeepEP asserts contiguity. So the slice is copied here, on every device."""
    k = packed.shape[-1] // 2
    return packed[:, :k].contiguous(), packed[:, k:].to(torch.int32)


class ZeroExpertSlotRouter(BaseRouter):
    """vLLM router that reads the packed routing of ``LongcatMoE.forward`` and gives its zero slots a
    kernel-safe id (weight 0)."""

    def __init__(self, config: LongcatConfig):
        super().__init__(top_k=config.moe_topk, global_num_experts=config.n_routed_experts)
        self.fill_id = 0
        self.slot_counter = rank_counter()  # docs/metrics.md

    def bind(self, expert_map: torch.Tensor | None, parallel) -> None:
        """Called once FusedMoE exists: its EP expert map (global id -> local id or -1) and parallel config."""
        if parallel.use_deepep_ll_kernels and self.top_k > DEEPEP_LL_MAX_TOPK:
            raise ValueError(
                f"LongCat-Flash: --all2all-backend deepep_low_latency takes at most {DEEPEP_LL_MAX_TOPK} top-k "
                f"slots (DeepEP's kNumMaxTopK) and this model routes {self.top_k}; use --all2all-backend "
                "deepep_high_throughput or deepep_v2")
        if current_platform.is_cpu() or parallel.use_deepep_ht_kernels or parallel.use_deepep_v2_kernels \
                or parallel.use_deepep_ll_kernels:
            self.fill_id = MASKED_SLOT  # DeepEP: "no expert", nothing is sent; CPU: see map_ids_in_cpu_experts
        elif parallel.use_all2all_kernels:
            raise ValueError(
                f"LongCat-Flash: all2all backend '{parallel.all2all_backend}' (data parallel > 1 with "
                "--enable-expert-parallel) would compute every zero-expert slot on a real expert; use "
                "--all2all-backend deepep_high_throughput or deepep_v2, or serve data parallel without "
                "--enable-expert-parallel")
        elif expert_map is not None:
            remote = (expert_map < 0).nonzero()
            self.fill_id = int(remote[0, 0]) if remote.numel() else 0

    @property
    def routing_method_type(self) -> RoutingMethodType:
        return RoutingMethodType.Custom

    def _compute_routing(self, hidden_states, router_logits, indices_type, *, input_ids=None):
        weights, ids = unpack_routing(router_logits)
        if self.slot_counter is not None:
            count_routing(self.slot_counter, ids)
        weights, ids = self.kernel_routing(weights, ids)
        return weights, ids.to(indices_type or torch.int32)

    def kernel_routing(self, weights: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero slots (id -1, weight 0) with ``fill_id`` (see the module docstring); fresh contiguous
        [T, k] tensors, global ids on every device."""
        return weights, ids_for_kernel(ids, self.fill_id)


def local_expert_routing(weights: torch.Tensor, ids: torch.Tensor, expert_map: torch.Tensor | None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Global ids [T, k] (-1 for zero slots) -> this rank's local ids, every slot it does not compute
    (zero expert, another EP rank's expert) at local expert 0 with weight 0: what vLLM's CPU
    ``cpu_fused_moe`` can take (it ignores the expert map and cannot skip a slot)."""
    if expert_map is not None:
        ids = torch.where(ids >= 0, expert_map[ids.clamp(min=0).long()].to(ids.dtype), ids)
    return weights.masked_fill(ids < 0, 0.0), ids.clamp(min=0)


def map_ids_in_cpu_experts(quant_method) -> None:
    """CPU backend: once vLLM has built this layer's MoE kernel (at the end of loading), its experts get
    ``local_expert_routing`` applied to the ids they receive. That is after any data-parallel
    all-gather, so every DP rank's tokens are mapped by this rank's expert map. This layer only: the
    kernel object is this layer's own."""
    build = quant_method.process_weights_after_loading

    def process_weights_after_loading(layer):
        first = quant_method.moe_kernel is None  # a weight update reuses the kernel, already wrapped
        build(layer)
        if not first:
            return
        experts = quant_method.moe_kernel.fused_experts
        apply = experts.apply

        def apply_with_local_ids(**kwargs):
            kwargs["topk_weights"], kwargs["topk_ids"] = local_expert_routing(
                kwargs["topk_weights"], kwargs["topk_ids"], kwargs["expert_map"])
            return apply(**kwargs)
        experts.apply = apply_with_local_ids

    quant_method.process_weights_after_loading = process_weights_after_loading


def _routes_inside_kernel(quant_method) -> bool:
    """Whether vLLM's MoERunner hands this MoE method the router logits instead of our routing (a
    monolithic kernel). False while vLLM has not chosen an experts class (FP8 on a CPU has none)."""
    if getattr(quant_method, "moe_kernel", None) is None and getattr(quant_method, "experts_cls", True) is None:
        return False
    return quant_method.is_monolithic


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
        # fp32 in: GateLinear's bf16-input tiers (bf16x3 CuteDSL on SM100, cuBLAS bf16 -> fp32) are
        # GPU-only numerics; with fp32 input every device takes its fp32 F.linear, which the CPU runs too
        logits, _ = self.classifier(x.float())
        return logits.float()


class LongcatMoE(nn.Module):
    def __init__(self, config: LongcatConfig, quant_config, prefix: str):
        super().__init__()
        self.config = config
        self.router = LongcatRouter(config, f"{prefix}.router")
        self.slot_router = ZeroExpertSlotRouter(config)
        self.experts = FusedMoEFactory(
            num_experts=config.n_routed_experts, top_k=config.moe_topk, hidden_size=config.hidden_size,
            intermediate_size=config.expert_ffn_hidden_size, renormalize=False, quant_config=quant_config,
            prefix=f"{prefix}.experts", router=self.slot_router, router_logits_dtype=torch.float32,
        )
        quant_method = self.experts.routed_experts.quant_method
        if _routes_inside_kernel(quant_method):
            raise ValueError(f"LongCat-Flash: the MoE kernel of {quant_method.method_name} routes inside the "
                             "kernel (monolithic) and cannot take zero-expert routing; choose another MoE backend")
        self.slot_router.bind(self.experts.routed_experts.expert_map, self.experts.moe_config.moe_parallel_config)
        if current_platform.is_cpu():
            map_ids_in_cpu_experts(quant_method)

    def route(self, x: torch.Tensor) -> ZeroExpertRouting:
        c = self.config
        return route_with_zero_experts(self.router(x), self.router.e_score_correction_bias, c.moe_topk,
                                       c.n_routed_experts, c.routed_scaling_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [T, H] (post_attention_layernorm[0] output) -> routed experts (reduced) + identity term [T, H]."""
        routing = self.route(x)
        routed = self.experts(hidden_states=x, router_logits=pack_routing(routing))
        return add_identity(routed, routing.identity_coef, x)
