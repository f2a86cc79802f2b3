"""Routed SwiGLU experts in plain torch that skip masked slots, for devices without a fused-MoE kernel
that can (an engine's native loop indexes weights by id and cannot take the -1 of a zero-expert slot).
"""

import torch
import torch.nn.functional as F


def masked_swiglu_experts(x: torch.Tensor, w13: torch.Tensor, w2: torch.Tensor, topk_ids: torch.Tensor,
                          topk_weights: torch.Tensor) -> torch.Tensor:
    """x [T, H]; w13 [E, 2I, H] (gate rows, then up rows); w2 [E, H, I]; topk_ids [T, k] local expert
    ids, or -1 for a slot this rank does not compute; topk_weights [T, k].
    -> [T, H] in x's dtype: sum over computed slots of w * down(silu(gate(x)) * up(x)), accumulated in fp32.
    """
    out = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    for expert in topk_ids[topk_ids >= 0].unique().tolist():
        token, slot = (topk_ids == expert).nonzero(as_tuple=True)
        gate, up = F.linear(x[token], w13[expert]).chunk(2, dim=-1)
        y = F.linear(F.silu(gate) * up, w2[expert])
        out.index_add_(0, token, y.float() * topk_weights[token, slot, None].float())
    return out.to(x.dtype)
