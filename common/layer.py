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

On CUDA, in eager mode, the MoE branch runs on a side stream so its dispatch, expert GEMMs and combine
overlap ``mlps0 -> attn1 -> mlps1``; elsewhere (CPU, or while torch.compile traces) it runs in order.
The numbers are the same either way.
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


class MoeSideStream:
    """Runs the MoE branch on a CUDA side stream; in order when disabled or on devices without streams."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._stream = None

    def start(self, moe: Block, m: torch.Tensor) -> Callable[[], torch.Tensor]:
        if not (self.enabled and m.is_cuda) or torch.compiler.is_compiling():
            out = moe(m)
            return lambda: out
        if self._stream is None:
            self._stream = torch.cuda.Stream(device=m.device)
        main = torch.cuda.current_stream(m.device)
        self._stream.wait_stream(main)
        with torch.cuda.stream(self._stream):
            out = moe(m)
        m.record_stream(self._stream)

        def join() -> torch.Tensor:
            main.wait_stream(self._stream)
            out.record_stream(main)
            return out

        return join


IN_ORDER = MoeSideStream(enabled=False)


def shortcut_layer_forward(steps: ShortcutLayerSteps, hidden: torch.Tensor, residual: torch.Tensor | None,
                           side_stream: MoeSideStream = IN_ORDER) -> tuple[torch.Tensor, torch.Tensor]:
    """hidden [T, H], residual [T, H] or None -> (hidden [T, H], residual [T, H]); sum them for the layer output."""
    h, residual = steps.input_norms[0](hidden, residual)
    h = steps.attentions[0](h)
    m, residual = steps.post_attention_norms[0](h, residual)
    join = side_stream.start(steps.moe, m)
    h = steps.dense_mlps[0](m)
    h, residual = steps.input_norms[1](h, residual)
    h = steps.attentions[1](h)
    h, residual = steps.post_attention_norms[1](h, residual)
    h = steps.dense_mlps[1](h)
    return h + join(), residual
