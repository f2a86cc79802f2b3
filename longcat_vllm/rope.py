"""RoPE for vLLM's MLA wrapper that is right on every device.

vLLM's MLA wrapper calls ``rotary_emb(positions, q[..., nope:], k_pe)`` with 3-D strided views. On the
CPU backend in eager mode ``RotaryEmbedding.forward_cpu`` (csrc/cpu/pos_encoding.cpp) assumes a
contiguous 2-D [tokens, heads * dim] layout and rotates the wrong memory. CUDA's kernel reads strides
correctly and stays (vLLM builds it with YaRN from the config for Thinking-2601); elsewhere the
portable rotation from longcat_common runs, YaRN included (docs/vllm-cpu-rope.md).
"""

import torch
from torch import nn

from longcat_common.rope import apply_rope_interleaved, shared_cos_sin_cache


class MlaRope(nn.Module):
    def __init__(self, engine_rope: nn.Module, rotary_dim: int, max_position: int, theta: float,
                 yarn: dict | None = None):
        super().__init__()
        self.engine_rope = engine_rope
        cache = shared_cos_sin_cache(rotary_dim, max_position, theta, yarn)
        self.register_buffer("cos_sin_fp32", cache, persistent=False)

    def forward(self, positions: torch.Tensor, query: torch.Tensor, key: torch.Tensor):
        """positions [T]; query [T, heads, rot]; key [T, 1, rot] (views) -> rotated (query, key)."""
        if query.is_cuda:
            return self.engine_rope(positions, query, key)
        return (apply_rope_interleaved(positions, query, self.cos_sin_fp32),
                apply_rope_interleaved(positions, key, self.cos_sin_fp32))
