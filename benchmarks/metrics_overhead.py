"""What counting zero-expert slots (docs/metrics.md) adds to a decode step's MoE layer.

Bench preset MoE (hidden 1024, 64 real + 32 zero experts, top-8), bf16, decode batches of 1 and 8
tokens, compiled with torch.compile (inductor) as vLLM does on CPU: router + zero-expert routing
(+ ``SlotCounter.add`` in the "counting" column) in the compiled function, then vLLM's
``cpu_fused_moe``. Both columns are timed in the same run, interleaved (alternating which goes first), on one thread, median of REPEATS rounds of
ITERS steps. The MoE layer is where all the counting happens, so its ratio bounds the whole decode
step's (attention and dense MLPs only add uncounted time).

Run: $(scripts/venv.sh vllm)/bin/python benchmarks/metrics_overhead.py
"""

import statistics
import time

import torch
from vllm._custom_ops import cpu_fused_moe, cpu_prepack_moe_weight

from longcat_common.metrics import SlotCounter
from longcat_common.routing import route_with_zero_experts
from longcat_common.tiny import PRESETS

P = PRESETS["bench"]
H, I, E, Z, K = (P["hidden_size"], P["expert_ffn_hidden_size"], P["n_routed_experts"], P["zero_expert_num"],
                 P["moe_topk"])
REPEATS, ITERS = 9, 100


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)  # one core: less noise from other work on the machine
    w13 = cpu_prepack_moe_weight((torch.randn(E, 2 * I, H) / H ** 0.5).bfloat16(), "vec")
    w2 = cpu_prepack_moe_weight((torch.randn(E, H, I) / I ** 0.5).bfloat16(), "vec")
    router = torch.randn(E + Z, H) / H ** 0.5
    bias = torch.zeros(E + Z)
    counter = SlotCounter(device="cpu")

    def route(x, count: bool):
        r = route_with_zero_experts(x.float() @ router.T, bias, K, E, 1.0)
        if count:
            counter.add(r.topk_ids)
        return r.topk_weights, r.topk_ids.clamp(min=0)

    compiled = {count: torch.compile(lambda x, c=count: route(x, c), dynamic=False) for count in (False, True)}
    print(f"MoE layer decode step, H={H}, {E} real + {Z} zero experts, top-{K}, bf16, torch.compile + "
          f"cpu_fused_moe (median of {REPEATS} x {ITERS} steps, us/step)")
    print(f"{'tokens':>6} | {'no count':>9} | {'counting':>9} | {'ratio':>6}")
    for tokens in (1, 8):
        x = torch.randn(tokens, H).bfloat16()
        out = torch.empty_like(x)

        def step(count):
            weights, ids = compiled[count](x)
            cpu_fused_moe(out, x, w13, w2, None, None, weights, ids, "silu", "vec")

        def rounds(count):
            start = time.perf_counter()
            for _ in range(ITERS):
                step(count)
            return (time.perf_counter() - start) / ITERS * 1e6
        rounds(False), rounds(True)  # compile and warm up
        times = {False: [], True: []}
        for r in range(REPEATS):
            for count in ((False, True) if r % 2 else (True, False)):  # alternate which goes first
                times[count].append(rounds(count))
        base, counted = statistics.median(times[False]), statistics.median(times[True])
        print(f"{tokens:>6} | {base:>9.1f} | {counted:>9.1f} | {counted / base:>5.3f}x")
    print(f"slots counted: {counter.totals()}")


if __name__ == "__main__":
    main()
