"""The benchmark-only patch that lets vLLM 0.32's built-in LongcatFlashForCausalLM run on its CPU backend.

Applied in the baseline's process only, before vLLM builds the model. The built-in class itself is
untouched; three engine functions it reaches are swapped for plain torch ones:
  * ``zero_expert_router.fused_topk_bias``: its softmax path calls ``torch.ops._moe_C.topk_softmax``,
    a CUDA-only op (AttributeError on CPU). Replaced by softmax over all experts, top-k of
    scores + e_score_correction_bias, unbiased weights (LongCat's router contract).
  * ``zero_expert_router.zero_experts_compute_triton``: a Triton GPU kernel. Replaced by
    ``hidden * sum of the zero slots' weights`` (the identity experts' output).
  * ``RotaryEmbedding.forward_cpu`` -> vLLM's own ``forward_native``: the CPU rotary kernel rotates
    the wrong memory for MLA's strided q view in eager mode (docs/vllm-cpu-rope.md); compiled mode
    already uses ``forward_native``. ``stock_rope=True`` keeps the (wrong but runnable) CPU kernel.
"""

import torch


def topk_bias_torch(hidden_states, gating_output, e_score_correction_bias, topk, renormalize,
                    scoring_func="softmax", indices_type=None, **_):
    assert scoring_func == "softmax"
    scores = gating_output.float().softmax(dim=-1)
    ids = torch.topk(scores + e_score_correction_bias.float(), topk, dim=-1).indices
    weights = scores.gather(1, ids)
    if renormalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights, ids.to(indices_type or torch.int32)


def zero_experts_torch(expert_indices, expert_scales, num_experts, zero_expert_type, hidden_states):
    assert zero_expert_type == "identity"
    coef = (expert_scales * (expert_indices >= num_experts)).sum(dim=-1, keepdim=True)
    return (hidden_states.float() * coef).to(hidden_states.dtype)


def patch_builtin_for_cpu(stock_rope: bool = False) -> None:
    from vllm.model_executor.layers.fused_moe.router import zero_expert_router
    from vllm.model_executor.layers.rotary_embedding.base import RotaryEmbedding

    zero_expert_router.fused_topk_bias = topk_bias_torch
    zero_expert_router.zero_experts_compute_triton = zero_experts_torch
    if not stock_rope:
        RotaryEmbedding.forward_cpu = RotaryEmbedding.forward_native
