"""RoPE for vLLM's MLA wrapper that is right on every device.

vLLM's MLA wrapper calls ``rotary_emb(positions, q[..., nope:], k_pe)`` with 3-D strided views. On the
CPU backend in eager mode ``RotaryEmbedding.forward_cpu`` (csrc/cpu/pos_encoding.cpp) hands those views
to its kernel, which takes the head count from the last dimension and the token stride from dim 0, so
q's heads are rotated at the wrong places (docs/vllm-cpu-rope.md). On every other device, and under
torch.compile, the portable rotation of longcat_common.rope runs (YaRN included), the one the CPU tests
check against transformers: no rotary of vLLM's that only a GPU would run.

On the CPU in eager mode we call the same CPU kernel the way it is right: on 2-D [tokens, heads * rot]
fp32 copies with our fp32 cos/sin cache (YaRN included), then cast back. That is five ops where the
portable rotation is about thirty, and bit-for-bit the same rotation as the portable one (fp32 math,
one rounding), which still runs under torch.compile (inductor fuses it) and on other devices.
"""

import torch
from torch import nn

from vllm import _custom_ops as ops

from longcat_common.rope import apply_rope_interleaved, shared_cos_sin_cache


class MlaRope(nn.Module):
    def __init__(self, rotary_dim: int, max_position: int, theta: float, yarn: dict | None = None):
        super().__init__()
        self.rotary_dim = rotary_dim
        cache = shared_cos_sin_cache(rotary_dim, max_position, theta, yarn)
        self.register_buffer("cos_sin_fp32", cache, persistent=False)

    def forward(self, positions: torch.Tensor, query: torch.Tensor, key: torch.Tensor):
        """positions [T]; query [T, heads, rot]; key [T, 1, rot] (views) -> rotated (query, key)."""
        if query.device.type != "cpu" or torch.compiler.is_compiling():
            return (apply_rope_interleaved(positions, query, self.cos_sin_fp32),
                    apply_rope_interleaved(positions, key, self.cos_sin_fp32))
        tokens = positions.numel()
        q, k = (x.to(torch.float32, memory_format=torch.contiguous_format, copy=True).view(tokens, -1)
                for x in (query, key))
        ops.rotary_embedding(positions.flatten(), q, k, self.rotary_dim, self.cos_sin_fp32, False)  # GPT-J pairs
        return q.view(query.shape).to(query.dtype), k.view(key.shape).to(key.dtype)
