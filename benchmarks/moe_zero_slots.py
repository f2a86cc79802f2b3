"""What a zero-expert slot costs in vLLM's CPU fused-MoE kernel, and where it lands under EP.

Bench preset MoE (hidden 1024, expert FFN 256, 64 real experts, top-8), bf16, vLLM's ``cpu_fused_moe``
(the kernel FusedMoE runs on the CPU backend). For zero-expert shares of 0/25/50% of the top-k slots:
  * remap-to-0: vLLM's built-in handling, zero slots become expert 0 with weight 0 (k slots computed).
    On the CPU backend the plugin has to do the same (this kernel cannot skip a slot: a -1 id gives
    wrong sums), so this column is also the plugin's CPU cost;
  * real-only: the same tokens with only their real slots (k * (1 - share) slots), i.e. what a kernel
    that skips masked slots does (CUDA with an EP expert map). remap / real-only is the waste.
Also printed: the share of dispatched (token, slot) pairs landing on EP rank 0 of 8 (experts 0-7),
remap-to-0 vs ours (masked slots never dispatched).

Run: $(scripts/venv.sh vllm)/bin/python benchmarks/moe_zero_slots.py
"""

import torch
from vllm._custom_ops import cpu_fused_moe, cpu_prepack_moe_weight

from longcat_common.routing import MASKED_SLOT
from longcat_common.testing.tiny import PRESETS
from timing import median_seconds

P = PRESETS["bench"]
H, I, E, K = P["hidden_size"], P["expert_ffn_hidden_size"], P["n_routed_experts"], P["moe_topk"]
TOKENS, REPEATS, EP_RANKS = 256, 7, 8


def routing(share: float, gen: torch.Generator):
    """[T, K] ids with ``share`` of the slots masked (zero experts), real ids distinct per token."""
    ids = torch.stack([torch.randperm(E, generator=gen)[:K] for _ in range(TOKENS)]).to(torch.int32)
    n_zero = round(share * K)
    masked = torch.zeros(TOKENS, K, dtype=torch.bool)
    masked[:, K - n_zero:] = True
    weights = torch.rand(TOKENS, K, generator=gen)
    return ids.masked_fill(masked, MASKED_SLOT), weights.masked_fill(masked, 0.0), n_zero


def timed(fn) -> float:
    return median_seconds(fn, REPEATS) * 1e3


def main() -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    w13 = cpu_prepack_moe_weight((torch.randn(E, 2 * I, H) / H ** 0.5).bfloat16(), "vec")
    w2 = cpu_prepack_moe_weight((torch.randn(E, H, I) / I ** 0.5).bfloat16(), "vec")
    x = torch.randn(TOKENS, H).bfloat16()
    out = torch.empty_like(x)

    def run(ids, weights):
        return lambda: cpu_fused_moe(out, x, w13, w2, None, None, weights, ids, "silu", "vec")

    print(f"MoE layer, {TOKENS} tokens, H={H}, I={I}, {E} experts, top-{K}, bf16, vLLM cpu_fused_moe "
          f"(median of {REPEATS}, ms)")
    print(f"{'zero share':>10} | {'remap-to-0':>10} | {'real-only':>9} | {'waste':>6} | "
          f"{'EP rank0 load remap':>19} | {'ours':>5}")
    for share in (0.0, 0.25, 0.5):
        ids, weights, n_zero = routing(share, gen)
        remap = ids.masked_fill(ids == MASKED_SLOT, 0)
        real_ids, real_w = ids[:, : K - n_zero].contiguous(), weights[:, : K - n_zero].contiguous()
        t_remap = timed(run(remap, weights))
        t_real = timed(run(real_ids, real_w)) if n_zero < K else 0.0
        rank0 = lambda t: ((t >= 0) & (t < E // EP_RANKS)).sum().item() / max((t >= 0).sum().item(), 1)  # noqa: E731
        print(f"{share:>10.0%} | {t_remap:>10.2f} | {t_real:>9.2f} | "
              f"{t_remap / t_real:>5.2f}x | {rank0(remap):>19.1%} | {rank0(ids):>5.1%}")


if __name__ == "__main__":
    main()
