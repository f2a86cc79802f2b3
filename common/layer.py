"""The shortcut-connected MoE (ScMoE) decoder layer's data flow, written once for every engine.

    r = x;  x = r + attn0(in_norm0(x))
    m = post_norm0(x)                              # shared input of the MoE and mlps[0]
    moe = MoE(m)                                   # shortcut branch, added only at the layer's end
    x = x + mlps0(m)
    x = x + attn1(in_norm1(x))
    x = x + mlps1(post_norm1(x)) + moe

Engines carry the residual beside the hidden state and use fused add-RMSNorm, so the steps an adapter
supplies follow that convention: a norm step takes (h, residual) and returns (normed, new residual),
adding h into the residual first (residual None on the first layer). Each attention, dense-MLP and MoE
step returns its fully reduced output: TP/EP all-reduce included, the MoE's identity term added after it.

The MoE branch runs in order, on every device: no side stream. A side stream could only be safe
without collectives (TP = EP = 1: the streams' all-reduces would interleave differently on different
ranks) and with no scratch shared between the MoE kernels and the rest (vLLM's fused-MoE and MLA share
one workspace), i.e. on one GPU, which LongCat-Flash does not fit; and it would be a CUDA-only path.
"""

from dataclasses import dataclass
from typing import Callable

import torch

Norm = Callable[[torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor]]
Block = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class ShortcutLayerSteps:
    input_norms: tuple[Norm, Norm]
    attentions: tuple[Block, Block]  # the adapter binds positions / batch metadata
    post_attention_norms: tuple[Norm, Norm]
    dense_mlps: tuple[Block, Block]
    moe: Block


def shortcut_layer_forward(steps: ShortcutLayerSteps, hidden: torch.Tensor,
                           residual: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """hidden [T, H], residual [T, H] or None -> (hidden [T, H], residual [T, H]); sum them for the layer output."""
    h, residual = steps.input_norms[0](hidden, residual)
    h = steps.attentions[0](h)
    m, residual = steps.post_attention_norms[0](h, residual)
    moe = steps.moe(m)
    h = steps.dense_mlps[0](m)
    h, residual = steps.input_norms[1](h, residual)
    h = steps.attentions[1](h)
    h, residual = steps.post_attention_norms[1](h, residual)
    h = steps.dense_mlps[1](h)
    return h + moe, residual
