"""Torch stand-ins for the CUDA C++ ops on SGLang's CUDA MoE path (test-only, never in product code).

Each implements what its kernel's source does (SGLang 0.5.23 / sgl-kernel 0.4.10; the JIT sources ship in
``sglang/kernels/jit/csrc``) and checks the kernel's preconditions as strictly as the kernel reads its
memory: flat pointers want contiguous tensors of the exact dtype, outputs are written in place into
caller-allocated buffers of the exact shape. Rows a kernel leaves unwritten are filled with NaN here, so a
later kernel that reads them anyway shows up in the numbers.
"""

import torch
import torch.nn.functional as F


def _check(t: torch.Tensor, name: str, dtype=None, shape=None) -> None:
    assert t.is_contiguous(), f"{name} must be contiguous (the kernel reads a flat pointer)"
    assert dtype is None or t.dtype == dtype, f"{name}: {t.dtype}, the kernel takes {dtype}"
    assert shape is None or tuple(t.shape) == tuple(shape), f"{name}: {tuple(t.shape)}, want {tuple(shape)}"


def moe_align_block_size(topk_ids, num_experts, block_size, sorted_token_ids, experts_ids, num_tokens_post_pad,
                         cumsum_buffer, pad_sorted_token_ids=False, ignore_invalid_expert=False) -> None:
    """``sgl_kernel.moe_align_block_size`` (csrc/moe/moe_align_kernel.cu), "+1 offset" convention:
    ``num_experts`` counts buckets, id e goes to bucket e + 1, so -1 (no expert on this rank) is bucket 0.
    Each bucket is padded to a multiple of ``block_size``; ``sorted_token_ids`` lists flat slot indices
    bucket by bucket (padding: ``numel`` when ``pad_sorted_token_ids``), ``experts_ids[block]`` is the
    block's bucket - 1 (so -1 for bucket 0), ``num_tokens_post_pad[0]`` the padded total. Ids must lie
    in [-1, num_experts - 2]."""
    assert not ignore_invalid_expert, "the triton runner never asks for ignore_invalid_expert"
    assert topk_ids.dtype in (torch.int32, torch.int64), topk_ids.dtype
    _check(topk_ids, "topk_ids")
    for t, name in ((sorted_token_ids, "sorted_token_ids"), (experts_ids, "experts_ids"),
                    (num_tokens_post_pad, "num_tokens_post_pad"), (cumsum_buffer, "cumsum_buffer")):
        _check(t, name, torch.int32)
    assert num_tokens_post_pad.numel() == 1 and cumsum_buffer.numel() >= num_experts + 1
    flat = topk_ids.flatten()
    numel = flat.numel()
    assert numel == 0 or (flat.min() >= -1 and flat.max() <= num_experts - 2), "expert id out of range"
    buckets = (flat + 1).long()
    counts = torch.bincount(buckets, minlength=num_experts)
    padded = (counts + block_size - 1) // block_size * block_size
    starts = torch.cat([padded.new_zeros(1), padded.cumsum(0)])
    total = int(starts[-1])
    assert total <= sorted_token_ids.numel() and total // block_size <= experts_ids.numel(), "buffers too small"
    if pad_sorted_token_ids:
        sorted_token_ids.fill_(numel)
    for b in range(num_experts):
        slots = torch.nonzero(buckets == b).flatten()
        sorted_token_ids[starts[b]:starts[b] + slots.numel()] = slots.to(torch.int32)
        experts_ids[starts[b] // block_size:starts[b + 1] // block_size] = b - 1
    num_tokens_post_pad[0] = total
    cumsum_buffer[:num_experts + 1] = starts.to(torch.int32)


def silu_and_mul(input, out=None, expert_ids=None, expert_step=1, *, sorted_token_ids=None,
                 num_tokens_post_padded=None, num_valid_tokens=0):
    """``sglang.kernels.ops.activation.activation.silu_and_mul`` (jit csrc/elementwise/activation.cuh):
    ``out[r] = cast(silu(float(gate[r])) * float(up[r]))`` with gate / up the two halves of ``input[r]``.
    With ``expert_ids``, row r is left unwritten when ``expert_ids[r // expert_step] == -1``."""
    assert sorted_token_ids is None, "the sorted (TMA) layout is not on the paths this tier runs"
    _check(input, "input")
    d = input.shape[-1] // 2
    if out is None:
        out = input.new_empty(*input.shape[:-1], d)
    _check(out, "out", input.dtype, (*input.shape[:-1], d))
    x = input.view(-1, 2 * d).float()
    result = (F.silu(x[:, :d]) * x[:, d:]).to(out.dtype)
    if expert_ids is not None:
        assert expert_step > 0
        rows = torch.arange(x.shape[0], device=x.device)
        skipped = expert_ids.flatten().to(torch.int64)[rows // expert_step] == -1
        result[skipped] = float("nan")  # unwritten in the kernel: garbage for whoever reads it
    out.view(-1, d).copy_(result)
    return out


def moe_sum_reduce(input_tensor, output_tensor, routed_scaling_factor=0) -> None:
    """``sgl_kernel.moe_sum_reduce`` (its wrapper in sgl_kernel/moe.py; SGLang calls it above 32 tokens): ``output[t] = cast(routed_scaling_factor
    * sum_k float(input[t, k]))`` over the top-k axis, into ``output_tensor`` [T, H]."""
    _check(input_tensor, "input_tensor")
    t, _k, h = input_tensor.shape
    _check(output_tensor, "output_tensor", input_tensor.dtype, (t, h))
    output_tensor.copy_((input_tensor.float().sum(1) * routed_scaling_factor).to(output_tensor.dtype))



def per_token_group_quant_fp8(x, group_size, eps=1e-10, column_major_scales=False, scale_tma_aligned=False,
                              scale_ue8m0=False, fuse_silu_and_mul=False, masked_m=None, enable_v2=None,
                              output_q=None, output_s=None):
    """``sglang_per_token_group_quant_fp8`` (the JIT per-token-group quant SGLang calls on CUDA): per row
    and group of ``group_size`` columns, ``s = max(max |x|, eps) / fp8_max`` (fp32, row-major
    [..., K / group_size] here) and ``q = clamp(x / s)`` in e4m3fn."""
    assert not (column_major_scales or scale_tma_aligned or scale_ue8m0 or fuse_silu_and_mul or masked_m is not None
                or output_q is not None or output_s is not None), "not on the block-FP8 triton MoE path"
    _check(x, "x")
    assert x.shape[-1] % group_size == 0, "the last dim must split into groups"
    fp8 = torch.finfo(torch.float8_e4m3fn)
    g = x.float().view(*x.shape[:-1], -1, group_size)
    s = g.abs().amax(-1, keepdim=True).clamp(min=eps) / fp8.max
    q = (g / s).clamp(fp8.min, fp8.max).to(torch.float8_e4m3fn)
    return q.view(x.shape), s.squeeze(-1).contiguous()
