"""DP attention (``--tp N --attn-dp-size D``, older spelling ``--dp D --enable-dp-attention``) for our class.

Each DP rank runs its own scheduler and batch; the attention (and the embedding, and the LM head with
``--enable-dp-lm-head``) is tensor-parallel over the rank's attention-TP group of N / D ranks. The dense
MLPs and the MoE stay tensor- / expert-parallel over all N ranks, so they run on the tokens of every DP
rank, gathered (SGLang's ``layers/dp_attention.py``; its own LongCat and DeepSeek classes do the same
through ``layer_boundary``):

    gathered = dp_gather_replicate(x)   # [sum of the ranks' rows, H]: each DP rank's rows in its slot
    y = block(gathered)                 # every rank computes its TP / EP share, all-reduced over TP
    out = dp_scatter(y)                 # this rank's slot back: [rows, H]

Before the forward ``ForwardBatch.prepare_mlp_sync_batch`` sizes the slots: SUM_LEN puts the ranks'
rows back to back (gathered by an all-reduce), MAX_LEN pads every rank to the largest count (an
all-gather; an idle rank runs a dummy batch of padding rows). Either way a slot holds its rank's real
tokens first, then padding, and ``forward_batch.global_num_tokens_gpu`` has the slot sizes
(longcat_sglang.metrics counts only the real rows).

``dp_gather_replicate``, not ``_partial``: the attention output is already all-reduced over attention TP,
so the ranks of a DP group hold the same rows and one of them writes them.

The residual stays on the DP rank: the layer flow of longcat_common.layer is unchanged, only the three
FFN steps of a layer (MoE, mlps[0], mlps[1]) are wrapped.
"""

from typing import Callable

import torch

from sglang.srt.layers.dp_attention import dp_gather_replicate, dp_scatter, get_global_dp_buffer
from sglang.srt.model_executor.forward_batch_info import ForwardBatch
from sglang.srt.runtime_context import get_parallel

Block = Callable[[torch.Tensor], torch.Tensor]


def over_all_dp_ranks(block: Block, forward_batch: ForwardBatch) -> Block:
    """``block`` ([rows, H] -> [rows, H], fully reduced over TP) run on the tokens of every DP rank:
    this rank's rows x [T, H] -> the block's output for them [T, H]. Every TP rank must call it (it
    gathers over the TP group), idle ranks included (T = 0, or padding rows only)."""

    def run(x: torch.Tensor) -> torch.Tensor:
        gathered = get_global_dp_buffer(get_parallel().tp_group)
        dp_gather_replicate(gathered, x.contiguous(), forward_batch)
        out = torch.empty_like(x)
        dp_scatter(out, block(gathered), forward_batch)
        return out

    return run
