"""Top-k routing over real + zero-computation experts (LongCat-Flash's router contract).

Reference semantics (HF remote code, transformers): fp32 softmax over all E = n_routed + n_zero router
logits; ``e_score_correction_bias`` is added only to choose the top-k; the chosen weights are the
unbiased probabilities, not renormalised, and every slot (zero experts included) is multiplied by
``routed_scaling_factor``. A zero ("identity") expert returns its input, so all zero slots of a token
together contribute ``identity_coef[t] * x[t]``.

Contract for the engine adapters: zero slots come back as id -1 and weight 0 so that they cost no
expert GEMM and no EP dispatch, and the identity term is added once, after any TP/EP reduction of the
routed experts' output (see ``add_identity``).
"""

from dataclasses import dataclass

import torch

MASKED_SLOT = -1


@dataclass
class ZeroExpertRouting:
    topk_ids: torch.Tensor  # [T, k] int32, real expert ids in [0, n_routed), MASKED_SLOT for zero slots
    topk_weights: torch.Tensor  # [T, k] fp32, rsf * prob for real slots, 0 for zero slots
    identity_coef: torch.Tensor  # [T] fp32, rsf * sum of the zero slots' probs


def ids_for_kernel(topk_ids: torch.Tensor, fill_id: int) -> torch.Tensor:
    """topk_ids [T, k] with masked slots set to ``fill_id``, for kernels that cannot take a negative id.

    With weight 0 the slot adds nothing; ``fill_id`` should name an expert the rank does not run
    (e.g. one the EP expert map sends to -1), otherwise the kernel does the slot's GEMM for nothing.
    """
    return torch.where(topk_ids < 0, torch.full_like(topk_ids, fill_id), topk_ids)


def route_with_zero_experts(router_logits: torch.Tensor, correction_bias: torch.Tensor | None, top_k: int,
                            n_routed_experts: int, routed_scaling_factor: float) -> ZeroExpertRouting:
    """router_logits [T, E] (any float dtype; E = n_routed + n_zero), correction_bias [E] or None."""
    scores = router_logits.float().softmax(dim=-1)
    choice = scores if correction_bias is None else scores + correction_bias.float()[None, :]
    ids = torch.topk(choice, top_k, dim=-1, sorted=False).indices
    weights = scores.gather(1, ids) * routed_scaling_factor
    is_zero = ids >= n_routed_experts
    return ZeroExpertRouting(
        topk_ids=ids.masked_fill(is_zero, MASKED_SLOT).to(torch.int32),
        topk_weights=weights.masked_fill(is_zero, 0.0),
        identity_coef=(weights * is_zero).sum(dim=-1),
    )


def add_identity(routed_out: torch.Tensor, identity_coef: torch.Tensor, moe_input: torch.Tensor) -> torch.Tensor:
    """routed_out [T, H] (already reduced over TP/EP) + identity_coef [T] * moe_input [T, H], in fp32."""
    # Type promotion does the fp32 math inside the two kernels (bit-identical to upcasting first,
    # without the two extra copies that eager mode pays for per MoE layer).
    return (identity_coef[:, None] * moe_input).add_(routed_out).to(routed_out.dtype)
