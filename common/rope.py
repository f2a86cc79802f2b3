"""Portable interleaved (GPT-J layout) rotary embedding, correct for any strided view, with YaRN.

LongCat-Flash uses RoPE (theta 1e7) on the 64-wide rope part of q and k, with pairs (x[2i], x[2i+1]):
plain for Flash-Chat / -Thinking, DeepSeek-V3-style YaRN for Thinking-2601 (``rope_scaling`` with
factor, original_max_position_embeddings, beta_fast, beta_slow, mscale, mscale_all_dim). Engines' CPU
kernels assume a contiguous 2-D [tokens, heads*dim] layout and rotate the wrong memory when MLA hands
them 3-D views (``q[..., nope:]``, ``k_pe.unsqueeze(1)``); this version reads through the view's
strides, so adapters use it wherever the engine kernel is wrong or absent.
"""

import math

import torch

YARN_DEFAULTS = {"beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 0.0}


def yarn_mscale(factor: float, mscale: float = 1.0) -> float:
    """YaRN's magnitude correction 0.1 * mscale * ln(factor) + 1 (1 for factor <= 1)."""
    return 1.0 if factor <= 1 else 0.1 * mscale * math.log(factor) + 1.0


def _yarn_inv_freq(rotary_dim: int, theta: float, yarn: dict) -> torch.Tensor:
    """Per-pair frequencies: original ones for fast-rotating pairs (more than beta_fast turns over the
    original context), divided by ``factor`` for slow ones (fewer than beta_slow), a linear ramp between."""
    def pair_index(turns: float) -> float:  # the pair that turns ``turns`` times over the original context
        return rotary_dim * math.log(yarn["original_max_position_embeddings"] / (turns * 2 * math.pi)) / (
            2 * math.log(theta))

    low = max(math.floor(pair_index(yarn["beta_fast"])), 0)
    high = min(math.ceil(pair_index(yarn["beta_slow"])), rotary_dim - 1)
    extrapolated = 1.0 / (theta ** (torch.arange(0, rotary_dim, 2, dtype=torch.float64) / rotary_dim))
    ramp = ((torch.arange(rotary_dim // 2, dtype=torch.float64) - low) / max(high - low, 0.001)).clamp(0, 1)
    return extrapolated / yarn["factor"] * ramp + extrapolated * (1 - ramp)


def rope_cos_sin_cache(rotary_dim: int, max_position: int, theta: float, yarn: dict | None = None) -> torch.Tensor:
    """[max_position, rotary_dim] fp32: cos in the first half, sin in the second (vLLM's cache layout).

    ``yarn``: LongcatConfig.rope_scaling (None for plain RoPE); YaRN scales cos and sin by
    mscale(factor, mscale) / mscale(factor, mscale_all_dim), DeepSeek's rule as in vLLM's and SGLang's
    ``DeepseekScalingRotaryEmbedding`` (transformers ignores ``mscale`` when ``mscale_all_dim`` is 0).
    """
    if yarn is None:
        inv_freq, magnitude = 1.0 / (theta ** (torch.arange(0, rotary_dim, 2, dtype=torch.float64) / rotary_dim)), 1.0
    else:
        inv_freq = _yarn_inv_freq(rotary_dim, theta, yarn)
        magnitude = yarn_mscale(yarn["factor"], yarn["mscale"]) / yarn_mscale(yarn["factor"], yarn["mscale_all_dim"])
    freqs = torch.outer(torch.arange(max_position, dtype=torch.float64), inv_freq)
    return (torch.cat([freqs.cos(), freqs.sin()], dim=-1) * magnitude).float()


_SHARED: dict[tuple, torch.Tensor] = {}


def shared_cos_sin_cache(rotary_dim: int, max_position: int, theta: float, yarn: dict | None = None) -> torch.Tensor:
    """rope_cos_sin_cache, built once per process for every layer that asks with the same arguments."""
    key = (rotary_dim, max_position, float(theta), tuple(sorted((yarn or {}).items())))
    if key not in _SHARED:
        _SHARED[key] = rope_cos_sin_cache(rotary_dim, max_position, theta, yarn)
    return _SHARED[key]


def apply_rope_interleaved(positions: torch.Tensor, x: torch.Tensor, cos_sin_cache: torch.Tensor) -> torch.Tensor:
    """positions [T]; x [T, ..., rotary_dim] (any strides); returns a new contiguous tensor shaped like x."""
    cos, sin = cos_sin_cache.index_select(0, positions.flatten().long()).float().chunk(2, dim=-1)
    bcast = (cos.shape[0],) + (1,) * (x.dim() - 2) + (cos.shape[-1],)
    cos, sin = cos.view(bcast), sin.view(bcast)
    even, odd = x[..., 0::2].float(), x[..., 1::2].float()
    out = torch.stack((even * cos - odd * sin, odd * cos + even * sin), dim=-1).flatten(-2)
    return out.to(x.dtype)
