"""Portable interleaved (GPT-J layout) rotary embedding, correct for any strided view.

LongCat-Flash uses plain RoPE (theta 1e7, no scaling) on the 64-wide rope part of q and k, with
pairs (x[2i], x[2i+1]). Engines' CPU kernels assume a contiguous 2-D [tokens, heads*dim] layout and
rotate the wrong memory when MLA hands them 3-D views (``q[..., nope:]``, ``k_pe.unsqueeze(1)``); this
version reads through the view's strides, so adapters use it wherever the engine kernel is wrong.
"""

import torch


def rope_cos_sin_cache(rotary_dim: int, max_position: int, theta: float) -> torch.Tensor:
    """[max_position, rotary_dim] fp32: cos in the first half, sin in the second (vLLM's cache layout)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, rotary_dim, 2, dtype=torch.float64) / rotary_dim))
    freqs = torch.outer(torch.arange(max_position, dtype=torch.float64), inv_freq)
    return torch.cat([freqs.cos(), freqs.sin()], dim=-1).float()


def apply_rope_interleaved(positions: torch.Tensor, x: torch.Tensor, cos_sin_cache: torch.Tensor) -> torch.Tensor:
    """positions [T]; x [T, ..., rotary_dim] (any strides); returns a new contiguous tensor shaped like x."""
    cos, sin = cos_sin_cache.index_select(0, positions.flatten().long()).float().chunk(2, dim=-1)
    bcast = (cos.shape[0],) + (1,) * (x.dim() - 2) + (cos.shape[-1],)
    cos, sin = cos.view(bcast), sin.view(bcast)
    even, odd = x[..., 0::2].float(), x[..., 1::2].float()
    out = torch.stack((even * cos - odd * sin, odd * cos + even * sin), dim=-1).flatten(-2)
    return out.to(x.dtype)
